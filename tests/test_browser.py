"""The widgets, used the way a reader uses them: JupyterLab in headless Chromium.

For each notebook in ``CASES`` the test serves a throwaway copy of ``notebooks/`` from a
JupyterLab bound to 127.0.0.1, runs the notebook with its smoke parameters (Run > Run All
Cells), then moves one slider three ways (dragging the handle with the mouse, the arrow keys,
typing a value into the readout) and asserts after each that the plotly figure the slider
drives was redrawn with different data. Before/after screenshots go to
``tests/artifacts/browser/``.

Needs Chromium (Debian's ``chromium`` package, or ``$VAEKIT_CHROMIUM``) and Playwright for
Python; without them the browser tests are skipped with the reason, or fail when
``$VAEKIT_REQUIRE_BROWSER=1`` (CI). Adding a notebook is one line in ``CASES``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from browser_support import (
    CHROMIUM_ARGS,
    CHROMIUM_ENV,
    NotebookPage,
    find_chromium,
    notebook_has_widgets,
    prepare_notebook,
    start_lab,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = Path(os.environ.get("VAEKIT_BROWSER_NOTEBOOKS", ROOT / "notebooks"))
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
REQUIRE_ENV = "VAEKIT_REQUIRE_BROWSER"


@dataclass(frozen=True)
class WidgetCase:
    notebook: str  # file in notebooks/
    slider: str  # the slider's description, as shown next to it
    figure: str | None = (
        None  # title of the figure it drives; None: the plotly figure in its cell
    )
    parameters: dict = field(default_factory=lambda: {"smoke": True})


CASES = [
    WidgetCase("00_setup.ipynb", slider="digit"),
    WidgetCase("01_gaussian_mixtures.ipynb", slider="mean x"),
    WidgetCase("04_elbo.ipynb", slider="q mean"),
    WidgetCase("04_elbo.ipynb", slider="μ of q"),  # KL(q||p) against KL(p||q)
    WidgetCase("06_vae.ipynb", slider="z1"),
    WidgetCase("07_iwae.ipynb", slider="q shift (sd)"),
    WidgetCase("09_latent_information.ipynb", slider="log₂ β"),
    WidgetCase("10_priors_and_hierarchies.ipynb", slider="z₂[1]"),
    WidgetCase("12_semi_supervised.ipynb", slider="z1"),
    WidgetCase("13_disentanglement.ipynb", slider="z value"),
    WidgetCase("14_vqvae.ipynb", slider="code"),
    WidgetCase("15_vqvae2.ipynb", slider="draw"),
]


def _missing(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"{reason} (and ${REQUIRE_ENV}=1 requires the browser tests to run)"
        )
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    path, looked = find_chromium()
    if path is None:
        _missing(
            f"Chromium not found: looked for {', '.join(looked)}; install Debian's package "
            f"(`apt-get install chromium`, or .ci/browser-setup.sh) or set ${CHROMIUM_ENV}"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing(
            "Playwright for Python is not installed (`pip install playwright`; "
            "no `playwright install` needed, the system Chromium is used)"
        )
    return path


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """A JupyterLab server on a throwaway copy of notebooks/, stopped by its own id."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(
        NOTEBOOKS,
        root,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
    )
    server = start_lab(root, tmp / "home")
    yield server
    server.stop()
    assert server.proc.returncode is not None, "the JupyterLab server is still running"


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        context.set_default_timeout(60_000)
        yield context
        context.close()


def _gestures(slider):
    return [
        ("dragging the slider's handle with the mouse", lambda: slider.drag()),
        ("pressing the arrow key on the focused handle", lambda: slider.press_arrows()),
        ("typing a value into the slider's readout", lambda: slider.type_value()),
    ]


@pytest.mark.browser
@pytest.mark.parametrize("case", CASES, ids=[c.notebook.split("_")[0] for c in CASES])
def test_slider_redraws_figure(case: WidgetCase, lab, browser):
    if not (NOTEBOOKS / case.notebook).exists():
        pytest.skip(f"{case.notebook} is not in {NOTEBOOKS}")
    prepare_notebook(lab.root / case.notebook, case.parameters)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / Path(case.notebook).stem

    session = lab.create_session(case.notebook)
    kernel_id = session["kernel"]["id"]
    page = browser.new_page()
    notebook = NotebookPage(page, lab, case.notebook)
    try:
        notebook.open()
        notebook.run_all()
        slider = notebook.slider(case.slider)
        figure = notebook.figure(slider, case.figure)
        slider.output.scroll_into_view_if_needed()
        state = figure.wait_until_still()
        page.mouse.move(0, 0)  # no hover labels in the picture
        slider.output.screenshot(path=f"{stem}-before.png")

        for what, gesture in _gestures(slider):
            value = slider.value()
            typed = gesture()
            wait_until(
                lambda: slider.value() != value,
                30,
                f"the slider's value to change after {what}",
            )
            if typed is not None:  # the slider shows what was typed, up to its step
                tolerance = (
                    max(10.0 ** -slider.decimals(), (slider.step or 0) / 2) + 1e-9
                )
                assert abs(slider.value() - float(typed)) <= tolerance, (
                    f"typed {typed} into the readout, the slider shows {slider.value()}"
                )
            try:
                figure.wait_for_change(state, what)
            except TimeoutError:
                pytest.fail(
                    f"{case.notebook}: the figure did not change after {what} "
                    f"(slider {case.slider!r} moved {value} -> {slider.value()}); "
                    f"{notebook.diagnostics()}"
                )
            state = figure.wait_until_still()
            print(
                f"{case.notebook}: {what}: slider {value} -> {slider.value()}, figure redrawn"
            )
        slider.readout.evaluate("el => el.blur()")  # no text cursor in the picture
        page.mouse.move(0, 0)
        slider.output.screenshot(path=f"{stem}-after.png")

        kernels = [k["id"] for k in lab.kernels()]
        assert kernels == [kernel_id], (
            f"expected only the session's kernel {kernel_id}, found {kernels}"
        )
    except BaseException:
        try:
            page.screenshot(path=f"{stem}-failure.png", full_page=True)
        except Exception as e:  # a crashed page: keep the original failure
            print(f"no failure screenshot: {e}")
        raise
    finally:
        page.close()
        lab.delete_session(session)
    assert kernel_id not in [k["id"] for k in lab.kernels()], (
        f"kernel {kernel_id} still running"
    )


def test_every_widget_notebook_is_listed():
    """A notebook with sliders must be in CASES, so that the browser test covers it."""
    listed = {c.notebook for c in CASES}
    unlisted = [
        p.name
        for p in sorted(NOTEBOOKS.glob("*.ipynb"))
        if notebook_has_widgets(p) and p.name not in listed
    ]
    assert not unlisted, (
        f"notebooks with sliders missing from CASES in {__file__}: {unlisted}"
    )
