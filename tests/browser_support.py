"""Drive JupyterLab in headless Chromium: a throwaway server, a notebook run, slider gestures.

Used by ``tests/test_browser.py``. Everything here is bounded in time and cleans up after
itself by id: the kernel through a REST ``DELETE`` of its session, the server by asking it to
shut down and then, only if it does not, by signalling its own process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

CHROMIUM_ENV = "VAEKIT_CHROMIUM"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SERVER_START_TIMEOUT = 180.0  # s: the server imports jupyterlab and scans extensions
PAGE_LOAD_TIMEOUT = 180.0  # s: JupyterLab's bundle on a busy CPU
RUN_ALL_TIMEOUT = 480.0  # s: kernel start, torch import, the notebook's smoke run
FIGURE_TIMEOUT = 60.0  # s: slider -> kernel callback -> figure update back in the page

# JupyterLab user settings for the throwaway settings folder: render every cell (so widgets in
# cells below the fold are in the DOM) and never fetch news or check for updates.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none"
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_chromium() -> tuple[str | None, list[str]]:
    """Return ``(path or None, the paths looked at)``; ``$VAEKIT_CHROMIUM`` overrides the default."""
    looked = []
    override = os.environ.get(CHROMIUM_ENV)
    candidates = [override] if override else [*CHROMIUM_PATHS, shutil.which("chromium")]
    for path in candidates:
        if not path or path in looked:
            continue
        looked.append(path)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path, looked
    return None, looked


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.5
):
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- notebooks


def prepare_notebook(path: Path, parameters: dict) -> None:
    """Rewrite ``path`` in place for a browser run: outputs and stored widget state removed,
    and a cell tagged ``injected-parameters`` (as papermill does) right after the ``parameters``
    cell, setting ``parameters`` (e.g. ``{"smoke": True}``)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    tagged = [
        i
        for i, c in enumerate(nb.cells)
        if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if not tagged:
        raise ValueError(
            f"{path.name}: no cell tagged 'parameters' to inject {parameters} after"
        )
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    injected = nbformat.v4.new_code_cell(source)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(tagged[0] + 1, injected)
    nbformat.write(nb, path)


def notebook_has_widgets(path: Path) -> bool:
    """True when a code cell of the notebook builds an ipywidgets slider."""
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return bool(
        re.search(r"\b(ipywidgets|widgets)\b", code)
        and re.search(r"Slider\b|vaekit\.widgets", code)
    )


# --------------------------------------------------------------------------- the server


@dataclass
class LabServer:
    """A JupyterLab server on 127.0.0.1 with no token, all state in ``home``."""

    root: Path
    home: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    sessions: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def api(self, method: str, path: str, body=None, timeout: float = 60.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path.lstrip("/"),
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-n:]
            )
        except OSError:
            return "(no server log)"

    def create_session(self, notebook: str, kernel: str = "python3") -> dict:
        """Start the notebook's kernel through the REST API, before the page opens it, so that
        JupyterLab attaches to this session instead of auto-starting kernels of its own."""
        session = self.api(
            "POST",
            "api/sessions",
            {
                "path": notebook,
                "name": notebook,
                "type": "notebook",
                "kernel": {"name": kernel},
            },
        )
        self.sessions.append(session)
        return session

    def kernels(self) -> list[dict]:
        return self.api("GET", "api/kernels")

    def delete_session(self, session: dict) -> None:
        """Shut down one session and its kernel, by their ids."""
        kernel_id = session["kernel"]["id"]
        for path in (f"api/sessions/{session['id']}", f"api/kernels/{kernel_id}"):
            try:
                self.api("DELETE", path)
            except urllib.error.HTTPError as e:
                if (
                    e.code != 404
                ):  # 404: already gone (deleting the session stops its kernel)
                    raise
        if session in self.sessions:
            self.sessions.remove(session)

    def stop(self) -> None:
        """Delete the sessions this object created, ask the server to shut down, then wait for
        its process; only a server that ignores the request gets a signal (its own pid)."""
        for session in list(self.sessions):
            try:
                self.delete_session(session)
            except (OSError, urllib.error.URLError):
                pass
        if self.proc.poll() is None:
            try:
                self.api("POST", "api/shutdown", timeout=10)
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=15)


