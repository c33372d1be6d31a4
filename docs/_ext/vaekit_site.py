"""The site of the series, built from the committed, executed notebooks without running them.

A Sphinx extension, loaded by ``docs/conf.py``. When the configuration is read it

* copies every ``notebooks/[0-9][0-9]_*.ipynb`` that exists into ``docs/notebooks/`` (generated,
  not committed), ready for the web: each plotly figure becomes a ``<div>`` drawn by plotly.js
  from the JSON the notebook stores (its PNG copy is dropped); a progress bar (a tqdm widget,
  which needs a kernel) is dropped; any other widget becomes a still of its figure, where the
  notebook embeds one, and one line saying how to run it live; relative links that leave
  ``notebooks/`` point at the repository instead;
* writes ``docs/_generated/series.md`` (the series at a glance: each notebook's lesson, a
  thumbnail of its headline figure, its run time) and ``docs/_generated/results.md`` (the
  README's results section), which ``docs/index.md`` includes;
* serves everything a page needs from the site itself: plotly.js from the plotly package and
  MathJax 3 from the ``sphinx-mathjax-offline`` package, so that opening a page makes no request
  to another host.

The table of contents is whatever notebooks exist at build time (``docs/index.md`` globs
``notebooks/*``); nothing here names a notebook.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
NOTEBOOKS_ENV = (
    "VAEKIT_SITE_NOTEBOOKS"  # where the committed notebooks are (default: ../notebooks)
)
README_ENV = "VAEKIT_SITE_README"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
INSTALL_TAG = "install-vaekit"
STAGED = "notebooks"  # docs/notebooks/: the pages' sources, generated
GENERATED = "_generated"  # docs/_generated/: the home page's generated parts
THUMB_WIDTH = (
    360  # px, the home page's thumbnails (shown at half that, sharp on a dense screen)
)
# tqdm's text for a progress bar widget: "desc:  40%|####      | 640/1600 [00:01<00:02, ...]"
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+it \[|it/s\]|s/it\]")
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


# --------------------------------------------------------------------------- notebooks


def notebook_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(NOTEBOOK_GLOB) if p.is_file())


def _is_progress_bar(output) -> bool:
    text = output.get("data", {}).get("text/plain", "")
    return bool(_PROGRESS.search(text if isinstance(text, str) else "".join(text)))


def _pngs(cell) -> list[str]:
    return [
        o["data"]["image/png"]
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


def _still_for(cells, index: int) -> str | None:
    """A still of the figure a widget at ``cells[index]`` shows: a PNG in its own output, or else
    the notebook's frozen view of it (a figure in the next few cells, before the next heading)."""
    own = _pngs(cells[index])
    if own:
        return own[0]
    for cell in cells[index + 1 : index + 4]:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            break
        found = _pngs(cell)
        if found:
            return found[0]
    return None


def _widget_note(still: str | None) -> list:
    """What the site shows for a widget: one line on running it live, and a still of its figure."""
    line = (
        "Interactive widget: its sliders need a running Python kernel. Open this notebook in "
        "JupyterLab, or with the Binder or Colab button at the top of the page, to drag them."
    )
    if still:
        line += " Below, a still of the figure it draws."
    body = f'<p class="vaekit-widget-note">{line}</p>'
    if still:
        body += (
            f'<img class="vaekit-widget-still" alt="a still of the widget\'s figure" '
            f'src="data:image/png;base64,{"".join(still.split())}">'
        )
    return [
        nbformat.v4.new_output(
            "display_data",
            data={"text/html": f'<div class="vaekit-widget">{body}</div>'},
        )
    ]


def figure_html(figure: dict) -> str:
    """A ``<div>`` that ``vaekit-figures.js`` draws with plotly.js from the figure's own JSON."""
    payload = json.dumps(
        {
            "data": figure.get("data", []),
            "layout": figure.get("layout", {}),
            "config": figure.get("config", {}),
        },
        separators=(",", ":"),
    )
    payload = payload.replace("</", "<\\/")  # never closes the script element early
    height = (figure.get("layout") or {}).get("height") or 450
    return (
        f'<div class="vaekit-plotly" style="min-height:{int(height)}px">'
        f'<script type="application/json" class="vaekit-plotly-json">{payload}</script></div>'
    )


def _rewrite_links(text: str, repository: str, local: set[str]) -> str:
    """Relative links that leave notebooks/ (``../README.md``) point at the repository.
    A link to another notebook stays as it is: Sphinx resolves it to that notebook's page, or
    warns that the notebook is missing (a broken link the site test reports)."""

    def fix(m):
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.I):
            return m.group(0)
        resolved = os.path.normpath(os.path.join("notebooks", target))
        if resolved.startswith("notebooks" + os.sep) or target.split("#")[0] in local:
            return m.group(0)
        return f"{m.group(1)}{repository}/blob/{_branch()}/{resolved}{m.group(3)}"

    return _LINK.sub(fix, text)


