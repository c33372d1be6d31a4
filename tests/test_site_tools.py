"""The site's helpers, without building it: the notebooks made ready for the web
(docs/_ext/vaekit_site.py) and the cell that installs vaekit in Colab or Binder
(docs/_install_cell.py, inserted by docs/insert_install_cell.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
sys.path.insert(0, str(ROOT / "docs"))

import insert_install_cell  # noqa: E402
import vaekit_site  # noqa: E402

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
REPO = "https://github.com/owner/name"


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# 06 · A title\n\nThe lesson, in one sentence. A second one.\n\n"
            "More, with [a link](../README.md#x) and [07](07_next.ipynb)."
        ),
        nbformat.v4.new_code_cell("smoke = False"),
        nbformat.v4.new_code_cell("fig.show()"),
        nbformat.v4.new_code_cell("panel"),
        nbformat.v4.new_markdown_cell("The same view frozen."),
        nbformat.v4.new_code_cell("frozen.show()"),
        nbformat.v4.new_code_cell("print(time)"),
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    figure = {
        "data": [{"type": "scatter", "y": [1, 2]}],
        "layout": {"height": 300, "title": {"text": "</script>"}},
    }
    nb.cells[2].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "AEVB:  40%|####      | 640/1600 [00:01<00:02, 300it/s]",
                vaekit_site.WIDGET_MIME: {"model_id": "a"},
            },
        ),
        nbformat.v4.new_output(
            "display_data", data={vaekit_site.PLOTLY_MIME: figure, "image/png": PNG}
        ),
    ]
    nb.cells[3].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "VBox(children=(FloatSlider(value=1.0, description='z1'),))",
                vaekit_site.WIDGET_MIME: {"model_id": "b"},
            },
        )
    ]
    nb.cells[5].outputs = [
        nbformat.v4.new_output(
            "display_data", data={vaekit_site.PLOTLY_MIME: figure, "image/png": PNG}
        )
    ]
    nb.cells[6].outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stdout",
            text="notebook ran in 3.2 minutes (181 CPU seconds in this kernel)\n",
        )
    ]
    return nb


def test_web_notebook_figures_widgets_links():
    nb = _notebook()
    web = vaekit_site.web_notebook(nb, REPO, {"06_a.ipynb", "07_next.ipynb"})
    outputs = web.cells[2].outputs
    assert len(outputs) == 1, "the progress bar is dropped, the figure kept"
    html = outputs[0]["data"]["text/html"]
    assert 'class="vaekit-plotly"' in html and "image/png" not in outputs[0]["data"]
    payload = html.split('class="vaekit-plotly-json">')[1].split("</script>")[0]
    assert "</script>" not in payload and json.loads(payload.replace("<\\/", "</"))[
        "data"
    ][0]["y"] == [1, 2]
    widget = web.cells[3].outputs
    assert (
        len(widget) == 1 and "running Python kernel" in widget[0]["data"]["text/html"]
    )
    assert f"data:image/png;base64,{PNG}" in widget[0]["data"]["text/html"], (
        "the still is the frozen view's PNG"
    )
    text = web.cells[0].source
    assert f"]({REPO}/blob/main/README.md#x)" in text and "](07_next.ipynb)" in text
    assert nb.cells[2].outputs[1]["data"]["image/png"] == PNG, (
        "the committed notebook is not changed"
    )


def test_web_notebook_drops_the_install_cell():
    nb = _notebook()
    assert insert_install_cell.with_install_cell(nb)
    web = vaekit_site.web_notebook(nb, REPO, set())
    assert not any("install-vaekit" in c.metadata.get("tags", []) for c in web.cells)


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "notebook ran in 3.2 minutes (181 CPU seconds in this kernel); recorded: {}",
            "181 s CPU, 192 s wall",
        ),
        (
            "notebook ran in 26.9 minutes, 607 s of CPU time in this kernel",
            "607 s CPU, 1614 s wall",
        ),
        ("total time: 552 s wall, 144 s CPU", "144 s CPU, 552 s wall"),
        ("run time: 95.2 s wall, 90.1 s CPU", "90 s CPU, 95 s wall"),
    ],
)
def test_run_time(line, expected):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=line + "\n")
    ]
    assert vaekit_site.run_time(nb) == expected


def test_run_time_falls_back_to_papermill():
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 36.3}
    assert vaekit_site.run_time(nb) == "36 s wall"


def test_lesson_and_headline():
    nb = _notebook()
    assert vaekit_site.lesson(nb) == (
        "06 · A title",
        "The lesson, in one sentence. A second one.",
    )
    assert vaekit_site.headline_png(nb) == PNG
    nb.cells[5].metadata["tags"] = ["headline"]
    nb.cells[5].outputs[0]["data"]["image/png"] = "other"
    assert vaekit_site.headline_png(nb) == "other"


def test_results_section_from_the_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n## Results\n\n### Sub\n\nA [bench](benchmarks/b.py), ![w](docs/images/w.png), "
        "[top](#quick-start), [web](https://example.org).\n\n## Next\n\nnot this\n"
    )
    md = vaekit_site.results_markdown(readme, REPO)
    assert "## Sub" in md and "not this" not in md
    assert f"]({REPO}/blob/main/benchmarks/b.py)" in md and "](../images/w.png)" in md
    assert f"]({REPO}#quick-start)" in md and "](https://example.org)" in md


def test_install_cell_is_inserted_once_before_the_first_code_cell(tmp_path):
    path = tmp_path / "06_a.ipynb"
    nbformat.write(_notebook(), path)
    assert insert_install_cell.main([str(path)]) == 0
    first = path.read_bytes()
    assert insert_install_cell.main([str(path)]) == 0
    assert path.read_bytes() == first, "a second run changes nothing"
    assert insert_install_cell.main(["--check", str(path)]) == 0
    nb = nbformat.read(path, as_version=4)
    assert (
        nb.cells[0].cell_type == "markdown"
        and "install-vaekit" in nb.cells[1].metadata["tags"]
    )
    assert nb.cells[2].metadata["tags"] == ["parameters"]
    assert [c.source for c in nb.cells[2:]] == [c.source for c in _notebook().cells[1:]]
    nb.cells[1].source = "old"
    nbformat.write(nb, path)
    assert insert_install_cell.main(["--check", str(path)]) == 1
    insert_install_cell.main([str(path)])
    assert insert_install_cell.main(["--check", str(path)]) == 0


def test_install_cell_points_at_the_sites_repository():
    conf = (ROOT / "docs" / "conf.py").read_text()
    source = insert_install_cell.cell_source()
    url = conf.split('"VAEKIT_REPOSITORY_URL", "')[1].split('"')[0]
    branch = conf.split('"VAEKIT_REPOSITORY_BRANCH", "')[1].split('"')[0]
    assert f"git+{url}@{branch}" in source


# A stand-in for the kernel's world: vaekit missing or not, pip recorded instead of run.
_HARNESS = textwrap.dedent("""
    import importlib.util, json, subprocess, sys
    calls = []
    real = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name == "vaekit" and MISSING else real(name, *a)
    subprocess.run = lambda args, **kw: calls.append(args)
    exec(compile(open(CELL).read(), CELL, "exec"), {})
    print(json.dumps(calls))
""")


@pytest.mark.parametrize(
    "where, missing, installs",
    [
        ({}, True, False),  # a plain Python, vaekit missing: nothing
        (
            {"BINDER_LAUNCH_HOST": "https://x/"},
            False,
            False,
        ),  # Binder with vaekit: nothing
        (
            {"BINDER_LAUNCH_HOST": "https://x/"},
            True,
            True,
        ),  # Binder without vaekit: pip install
        (
            {"COLAB_RELEASE_TAG": "release"},
            True,
            True,
        ),  # Colab without vaekit: pip install
    ],
)
def test_install_cell_installs_only_in_colab_or_binder_when_missing(
    where, missing, installs
):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("BINDER_", "COLAB_"))
    }
    env.update(where)
    code = (
        f"MISSING = {missing}\nCELL = {str(insert_install_cell.SOURCE)!r}\n" + _HARNESS
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout.strip().splitlines()[-1])
    if installs:
        assert (
            len(calls) == 1
            and calls[0][1:4] == ["-m", "pip", "install"]
            and calls[0][-1].startswith("git+https://")
        )
    else:
        assert calls == []