def lab_env(home: Path) -> dict:
    """The server's environment: throwaway Jupyter folders, one thread per kernel."""
    env = dict(os.environ)
    for var in (
        "VAEKIT_METRICS",
        "VAEKIT_STATIC_FIGURES",
        "JUPYTER_PATH",
        "JUPYTER_TOKEN",
    ):
        env.pop(var, None)
    folders = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        "IPYTHONDIR": "ipython",
    }
    for var, name in folders.items():
        (home / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / name)
    env.update(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1"
    )
    return env


def start_lab(root: Path, home: Path) -> LabServer:
    """Start ``jupyter lab`` serving ``root`` on a free port of 127.0.0.1; wait until it answers."""
    env = lab_env(home)
    for rel, settings in LAB_SETTINGS.items():
        path = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",  # the REST calls below carry no cookie
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # read-only inspection of cell outputs
        "--LabApp.extension_manager=readonly",  # no package index queries
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers
        cmd.append("--allow-root")
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = LabServer(root=root, home=home, port=port, proc=proc, log_path=log_path)

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {proc.returncode}:\n{server.log_tail()}"
            )
        try:
            server.api("GET", "api/status", timeout=5)
            return True
        except (OSError, urllib.error.URLError):
            return False

    try:
        wait_until(
            ready, SERVER_START_TIMEOUT, f"jupyter lab on port {port}", interval=1.0
        )
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------- the page