def web_notebook(nb, repository: str, local: set[str]):
    """The notebook as the site shows it (a copy; ``nb`` is not changed)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.metadata.pop("widgets", None)
    # the cell that installs vaekit in Colab or Binder (docs/insert_install_cell.py): the page's
    # launch buttons say what it does
    nb.cells = [
        c for c in nb.cells if INSTALL_TAG not in c.get("metadata", {}).get("tags", [])
    ]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source, repository, local)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outputs, widget_done = [], False
        for output in cell.outputs:
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                outputs.append(
                    nbformat.v4.new_output(
                        output.output_type
                        if output.output_type != "execute_result"
                        else "display_data",
                        data={"text/html": figure_html(data[PLOTLY_MIME])},
                    )
                )
            elif WIDGET_MIME in data:
                if _is_progress_bar(output) or widget_done:
                    continue
                outputs.extend(_widget_note(_still_for(nb.cells, index)))
                widget_done = True
            else:
                if "text/markdown" in data:
                    data["text/markdown"] = _rewrite_links(
                        data["text/markdown"], repository, local
                    )
                outputs.append(output)
        cell.outputs = outputs
    return nb


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def stage_notebooks(source: Path, srcdir: Path, repository: str) -> list[Path]:
    """Write the web copies into ``srcdir/notebooks``; remove copies whose notebook is gone."""
    paths = notebook_paths(source)
    target = srcdir / STAGED
    target.mkdir(exist_ok=True)
    names = {p.name for p in paths}
    for old in target.glob("*.ipynb"):
        if old.name not in names:
            old.unlink()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        text = nbformat.writes(web_notebook(nb, repository, names))
        _write_if_changed(target / path.name, text.encode())
    return paths


# --------------------------------------------------------------------------- the home page


def _plain(markdown: str) -> str:
    """Markdown links reduced to their text (the summary links to the page instead)."""
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown)


def lesson(nb) -> tuple[str, str]:
    """(title, lesson) from the first markdown cell: its heading and its first paragraph."""
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title, paragraphs = "", []
    for block in re.split(r"\n\s*\n", first.strip()):
        block = block.strip()
        if block.startswith("#") and not title:
            title = block.lstrip("#").strip()
        elif block and not block.startswith(("#", "$$", "|", "```")):
            paragraphs.append(block)
            break
    text = " ".join(_plain(paragraphs[0]).split()) if paragraphs else ""
    if text and text[-1] not in ".!?" and re.search(r"[.!?]\s", text):
        text = text[
            : max(m.end() for m in re.finditer(r"[.!?](?=\s)", text))
        ]  # whole sentences
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text)
    short = ""
    for sentence in sentences:
        if short and len(short) + len(sentence) > 420:
            break
        short = f"{short} {sentence}".strip()
    return title, short


_NUM = r"(\d+(?:[.,]\d+)?)"


def run_time(nb) -> str:
    """The run time the notebook prints in its last cells (wall and CPU), else papermill's."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in reversed(code[-3:]):  # the run time is printed at the end
        text = "".join(
            o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"
        )
        for line in reversed(text.splitlines()):
            if not re.search(r"CPU|wall|ran in", line):
                continue
            wall = cpu = None
            if m := re.search(_NUM + r"\s*minutes", line):
                wall = float(m.group(1).replace(",", "")) * 60
            elif m := (
                re.search(_NUM + r"\s*s(?:econds)?\s+(?:of\s+)?wall", line)
                or re.search(r"wall[^0-9]{0,12}" + _NUM + r"\s*s", line)
                or re.search(r"ran in\s*" + _NUM + r"\s*s", line)
            ):
                wall = float(m.group(1).replace(",", ""))
            if m := (
                re.search(_NUM + r"\s*(?:s|CPU seconds|seconds)\s+(?:of\s+)?CPU", line)
                or re.search(_NUM + r"\s*CPU\s*s", line)
                or re.search(r"CPU[^0-9]{0,12}" + _NUM + r"\s*s", line)
            ):
                cpu = float(m.group(1).replace(",", ""))
            if wall is not None or cpu is not None:
                parts = ([f"{cpu:.0f} s CPU"] if cpu is not None else []) + (
                    [f"{wall:.0f} s wall"] if wall is not None else []
                )
                return ", ".join(parts)
    duration = nb.metadata.get("papermill", {}).get("duration")
    return f"{duration:.0f} s wall" if duration else ""


