"""The site of the series, built and read the way a visitor reads it.

Builds ``docs/`` (Sphinx + myst-nb, from the committed notebooks, nothing executed) into a
temporary folder with the README's command, serves it on 127.0.0.1, and opens every notebook
page in headless Chromium. On each page: every equation is typeset by MathJax (no TeX errors),
every plotly figure is drawn (an ``svg`` in its ``div``), every image has loaded, no request
leaves 127.0.0.1 and none fails. Every link between the site's pages (and to an anchor in one)
points at something that exists. Screenshots of the home page and two notebook pages go to
``tests/artifacts/site/``.

Needs the ``docs`` extra (``pip install -e ".[docs]"``, part of ``.[dev]``), Chromium and
Playwright, like ``tests/test_browser.py``: without them the test is skipped with the reason, or
fails when ``$VAEKIT_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from browser_support import CHROMIUM_ARGS, CHROMIUM_ENV, find_chromium

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "tests" / "artifacts" / "site"
REQUIRE_ENV = "VAEKIT_REQUIRE_BROWSER"
BUILD_TIMEOUT = (
    600  # s: the whole series on a busy 2-core machine takes well under a minute
)
PAGE_TIMEOUT = 90_000  # ms: a page, its MathJax and its figures on a busy CPU
# the generated and built parts of docs/, never copied into the test's build
NOT_SOURCES = ("_build", "notebooks", "_generated", "__pycache__")

pytestmark = pytest.mark.site


def _missing(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} (and ${REQUIRE_ENV}=1 requires the site test to run)")
    pytest.skip(reason)


# --------------------------------------------------------------------------- build and serve


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from a copy of docs/ (so that the checkout's docs/ is never written)."""
    for module in ("sphinx", "myst_nb", "sphinx_book_theme", "PIL"):
        try:
            __import__(module)
        except ImportError:
            _missing(f"{module} is not installed: pip install -e '.[docs]'")
    tmp = tmp_path_factory.mktemp("site")
    source = tmp / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    out = tmp / "html"
    env = dict(
        os.environ,
        VAEKIT_SITE_NOTEBOOKS=str(NOTEBOOKS),
        VAEKIT_SITE_README=str(ROOT / "README.md"),
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(source), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    print(f"site built in {time.perf_counter() - started:.1f} s")
    assert proc.returncode == 0, f"the site build failed:\n{proc.stderr[-4000:]}"
    warnings = [
        line
        for line in proc.stderr.splitlines()
        if "WARNING" in line or "ERROR" in line
    ]
    assert not warnings, "the site build warned:\n" + "\n".join(warnings[:20])
    return out


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    chromium, looked = find_chromium()
    if chromium is None:
        _missing(
            f"Chromium not found: looked for {', '.join(looked)}; install Debian's package "
            f"(`apt-get install chromium`, or .ci/browser-setup.sh) or set ${CHROMIUM_ENV}"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (`pip install playwright`)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        context = b.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(PAGE_TIMEOUT)
        yield context
        context.close()
        b.close()


# --------------------------------------------------------------------------- links


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name):
                self.links.append(attrs[name])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_no_internal_link_is_broken(site):
    """Every href and src of every page that stays on the site resolves to a file, and every
    #anchor into a page to an id on that page."""
    # (the theme's _static/*.html are Jinja templates it ships, not pages)
    pages = {
        p: _parse(p)
        for p in site.rglob("*.html")
        if "_static" not in p.relative_to(site).parts
    }
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urllib.parse.urlsplit(link)
            if (
                parts.scheme
                or parts.netloc
                or link.startswith(("mailto:", "javascript:", "data:"))
            ):
                continue
            target = (
                (page.parent / urllib.parse.unquote(parts.path)).resolve()
                if parts.path
                else page
            )
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if urllib.parse.unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(
        broken[:30]
    )


def test_every_notebook_has_a_page_in_the_table_of_contents(site):
    """The pages and the table of contents follow whatever notebooks exist."""
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert notebooks, "no notebooks found"
    pages = sorted(p.stem for p in (site / "notebooks").glob("*.html"))
    assert pages == notebooks
    home = (site / "index.html").read_text(encoding="utf-8")
    for stem in notebooks:
        assert f'href="notebooks/{stem}.html"' in home, (
            f"the home page does not link to {stem}"
        )
        assert f"thumbs/{stem}.png" in home or f"{stem}.png" in home, (
            f"no thumbnail of {stem} on the home page"
        )
    nav = re.findall(r'href="notebooks/(\d\d_[^".]+)\.html"', home)
    assert sorted(set(nav)) == notebooks


# --------------------------------------------------------------------------- the pages in Chromium

# MathJax done, then every figure drawn (or the wait times out and the checks below report it)
_READY_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  return true;
}"""

_CHECK_JS = """() => {
  const maths = Array.from(document.querySelectorAll('article .math'));
  const figures = Array.from(document.querySelectorAll('div.vaekit-plotly'));
  const images = Array.from(document.querySelectorAll('article img'));
  return {
    maths: maths.length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    texErrors: Array.from(document.querySelectorAll('mjx-merror')).map(e =>
        (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120)),
    figures: figures.length,
    undrawn: figures.map((f, i) => f.querySelector('svg.main-svg') ? null : i).filter(i => i !== null),
    images: images.length,
    unloaded: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src').slice(0, 80)),
    launch: Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
        .filter(h => h.includes('mybinder.org') || h.includes('colab.research.google.com')),
  };
}"""


def _notebook_pages() -> list[str]:
    return [
        f"notebooks/{p.stem}.html" for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    ]


def test_every_notebook_page_in_chromium(site, server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    outside, failed = [], []

    def route(r):
        if urllib.parse.urlsplit(r.request.url).hostname == "127.0.0.1":
            r.continue_()
        else:  # never let it out: record it and refuse it
            outside.append(r.request.url)
            r.abort()

    browser.route("**/*", route)
    page = browser.new_page()
    page.on(
        "response",
        lambda resp: resp.status >= 400 and failed.append(f"{resp.status} {resp.url}"),
    )
    page.on(
        "requestfailed",
        lambda req: req.url.startswith(server) and failed.append(f"failed {req.url}"),
    )
    problems = []
    pages = _notebook_pages()
    try:
        for path in ["index.html", *pages]:
            started = time.perf_counter()
            page.goto(server + path, wait_until="load")
            page.evaluate(_READY_JS)
            if path != "index.html":
                try:
                    page.wait_for_function(
                        """() => Array.from(document.querySelectorAll('div.vaekit-plotly'))
                        .every(f => f.querySelector('svg.main-svg'))""",
                        timeout=PAGE_TIMEOUT,
                    )
                except Exception:
                    pass  # reported below, figure by figure
            state = page.evaluate(_CHECK_JS)
            print(
                f"{path}: {state['maths']} equations, {state['figures']} figures, {state['images']} images, "
                f"{time.perf_counter() - started:.1f} s"
            )
            where = f"{path}:"
            if state["untypeset"]:
                problems.append(
                    f"{where} {len(state['untypeset'])} equations not typeset, e.g. {state['untypeset'][:3]}"
                )
            if state["texErrors"]:
                problems.append(f"{where} TeX errors: {state['texErrors'][:3]}")
            if state["undrawn"]:
                problems.append(
                    f"{where} figures not drawn: {state['undrawn']} of {state['figures']}"
                )
            if state["unloaded"]:
                problems.append(f"{where} images not loaded: {state['unloaded'][:3]}")
            if path != "index.html":
                if state["maths"] == 0:
                    problems.append(f"{where} no equations at all")
                stem = Path(path).stem
                for host in ("mybinder.org", "colab.research.google.com"):
                    if not any(
                        host in h and f"notebooks/{stem}.ipynb" in h
                        for h in state["launch"]
                    ):
                        problems.append(
                            f"{where} no {host} launch button for notebooks/{stem}.ipynb"
                        )
            if path == "index.html":
                page.screenshot(path=str(ARTIFACTS / "home.png"))
            elif path == pages[0]:
                page.screenshot(path=str(ARTIFACTS / f"{Path(path).stem}.png"))
            elif path == pages[len(pages) // 2]:
                figure = page.locator("div.vaekit-plotly").first
                if figure.count():
                    figure.evaluate("el => el.scrollIntoView({block: 'center'})")
                    page.mouse.move(0, 0)  # no hover label in the picture
                page.screenshot(path=str(ARTIFACTS / f"{Path(path).stem}-figure.png"))
    finally:
        page.close()
        browser.unroute("**/*")
    assert not outside, f"requests left 127.0.0.1: {sorted(set(outside))[:10]}"
    assert not failed, f"requests failed: {failed[:10]}"
    assert not problems, "\n".join(problems)