# Every code cell of the open notebook: prompt text, execution count, error outputs.
_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.widgets) return null;
  return panel.content.widgets.filter(w => w.model.type === 'code').map(w => {
    const prompt = w.node.querySelector('.jp-InputArea-prompt');
    const outputs = w.model.outputs.toJSON();
    return {
      prompt: prompt ? prompt.textContent.trim() : '',
      count: w.model.executionCount,
      errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
    };
  });
}"""

# The plotted data of a plotly graph div, as canonical JSON (typed arrays as lists).
_FIGURE_JS = """el => JSON.stringify({data: el.data, shapes: (el.layout || {}).shapes || null,
  images: (el.layout || {}).images || null},
  (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v)"""

_FIGURE_TITLE_JS = """el => { const t = (el.layout || {}).title; return typeof t === 'string' ? t : ((t || {}).text || ''); }"""


class NotebookPage:
    """One notebook open in JupyterLab, driven through the page like a person would."""

    def __init__(self, page, server: LabServer, notebook: str):
        self.page, self.server, self.notebook = page, server, notebook
        self.panel = None  # the notebook's panel in the page, once open
        self.console_errors: list[
            str
        ] = []  # errors the page logged to the browser console
        page.on(
            "console",
            lambda m: m.type == "error" and self.console_errors.append(m.text),
        )

    def open(self) -> None:
        """Open the notebook alone in a fresh workspace (``?reset``: no tabs restored from an
        earlier page, which would start their kernels) and wait until its kernel is idle."""
        workspace = re.sub(r"[^A-Za-z0-9]+", "-", Path(self.notebook).stem)
        self.page.goto(
            f"{self.server.url}lab/workspaces/{workspace}/tree/{self.notebook}?reset",
            timeout=PAGE_LOAD_TIMEOUT * 1000,
        )
        self.page.wait_for_function(
            """path => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                 const kernel = w && w.sessionContext && w.sessionContext.session
                                && w.sessionContext.session.kernel;
                 return w && w.context && w.context.path === path && w.content.widgets.length > 0
                        && kernel && kernel.status === 'idle'; }""",
            arg=self.notebook,
            timeout=PAGE_LOAD_TIMEOUT * 1000,
        )
        panel_id = self.page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
        self.panel = self.page.locator(f"[id='{panel_id}']")

    def cells(self) -> list[dict]:
        return self.page.evaluate(_CELLS_JS) or []

    def run_all(self) -> list[dict]:
        """Run > Run All Cells from the menu bar; wait until every code cell has run or one
        raised. Raises ``AssertionError`` naming the error if a cell failed."""
        self.panel.locator(".jp-Cell").first.click()
        self.page.locator(
            "#jp-menu-panel .lm-MenuBar-item", has_text=re.compile(r"^Run$")
        ).click()
        label = self.page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")
        )
        self.page.locator(".lm-Menu-item", has=label).click()

        def finished():
            cells = self.cells()
            if any(c["prompt"] == "[*]:" for c in cells):
                return None
            if any(c["errors"] for c in cells) or (
                cells and all(c["count"] for c in cells)
            ):
                return cells
            return None

        cells = wait_until(
            finished, RUN_ALL_TIMEOUT, f"Run All Cells of {self.notebook}", interval=1.0
        )
        errors = [e for c in cells for e in c["errors"]]
        assert not errors, f"{self.notebook}: a cell raised during Run All: {errors[0]}"
        return cells

    def log_console(self, timeout: float = 10.0) -> str:
        """Open JupyterLab's Log Console from the status bar (where tracebacks of widget callbacks
        go) and return its text; empty when nothing was logged."""
        item = self.page.locator(".jp-LogConsoleStatusItem [role='button']").first
        try:
            if not item.count() or "log entr" not in (
                item.get_attribute("title") or ""
            ):
                return ""
            item.click(timeout=timeout * 1000)
            panel = self.page.locator(".jp-LogConsolePanel").first
            panel.wait_for(timeout=timeout * 1000)
            return panel.inner_text(timeout=timeout * 1000).strip()
        except (
            Exception
        ) as e:  # diagnostics only: never hide the failure being reported
            return f"(could not read the log console: {e})"

    def diagnostics(self, chars: int = 1500) -> str:
        """What went wrong, as far as the page can tell: the Log Console and browser errors."""
        log = self.log_console()[-chars:] or "(empty)"
        errors = "\n".join(self.console_errors[-5:])[-chars:] or "(none)"
        return f"JupyterLab Log Console:\n{log}\nbrowser console errors:\n{errors}"

    def slider(self, description: str) -> "Slider":
        label = self.page.locator(
            ".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$")
        )
        root = self.panel.locator(".widget-slider", has=label)
        found = root.count()
        if found == 0:
            names = self.panel.locator(".widget-slider .widget-label").all_inner_texts()
            raise AssertionError(
                f"{self.notebook}: no slider described {description!r}; "
                f"sliders on the page: {names}"
            )
        return Slider(self.page, root.first)

    def figure(self, near: "Slider", title: str | None = None) -> "Figure":
        """The plotly figure the slider drives: the one titled ``title`` (substring), or else
        the first plotly graph in the same cell as the slider."""
        if title is None:
            plot = near.cell.locator(".js-plotly-plot").first
            if plot.count() == 0:
                raise AssertionError(
                    f"{self.notebook}: no plotly figure in the slider's cell"
                )
            return Figure(plot)
        plots = self.panel.locator(".js-plotly-plot")
        titles = [plots.nth(i).evaluate(_FIGURE_TITLE_JS) for i in range(plots.count())]
        for i, t in enumerate(titles):
            if title in t:
                return Figure(plots.nth(i))
        raise AssertionError(
            f"{self.notebook}: no plotly figure titled {title!r}; titles: {titles}"
        )


class Figure:
    def __init__(self, locator):
        self.locator = locator

    def state(self) -> str:
        return self.locator.evaluate(_FIGURE_JS)

    def wait_for_change(
        self, before: str, what: str, timeout: float = FIGURE_TIMEOUT
    ) -> str:
        return wait_until(
            lambda: (s := self.state()) != before and s,
            timeout,
            f"the figure to change after {what}",
            interval=0.25,
        )

    def wait_until_still(
        self, quiet: float = 1.0, timeout: float = FIGURE_TIMEOUT
    ) -> str:
        """Wait until the figure has not changed for ``quiet`` seconds (in-flight updates landed)."""
        last, since = self.state(), time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the figure kept changing for {timeout:.0f} s")
            time.sleep(0.2)
            now = self.state()
            if now != last:
                last, since = now, time.monotonic()
        return last


def _ancestor(css_class: str) -> str:
    """XPath to the nearest ancestor element with the class ``css_class``."""
    return f"xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' {css_class} ')][1]"


class Slider:
    """An ipywidgets (Int|Float)Slider view: a noUiSlider handle and an editable readout."""

    def __init__(self, page, root):
        self.page, self.root = page, root
        self.handle = root.locator(".noUi-handle").first
        self.track = root.locator(".noUi-target").first
        self.readout = root.locator(".widget-readout").first
        self.step = None  # learnt from the arrow keys: one press moves one step
        self.cell = root.locator(
            _ancestor("jp-Cell")
        )  # the notebook cell that displayed it
        self.output = root.locator(_ancestor("jp-OutputArea"))  # that cell's outputs

    def value(self) -> float:
        return float(
            self.readout.inner_text().strip().replace("\u2212", "-")
        )  # d3's minus sign

    def decimals(self) -> int:
        """Digits after the decimal point in the readout."""
        shown = self.readout.inner_text().strip()
        return len(shown.split(".")[1]) if "." in shown else 0

    def bounds(self) -> tuple[float, float]:
        return (
            float(self.handle.get_attribute("aria-valuemin")),
            float(self.handle.get_attribute("aria-valuemax")),
        )

    def _toward_room(self) -> int:
        """+1 to move right, -1 to move left: towards the farther end of the range."""
        lo, hi = self.bounds()
        return 1 if self.value() <= (lo + hi) / 2 else -1

    def drag(self, fraction: float = 0.3) -> None:
        """Press the handle, move the mouse a ``fraction`` of the track's width, release."""
        self.handle.scroll_into_view_if_needed()
        h, t = self.handle.bounding_box(), self.track.bounding_box()
        x, y = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
        dx = self._toward_room() * fraction * t["width"]
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + dx, y, steps=12)
        self.page.mouse.up()

    def press_arrows(self, n: int = 3) -> None:
        """Focus the handle and press the arrow key ``n`` times (one step each)."""
        key = "ArrowRight" if self._toward_room() > 0 else "ArrowLeft"
        before = self.value()
        self.handle.focus()
        for _ in range(n):
            self.handle.press(key)
        try:
            wait_until(
                lambda: self.value() != before, 10, "the handle to move", interval=0.1
            )
        except TimeoutError:
            return  # the test reports the unmoved slider
        # The slider's step, learnt to the readout's precision (None if the handle did not move).
        self.step = round(abs(self.value() - before) / n, self.decimals()) or None

    def type_value(self, fraction: float = 0.25) -> str:
        """Click the readout, replace its text with a value a ``fraction`` of the range from
        the far end, press Enter; returns the text typed."""
        lo, hi = self.bounds()
        decimals = self.decimals()
        target = (
            hi - fraction * (hi - lo)
            if self._toward_room() > 0
            else lo + fraction * (hi - lo)
        )
        if (
            self.step
        ):  # a value on the slider's grid, which is what the slider will show
            target = lo + round((target - lo) / self.step) * self.step
        text = f"{target:.{decimals}f}"
        if float(text) == self.value():  # never type the value it already has
            text = f"{(lo + hi) / 2:.{decimals}f}"
        self.readout.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")
        return text