def headline_png(nb) -> str | None:
    """The headline figure's PNG: a cell tagged ``headline`` if any, else the first figure."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in cells if "headline" in c.metadata.get("tags", [])]
    for cell in tagged + cells:
        found = _pngs(cell)
        if found:
            return found[0]
    return None


def thumbnail(png_b64: str, path: Path) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB")
    if image.width > THUMB_WIDTH:
        image = image.resize(
            (THUMB_WIDTH, round(image.height * THUMB_WIDTH / image.width)),
            Image.LANCZOS,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    _write_if_changed(path, buffer.getvalue())


def series_markdown(paths: list[Path], generated: Path) -> str:
    """The series at a glance, as MyST: one card per notebook (paths relative to ``docs/``)."""
    thumbs = generated / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    for old in thumbs.glob("*.png"):
        if old.stem not in {p.stem for p in paths}:
            old.unlink()
    cards = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        title, text = lesson(nb)
        title = title or path.stem
        png = headline_png(nb)
        card = ["::::{container} vaekit-card"]
        if png:
            thumbnail(png, thumbs / f"{path.stem}.png")
            card.append(
                f"![the headline figure of {title}]({GENERATED}/thumbs/{path.stem}.png)"
            )
            card.append("")
        card.append(f"**[{title}]({STAGED}/{path.name})**")
        card.append("")
        if text:
            card += [text, ""]
        seconds = run_time(nb)
        if seconds:
            card += [
                ":::{container} vaekit-card-time",
                f"run time at the defaults: {seconds}",
                ":::",
            ]
        card.append("::::")
        cards.append("\n".join(card))
    return ":::::{container} vaekit-series\n" + "\n\n".join(cards) + "\n:::::\n"


def results_markdown(readme: Path, repository: str) -> str:
    """The README's ``## Results`` section, one heading level down, its links made absolute."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    m = re.search(r"^## Results[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        return f"The measured results are in the [README]({repository}#readme).\n"
    body = re.sub(r"^(#{3,6}) ", lambda h: h.group(1)[1:] + " ", m.group(1), flags=re.M)

    def fix(link):
        target = link.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            return link.group(0)
        if target.startswith("#"):
            return f"{link.group(1)}{repository}{target}{link.group(3)}"
        if target.startswith("docs/"):
            return f"{link.group(1)}../{target[len('docs/') :]}{link.group(3)}"
        if (
            target.startswith("notebooks/")
            and target.endswith(".ipynb")
            and (DOCS.parent / target).exists()
        ):
            return f"{link.group(1)}../{target}{link.group(3)}"
        return f"{link.group(1)}{repository}/blob/{_branch()}/{target}{link.group(3)}"

    return _LINK.sub(fix, body)


# --------------------------------------------------------------------------- Sphinx


_CONFIG: dict = {}


def _branch() -> str:
    return _CONFIG.get("branch", "main")


def _notebooks_dir(app) -> Path:
    override = os.environ.get(NOTEBOOKS_ENV)
    return (
        Path(override)
        if override
        else (Path(app.srcdir) / app.config.vaekit_notebooks_dir).resolve()
    )


def on_config_inited(app, config) -> None:
    srcdir = Path(app.srcdir)
    repository = config.vaekit_repository_url.rstrip("/")
    _CONFIG["branch"] = config.vaekit_repository_branch
    source = _notebooks_dir(app)
    paths = stage_notebooks(source, srcdir, repository)
    if not paths:
        raise RuntimeError(f"no notebooks matching {NOTEBOOK_GLOB} in {source}")
    generated = srcdir / GENERATED
    generated.mkdir(exist_ok=True)
    _write_if_changed(
        generated / "series.md", series_markdown(paths, generated).encode()
    )
    readme = Path(os.environ.get(README_ENV) or source.parent / "README.md")
    _write_if_changed(
        generated / "results.md", results_markdown(readme, repository).encode()
    )
    _copy_plotly_js(generated / "static")
    config.html_static_path = [*config.html_static_path, str(generated / "static")]


def _copy_plotly_js(folder: Path) -> None:
    """plotly.min.js from the plotly package into ``_generated/static`` (served as ``_static``)."""
    import plotly

    bundled = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not bundled.exists():
        raise RuntimeError(f"plotly.js not found in the plotly package at {bundled}")
    _write_if_changed(folder / "plotly.min.js", bundled.read_bytes())


def on_page_context(app, pagename, templatename, context, doctree) -> None:
    """plotly.js and the figure loader only on the pages that draw figures."""
    if doctree is None or not pagename.startswith(f"{STAGED}/"):
        return
    if "vaekit-plotly" not in context.get("body", ""):
        return
    # the builder's add_js_file in this event adds to this page only (Sphinx reverts it)
    app.builder.add_js_file("plotly.min.js", priority=600)
    app.builder.add_js_file("vaekit-figures.js", priority=601)


def setup(app):
    app.add_config_value(
        "vaekit_repository_url", "https://github.com/vaekit/vaekit", "html"
    )
    app.add_config_value("vaekit_repository_branch", "main", "html")
    app.add_config_value("vaekit_notebooks_dir", "../notebooks", "html")
    app.connect("config-inited", on_config_inited)
    app.connect("html-page-context", on_page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
