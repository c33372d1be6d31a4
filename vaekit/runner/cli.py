"""``vaekit``: run the notebook series headlessly, list it, copy it, clean executed notebooks.

    vaekit run                      # every notebook, in order, default parameters
    vaekit run 01 06 --smoke        # two notebooks with their small, fast parameters
    vaekit run 06 -p epochs 50 -p data_root ~/mnist --out runs/long
    vaekit list                     # the notebooks of the series (shipped with the package)
    vaekit notebooks DIR            # copy the series into DIR to read and edit
    vaekit clean FILE.ipynb ...     # strip widget state and machine paths from executed notebooks

``vaekit run`` executes each notebook with papermill into a temporary file in the output folder and
renames it to ``NN_name.ipynb`` only when the notebook ran to the end, so a complete executed
notebook is never replaced by a partial one. A failed or interrupted notebook is kept as
``incomplete/NN_name.ipynb`` (its metadata says how it ended). The headline numbers every notebook
recorded with :func:`vaekit.record` go into ``metrics.json``, which is merged with what the folder
already holds: one entry per notebook, the latest attempt, with its status (``ok``, ``failed``,
``interrupted``), the failing cell, and the parameter values the notebook actually ran with (read
back from the kernel after its smoke settings were applied). A failed or interrupted entry keeps
the folder's last complete result under ``_last_complete``.

Parameters: every ``-p NAME`` must be a parameter of (at least one of) the chosen notebooks, checked
against their ``parameters`` cells before anything runs, and is passed only to the notebooks that
have it. ``--smoke`` (or ``VAEKIT_SMOKE=1``) turns on a notebook's smoke settings, which replace
the values they set; a ``-p`` value that the smoke settings would replace is an error (the notebook
stops at once with a message naming the parameter), never silently ignored.

One run at a time writes into an output folder: ``vaekit run`` locks it (:class:`FolderLock`), and a
second run into it waits ``--wait`` seconds, then is refused. Two notebooks with the same file name
are refused (their results would overwrite each other), and so is a ``metrics.json`` that
``vaekit run`` did not write. Results are written to temporary files and renamed into place only
when all of them are written, so a full disk or a read-only folder ends the run with one line and
leaves the folder's earlier results and no half-written file.

Exit status: 0 all ran, 1 a notebook failed or its results could not be written, 2 bad usage
(option values, unknown parameter, unusable or busy output folder, runner not installed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .recorder import ENV_VAR as METRICS_ENV
from ..figures.plots import STATIC_ENV
from ..utils import atomic_write

RUNNER_MODULES = ("papermill", "nbformat", "ipykernel")
RUNNER_HINT = "pip install 'vaekit[notebooks]'"
CAPTURE_TAG = "vaekit-capture-parameters"
PATH_PREFIXES = (
    "/work/",
    "/tmp/",
    "/root/",
    "/home/",
    "/Users/",
    "/private/",
    "/var/folders/",
)


class UsageError(ValueError):
    """A bad option, parameter or output folder: reported as one line, exit status 2."""


class Interrupted(KeyboardInterrupt):
    """The run was interrupted; carries what had been done (``metrics``, ``failures``)."""

    def __init__(self, metrics: dict, failures: list[str]):
        super().__init__("interrupted")
        self.metrics, self.failures = metrics, failures


# ----------------------------------------------------------------------------- where the series is


def default_notebook_dir() -> Path:
    """The series shipped with the package: ``vaekit/notebooks`` in an installed wheel, else the
    ``notebooks/`` folder beside the package in a checkout (an editable install)."""
    package = (
        Path(__file__).resolve().parents[1]
    )  # vaekit/ (this file is vaekit/runner/cli.py)
    for candidate in (package / "notebooks", package.parent / "notebooks"):
        if series(candidate):
            return candidate
    return package / "notebooks"


def series(notebook_dir: Path) -> list[Path]:
    """The notebooks of the series, in order (``NN_name.ipynb``)."""
    return sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))


def resolve(names: list[str], notebook_dir: Path) -> list[Path]:
    """Turn ``01``, ``01_gaussian_mixtures``, or a path into notebook files, in series order."""
    available = series(notebook_dir)
    if not names:
        if not available:
            raise UsageError(f"no notebooks found in {notebook_dir}")
        return available
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path.resolve())
            continue
        matches = [
            p
            for p in available
            if p.stem == name
            or p.stem.split("_", 1)[0] == name.zfill(2)
            or p.stem.startswith(name + "_")
        ]
        if len(matches) != 1:
            listing = ", ".join(p.stem for p in available) or "none"
            raise UsageError(
                f"no single notebook matches {name!r} (available: {listing})"
            )
        chosen.append(matches[0])
    chosen = sorted(set(chosen), key=lambda p: (p.name, str(p)))
    by_name: dict[str, list[Path]] = {}
    for p in chosen:
        by_name.setdefault(p.name, []).append(p)
    clash = [paths for paths in by_name.values() if len(paths) > 1]
    if clash:  # their results would land on the same NN_name.ipynb and metrics entry
        raise UsageError(
            f"two notebooks named {clash[0][0].name} ({', '.join(map(str, clash[0]))}): their results "
            "would overwrite each other in one --out folder; run them into different folders"
        )
    return chosen


# ----------------------------------------------------------------------------- parameters


def parse_value(text: str):
    """``-p NAME VALUE``: a Python literal (``3``, ``0.5``, ``True``, ``None``, ``[1, 2]``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _parameters_cell(nb: dict) -> tuple[int, str] | None:
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and "parameters" in cell.get(
            "metadata", {}
        ).get("tags", []):
            source = cell.get("source", "")
            return i, "".join(source) if isinstance(source, list) else source
    return None


def notebook_defaults(path: Path) -> dict:
    """The names the notebook's ``parameters`` cell assigns, in order, with their default values
    where the value is a literal (else ``...``); empty if it has no parameters cell."""
    found = _parameters_cell(_read_json(path))
    if found is None:
        return {}
    defaults: dict = {}

    def add(target, value):
        if isinstance(target, ast.Name):
            try:
                literal = ast.literal_eval(value) if value is not None else ...
            except (ValueError, SyntaxError, TypeError):
                literal = ...
            defaults[target.id] = literal if target.id not in defaults else ...
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = (
                value.elts
                if isinstance(value, (ast.Tuple, ast.List))
                and len(value.elts) == len(target.elts)
                else [None] * len(target.elts)
            )
            for t, v in zip(target.elts, values):
                add(t, v)

    for node in ast.parse(found[1]).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add(target, node.value)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target, None)
    return defaults


def notebook_parameters(path: Path) -> list[str]:
    """The names the notebook's ``parameters`` cell assigns, in order (empty if it has none)."""
    return list(notebook_defaults(path))


def _kind(value) -> str | None:
    """What a default's type asks of a -p value: None where anything goes."""
    for kind, types in (
        ("a bool", bool),
        ("an int", int),
        ("a number", float),
        ("a string", str),
        ("a list", (list, tuple)),
    ):
        if isinstance(value, types):
            return kind
    return None


def _fits(kind: str | None, value) -> bool:
    return {
        None: True,
        "a bool": isinstance(value, bool),
        "an int": isinstance(value, int) and not isinstance(value, bool),
        "a number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "a string": isinstance(value, str),
        "a list": isinstance(value, (list, tuple)),
    }[kind] or value is None


def split_parameters(notebooks: list[Path], parameters: dict) -> dict[Path, dict]:
    """Check every requested parameter against the notebooks' ``parameters`` cells and return the
    values each notebook gets (only the names it has). Raises :class:`UsageError` naming a
    parameter no chosen notebook has, or a value of another type than the parameter's default
    (``-p epochs 1.5`` where ``epochs = 40``; a number is fine where the default is a float, and
    anything where it is ``None``)."""
    known = {}
    for nb in notebooks:
        try:
            known[nb] = notebook_defaults(nb)
        except (OSError, ValueError, SyntaxError) as err:
            raise UsageError(
                f"{nb}: cannot read its parameters cell ({type(err).__name__}: {err})"
            ) from None
    for name, value in parameters.items():
        if not any(name in names for names in known.values()):
            if len(notebooks) == 1:
                nb = notebooks[0]
                raise UsageError(
                    f"-p {name}: {nb.stem} has no parameter {name!r} "
                    f"(its parameters: {', '.join(known[nb]) or 'none'})"
                )
            raise UsageError(
                f"-p {name}: none of the chosen notebooks ({', '.join(nb.stem for nb in notebooks)}) "
                f"has a parameter {name!r}"
            )
        for nb, defaults in known.items():
            if (
                name in defaults
                and defaults[name] is not ...
                and not _fits(_kind(defaults[name]), value)
            ):
                raise UsageError(
                    f"-p {name} {value!r}: {nb.stem}'s {name} is {_kind(defaults[name])} "
                    f"(default {defaults[name]!r}), got {type(value).__name__}"
                )
    return {
        nb: {k: v for k, v in parameters.items() if k in known[nb]} for nb in notebooks
    }


def _capture_source(names: list[str], explicit: dict, target: Path) -> str:
    """A cell that writes the values the kernel holds for ``names`` (after the smoke settings) to
    ``target``, and stops the notebook if smoke mode replaced a value given explicitly."""
    return (
        "# vaekit run: the parameter values this notebook runs with (this cell is not kept)\n"
        "def _vaekit_capture(names, explicit, target):\n"
        "    import json\n"
        "    g = globals()\n"
        "    used = {n: g[n] for n in names if n in g}\n"
        "    with open(target, 'w', encoding='utf-8') as f:\n"
        "        json.dump(used, f, default=repr)\n"
        "    clash = [f'-p {n} {v!r} (smoke uses {used[n]!r})' for n, v in explicit.items() if n in used and used[n] != v]\n"
        "    if used.get('smoke') and clash:\n"
        "        raise ValueError('smoke settings replace ' + ', '.join(clash) + ': leave out --smoke (and VAEKIT_SMOKE) or the -p value')\n"
        f"_vaekit_capture({names!r}, {explicit!r}, {str(target)!r})\n"
        "del _vaekit_capture\n"
    )


def _insert_capture_cell(nb, names: list[str], explicit: dict, target: Path) -> None:
    """Insert the capture cell after the cell that applies the smoke settings (the first code cell
    after the parameters cell that calls ``smoke_requested``), else right after the parameters."""
    import nbformat

    found = _parameters_cell(nb)
    if found is None:
        return
    start = found[0]
    at = start + 1
    if at < len(nb.cells) and "injected-parameters" in nb.cells[at].metadata.get(
        "tags", []
    ):
        at += 1
    for i in range(at, min(at + 4, len(nb.cells))):
        if nb.cells[i].cell_type == "code" and "smoke_requested(" in nb.cells[i].source:
            at = i + 1
            break
    cell = nbformat.v4.new_code_cell(
        _capture_source(names, explicit, target), metadata={"tags": [CAPTURE_TAG]}
    )
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        cell.pop("id", None)  # cell ids came with nbformat 4.5
    nb.cells.insert(at, cell)


# ----------------------------------------------------------------------------- cleaning notebooks


def _machine_path(value) -> bool:
    return isinstance(value, str) and (
        value.startswith(PATH_PREFIXES)
        or value.startswith(os.path.expanduser("~") + os.sep)
    )


def clean_notebook(nb) -> None:
    """Strip what an executed notebook should not carry: stored widget state (megabytes, useless
    without a kernel), papermill's ``input_path`` / ``output_path`` and any other absolute machine
    path in the notebook's or a cell's metadata, and the runner's capture cell."""
    nb.metadata.pop("widgets", None)
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict):
        pm.pop("input_path", None)
        pm.pop("output_path", None)

    def scrub(node):
        if isinstance(node, dict):
            for key in [k for k, v in node.items() if _machine_path(v)]:
                node.pop(key)
            for v in node.values():
                scrub(v)
        elif isinstance(node, list):
            node[:] = [v for v in node if not _machine_path(v)]
            for v in node:
                scrub(v)

    scrub(nb.metadata)
    nb.cells = [
        c for c in nb.cells if CAPTURE_TAG not in c.get("metadata", {}).get("tags", [])
    ]
    for cell in nb.cells:
        scrub(cell.get("metadata", {}))


def clean_file(path: Path) -> None:
    """:func:`clean_notebook` on a notebook file, rewritten atomically."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    clean_notebook(nb)
    _write_notebook(nb, Path(path))


def _write_notebook(nb, path: Path) -> None:
    import nbformat

    from ..utils import atomic_write

    with atomic_write(path, "w", suffix=".tmp") as f:
        nbformat.write(nb, f)


def strip_widget_state(path: Path) -> None:
    """Remove stored widget state (megabytes of it, useless without a kernel) from a notebook file."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if nb.metadata.pop("widgets", None) is not None:
        _write_notebook(nb, Path(path))


def _shrink_pngs(nb, colors: int = 256) -> None:
    """Re-encode the notebook's PNG figure copies with a palette of ``colors`` (needs Pillow; else
    leaves them): plots have few colours, and this roughly halves the file."""
    try:
        from PIL import Image
    except ImportError:
        return
    import base64
    import io

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert(
                "RGB"
            )
            buf = io.BytesIO()
            image.quantize(colors).save(buf, format="PNG", optimize=True)
            if buf.tell() < len(data["image/png"]) * 3 // 4:
                data["image/png"] = base64.b64encode(buf.getvalue()).decode()


def shrink_pngs(path: Path, colors: int = 256) -> None:
    """:func:`_shrink_pngs` on a notebook file."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    _shrink_pngs(nb, colors)
    _write_notebook(nb, Path(path))


# ----------------------------------------------------------------------------- running


def describe_failure(nb_path: Path, err, cell: int | None = None) -> str:
    exec_count = getattr(err, "exec_count", None)
    source = (getattr(err, "source", "") or "").strip().splitlines()
    where = (
        (f"cell {cell}" + (f" (In [{exec_count}])" if exec_count is not None else ""))
        if cell is not None
        else "before its first cell"
    )
    if source and source[0].startswith(
        "# vaekit run:"
    ):  # the capture cell: a parameter clash
        return f"{nb_path.name} did not start: {_error_text(err)}"
    first = f"\n    {source[0][:100]}" if source else ""
    return f"{nb_path.name} failed {'in ' * (cell is not None)}{where}:{first}\n    {_error_text(err)}"


def _error_text(err) -> str:
    return f"{getattr(err, 'ename', None) or type(err).__name__}: {getattr(err, 'evalue', None) or err}"


def _mark_incomplete(nb, status: str, error: str) -> int | None:
    """Make a failed or interrupted notebook say so: the cell that failed or was running gets
    ``status`` and ``exception``, the cells that never ran are ``pending`` (papermill marks them
    ``completed`` and the notebook ``exception: None`` when it is interrupted), and the notebook's
    metadata gets ``papermill.exception = True`` and ``vaekit = {status, cell, error}``. Returns the
    cell's index in the notebook as written (counting from 0; the cells papermill and the runner
    add are not counted), or None (also when the capture cell stopped it)."""
    cells = [
        c
        for c in nb.cells
        if not (
            c.get("cell_type") == "markdown"
            and "papermill-error-cell-tag" in c.get("metadata", {}).get("tags", [])
        )
    ]
    for cell in cells:
        cell.setdefault("metadata", {}).setdefault("papermill", {})

    def failed_here(cell) -> bool:
        meta = cell["metadata"]["papermill"]
        return (
            any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            or meta.get("status") in ("running", "failed")
            or bool(meta.get("exception"))
        )

    # the cell with the error (or still running); else (a timeout, a dead kernel) the last one started
    at = next((i for i, c in enumerate(cells) if failed_here(c)), None)
    if at is None:
        started = [
            i
            for i, c in enumerate(cells)
            if c["metadata"]["papermill"].get("start_time")
        ]
        at = started[-1] if started else None
    stopped, index = None, 0
    for i, cell in enumerate(cells):
        meta, tags = cell["metadata"]["papermill"], cell["metadata"].get("tags", [])
        if i == at:
            meta.update(status=status, exception=True)
            stopped = None if CAPTURE_TAG in tags else index
        elif at is not None and i > at:
            meta["status"] = "pending"
        if not {CAPTURE_TAG, "injected-parameters", "papermill-error-cell-tag"} & set(
            tags
        ):
            index += 1
    nb.metadata.setdefault("papermill", {})["exception"] = True
    nb.metadata["vaekit"] = {"status": status, "cell": stopped, "error": error}
    return stopped


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def check_out_folder(out: Path) -> None:
    """Create ``out`` if needed and make sure files can be written there and its ``metrics.json``
    (if any) can be merged with; raise :class:`UsageError` otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".vaekit-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(
            f"--out {out}: cannot write there ({err.strerror or err})"
        ) from None
    check_metrics_file(out)


METRICS_MARK = (
    "written_by",
    "vaekit run",
)  # the key and value every metrics.json vaekit writes carries


def _is_vaekit_metrics(data) -> bool:
    """A metrics.json that ``vaekit run`` wrote: it carries :data:`METRICS_MARK`, or (written by an
    earlier version) holds only ``notebooks`` (and ``parameters``), each entry with a ``_status``."""
    if not isinstance(data, dict) or not isinstance(data.get("notebooks"), dict):
        return False
    if data.get(METRICS_MARK[0]) == METRICS_MARK[1]:
        return True
    return (
        set(data) <= {"notebooks", "parameters"}
        and bool(data["notebooks"])
        and all(
            isinstance(e, dict) and "_status" in e for e in data["notebooks"].values()
        )
    )


def check_metrics_file(out: Path) -> None:
    """Raise :class:`UsageError` when ``out/metrics.json`` exists and is not one ``vaekit run`` wrote
    (another tool's file is never merged into and rewritten)."""
    existing = Path(out) / "metrics.json"
    if not (existing.exists() or existing.is_symlink()):
        return
    try:
        data = _read_json(existing)
    except (ValueError, OSError):
        data = None
    if not _is_vaekit_metrics(data):
        raise UsageError(
            f"--out {out}: its metrics.json is not a vaekit metrics file (not written by vaekit run); "
            "move it away or choose another folder"
        )


LOCK_NAME = ".vaekit-run.lock"


class FolderLock:
    """An exclusive lock on an output folder, held while ``vaekit run`` writes there.

    The lock is ``fcntl.flock`` on ``.vaekit-run.lock`` in the folder (which holds the owner's pid,
    for the message): the kernel drops it when its process dies, however it dies, so a stale lock
    file left by a killed run is simply locked again. Where ``fcntl`` is missing (Windows) the file
    is created exclusively and a file whose pid is no longer running is taken over."""

    def __init__(self, folder: Path, wait: float = 0.0):
        self.folder, self.path, self.wait, self.fd = (
            Path(folder),
            Path(folder) / LOCK_NAME,
            float(wait),
            None,
        )

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def _refuse(self):
        raise UsageError(
            f"--out {self.folder}: another vaekit run{self._holder()} is writing there; wait for it to "
            "finish (or pass --wait SECONDS) or choose another folder"
        )

    def _try_once(self) -> bool:
        try:
            import fcntl
        except ImportError:
            fcntl = None
        if fcntl is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and not _pid_alive(int(holder.split()[-1].rstrip(")"))):
                    self.path.unlink(missing_ok=True)  # its owner is gone: a stale lock
                return False
            self.fd = fd
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        try:  # the file we locked may have been removed by its last owner meanwhile: lock the one there now
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            same = False
        if not same:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def __enter__(self):
        deadline = time.monotonic() + self.wait
        while not self._try_once():
            if time.monotonic() >= deadline:
                self._refuse()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())) or 0.01)
        try:  # the pid is only for the message: a full disk must not stop the run here
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            self.path.unlink(
                missing_ok=True
            )  # before closing: nobody can lock this inode in between
            os.close(self.fd)
            self.fd = None
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class WriteFailure(OSError):
    """Results could not be written (full disk, read-only folder, a file in the way): one line, exit 1."""


def _merge_metrics(out: Path, stem: str, entry: dict) -> dict:
    """``out/metrics.json`` with one notebook's entry put in, keeping every other entry (read afresh,
    so runs into the same folder one after another add up); the caller writes it."""
    path = out / "metrics.json"
    data = _read_json(path) if path.exists() else {}
    notebooks = data.get("notebooks", {})
    previous = notebooks.get(stem)
    if entry["_status"] != "ok" and isinstance(previous, dict):
        last = (
            previous
            if previous.get("_status") == "ok"
            else previous.get("_last_complete")
        )
        if last:
            entry["_last_complete"] = {
                k: v for k, v in last.items() if k != "_last_complete"
            }
    notebooks[stem] = entry
    data = {
        **{k: v for k, v in data.items() if k != "parameters"},
        "notebooks": dict(sorted(notebooks.items())),
        METRICS_MARK[0]: METRICS_MARK[1],
    }
    return data


def _smoke_env() -> bool:
    return os.environ.get("VAEKIT_SMOKE", "").lower() not in ("", "0", "false", "no")


class _SigintDeferred:
    """Within the block a Ctrl-C is held back until the end (so the bookkeeping finishes)."""

    def __enter__(self):
        self.pending, self.old = False, None
        try:
            self.old = signal.signal(signal.SIGINT, self._hold)
        except ValueError:  # not the main thread
            pass
        return self

    def _hold(self, *_):
        self.pending = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending and exc[0] is None:
            raise KeyboardInterrupt
        return False


def _write_failure(err: BaseException, where, note: str = "") -> "WriteFailure":
    """A one-line :class:`WriteFailure` for an OSError met while writing ``where``."""
    what = getattr(err, "strerror", None) or str(err) or type(err).__name__
    name = getattr(err, "filename", None) or where
    return WriteFailure(
        getattr(err, "errno", None) or 0,
        f"cannot write {name}: {what}{note}".replace("\n", " "),
    )


def _is_write_error(err) -> bool:
    """An OSError from writing a file (a full disk, a read-only folder, a file in the way), as
    opposed to a cell timeout (TimeoutError, no errno) or the notebook's own failure."""
    return (
        isinstance(err, OSError)
        and not isinstance(err, TimeoutError)
        and getattr(err, "errno", None) is not None
    )


def _commit_files(files: list[tuple[Path, bytes]]) -> None:
    """Write each ``(path, content)`` to a temporary file beside it, then rename them all into place.
    If any write fails (a full disk, a read-only folder, a file or folder in the way) every temporary
    file is removed, no target has been touched, and a one-line :class:`WriteFailure` is raised."""
    from ..utils import _umask

    staged: list[tuple[str, Path]] = []
    path = None
    try:
        for (
            path,
            _,
        ) in (
            files
        ):  # a folder where a file goes would fail half-way through the renames
            if path.is_dir():
                raise IsADirectoryError(21, "a folder is in the way", str(path))
        for path, content in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(
                    f.fileno()
                )  # a full disk shows here at the latest, not after the rename
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as err:
        raise _write_failure(err, path) from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _notebook_bytes(nb) -> bytes:
    """The bytes ``nbformat.write`` would write (it ends the file with a newline)."""
    import nbformat

    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def _read_notebook(path: Path):
    """The notebook papermill wrote, or None where it is missing or unreadable (cut short)."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4) if path.exists() else None
    except (OSError, ValueError):
        return None


def _run_one(
    nb_path: Path,
    out: Path,
    params: dict,
    smoke: bool,
    kernel,
    static_figures: bool,
    timeout,
    cwd: Path,
    work: Path,
) -> tuple[dict, str | None, bool]:
    """Execute one notebook; return (its metrics.json entry, failure message or None, interrupted).
    ``work``: this run's folder for temporary files (inside ``out``). Raises :class:`WriteFailure`
    when the results cannot be written; the folder's earlier results are then left as they were."""
    import nbformat
    import papermill as pm

    stem = nb_path.stem
    tmp_nb, tmp_metrics, tmp_params = (
        work / f"{stem}.ipynb",
        work / f"{stem}.metrics.json",
        work / f"{stem}.parameters.json",
    )

    def remove_temporaries():
        for f in (tmp_nb, tmp_metrics, tmp_params):
            f.unlink(missing_ok=True)

    remove_temporaries()
    run_params = dict(params, **({"smoke": True} if smoke else {}))
    names = notebook_parameters(nb_path)
    source = nbformat.read(nb_path, as_version=4)
    _insert_capture_cell(
        source,
        names,
        {k: v for k, v in params.items() if k != "smoke"},
        tmp_params.resolve(),
    )
    os.environ[METRICS_ENV] = str(tmp_metrics.resolve())
    if static_figures:
        os.environ[STATIC_ENV] = "1"
    t0 = time.perf_counter()
    error, interrupted = None, False
    try:
        pm.execute_notebook(
            source,
            str(tmp_nb),
            parameters=run_params,
            kernel_name=kernel,
            progress_bar=False,
            cwd=str(cwd),
            execution_timeout=timeout,
        )
    except KeyboardInterrupt as err:
        error, interrupted = err, True
    except Exception as err:  # papermill's execution error, a dead kernel, a cell timeout, a failed write
        error = err
        interrupted = (
            getattr(err, "ename", None) == "KeyboardInterrupt"
        )  # Ctrl-C reached the kernel too
    seconds = round(time.perf_counter() - t0, 1)
    if _is_write_error(
        error
    ):  # papermill could not write the executed copy: nothing is recorded
        remove_temporaries()
        raise _write_failure(error, tmp_nb) from None
    with _SigintDeferred():
        status = (
            "interrupted" if interrupted else "failed" if error is not None else "ok"
        )
        try:
            recorded = _read_json(tmp_metrics) if tmp_metrics.exists() else {}
        except (OSError, ValueError):
            recorded = {}
        entry = {
            **recorded,
            "_status": status,
            "_seconds": seconds,
            "_finished": _now(),
            "_requested": run_params,
        }
        try:
            entry["_parameters"] = _read_json(tmp_params)
        except (OSError, ValueError):
            pass
        entry["_smoke"] = bool(
            entry.get("_parameters", {}).get("smoke", smoke or _smoke_env())
        )
        if _smoke_env():
            entry["_environment"] = {"VAEKIT_SMOKE": os.environ["VAEKIT_SMOKE"]}
        executed = _read_notebook(tmp_nb)
        message, files = None, []
        if status == "ok":
            if executed is None:
                remove_temporaries()
                raise WriteFailure(
                    0, f"cannot read back the executed notebook {tmp_nb} (cut short?)"
                )
            clean_notebook(executed)
            if static_figures:
                _shrink_pngs(executed)
            files += [
                (out / nb_path.name, _notebook_bytes(executed)),
                (
                    out / "metrics" / f"{stem}.json",
                    json.dumps(recorded, indent=2, sort_keys=True).encode(),
                ),
            ]
            entry["_notebook"] = nb_path.name
        else:
            entry["_error"] = "KeyboardInterrupt" if interrupted else _error_text(error)
            cell = (
                _mark_incomplete(executed, status, entry["_error"])
                if executed is not None
                else None
            )
            entry["_cell"] = cell
            message = (
                f"{nb_path.name} was interrupted"
                + (f" in cell {cell}" if cell is not None else "")
                if interrupted
                else describe_failure(nb_path, error, cell)
            )
            if executed is not None:
                target = out / "incomplete" / nb_path.name
                clean_notebook(executed)
                files.append((target, _notebook_bytes(executed)))
                entry["_notebook"] = f"incomplete/{nb_path.name}"
                message += f"\n    incomplete notebook: {target}"
            if (out / nb_path.name).exists():
                message += f"\n    the last complete run is kept: {out / nb_path.name}"
        try:
            data = _merge_metrics(out, stem, entry)
            files.append(
                (
                    out / "metrics.json",
                    json.dumps(data, indent=2, sort_keys=True).encode(),
                )
            )
            _commit_files(files)
        finally:
            remove_temporaries()
        if status == "ok":
            (out / "incomplete" / nb_path.name).unlink(missing_ok=True)
    return entry, message, interrupted


def run(
    notebooks: list[Path],
    out: Path,
    parameters: dict,
    smoke: bool = False,
    kernel: str | None = None,
    keep_going: bool = False,
    static_figures: bool = False,
    timeout: int | None = None,
    progress: bool = True,
    cwd: Path | None = None,
    wait: float = 0.0,
) -> tuple[dict, list[str]]:
    """Execute ``notebooks`` into ``out``; return (this run's metrics by notebook, failure messages).

    Parameters are checked first (:func:`split_parameters`), the folder second
    (:func:`check_out_folder`); both raise :class:`UsageError`. The folder is locked for the run
    (:class:`FolderLock`): a second run into it waits up to ``wait`` seconds, then is refused with
    a :class:`UsageError`. A failure to write the results raises :class:`WriteFailure` (the folder
    keeps what it held). An interruption (Ctrl-C) stops the run after recording the notebook as
    interrupted and raises :class:`Interrupted`."""
    from tqdm.auto import tqdm

    out = Path(out)
    per_notebook = split_parameters(notebooks, parameters)
    check_out_folder(out)
    metrics: dict = {}
    failures: list[str] = []
    saved_env = {k: os.environ.get(k) for k in (METRICS_ENV, STATIC_ENV)}
    with FolderLock(out, wait):
        check_metrics_file(
            out
        )  # again: another run may have written it while this one waited
        work = out / ".running"
        shutil.rmtree(
            work, ignore_errors=True
        )  # a killed run's leftovers: the lock says nobody uses them
        try:
            work.mkdir()
        except OSError as err:
            raise _write_failure(err, work) from None
        bar = tqdm(notebooks, desc="notebooks", unit="nb", disable=not progress)
        try:
            for nb_path in bar:
                bar.set_postfix_str(nb_path.stem)
                entry, message, interrupted = _run_one(
                    nb_path,
                    out,
                    per_notebook[nb_path],
                    smoke,
                    kernel,
                    static_figures,
                    timeout,
                    Path(cwd or Path.cwd()),
                    work,
                )
                metrics[nb_path.stem] = entry
                if message:
                    failures.append(message)
                if interrupted:
                    raise Interrupted(metrics, failures)
                if failures and not keep_going:
                    break
        except Interrupted:
            raise
        except KeyboardInterrupt:  # between notebooks
            raise Interrupted(metrics, failures) from None
        finally:
            bar.close()
            shutil.rmtree(work, ignore_errors=True)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return metrics, failures


# ----------------------------------------------------------------------------- copying the series


def copy_series(
    dest: Path, force: bool = False, source: Path | None = None
) -> list[Path]:
    """Copy the shipped notebooks into ``dest``. A file already there that differs from the shipped
    one (a reader's edits) is not overwritten unless ``force``: then nothing is copied and a
    :class:`UsageError` lists them. Each file is written to a temporary file and renamed, so a
    failed write (a full disk) raises :class:`WriteFailure` and leaves no partial notebook.
    Returns the files written."""
    source = Path(source or default_notebook_dir())
    notebooks = series(source)
    if not notebooks:
        raise UsageError(f"no notebooks found in {source}")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest}: exists and is not a folder")
    edited = [
        dest / p.name
        for p in notebooks
        if (dest / p.name).exists() and (dest / p.name).read_bytes() != p.read_bytes()
    ]
    if edited and not force:
        raise UsageError(
            f"{', '.join(str(p) for p in edited)}: already there and different from the shipped "
            f"notebook{'s' if len(edited) > 1 else ''} (edited?); nothing copied. --force overwrites them"
        )
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"{dest}: cannot create the folder ({err.strerror or err})"
        ) from None
    written = []
    for p in notebooks:
        target = dest / p.name
        if target.exists() and target.read_bytes() == p.read_bytes():
            continue
        try:  # through a temporary file and a rename: a full disk never leaves half a notebook
            with open(p, "rb") as src, atomic_write(target, "wb") as f:
                shutil.copyfileobj(src, f)
        except OSError as err:
            done = (
                f"; the {len(written)} copied before it are complete" if written else ""
            )
            raise _write_failure(
                err, target, note=done + "; no partial notebook is left"
            ) from None
        written.append(target)
    return written


# ----------------------------------------------------------------------------- the command line


class _Parser(argparse.ArgumentParser):
    def error(
        self, message
    ):  # one line, exit 2 (argparse's default also prints the usage)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number, got {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds >= 0, got {text!r}"
        )
    return value


def _missing_runner() -> list[str]:
    missing = []
    for name in RUNNER_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


RUN_HELP = """\
Parameters: -p NAME VALUE sets a parameter of the notebooks' parameters cell (VALUE is read as a
Python literal, else as a string). Each NAME is checked before anything runs: it must be a
parameter of at least one chosen notebook, and it is passed only to the notebooks that have it;
VALUE must have the default's type (an int is fine for a float, anything for None).
--smoke (or VAEKIT_SMOKE=1) turns on each notebook's smoke settings; -p may set anything those
leave alone (seed, data_root, ...), and a -p value the smoke settings replace stops the notebook
with an error naming it. metrics.json records, per notebook, the values it actually ran with.
The kernels run in the folder vaekit is started from, so relative paths in -p values (data_root,
checkpoint_dir) are read from there.

Output: --out holds NN_name.ipynb (complete runs only: a notebook is written to a temporary file
and renamed when it has run to the end), incomplete/NN_name.ipynb (failed or interrupted runs),
metrics/NN_name.json and metrics.json. A run into a folder that already holds results merges into
its metrics.json: notebooks run again get a new entry, the others keep theirs, and a failed or
interrupted notebook keeps the folder's last complete result under "_last_complete".

One run at a time: the folder is locked while a run writes there; a second run into it is refused
(or waits --wait SECONDS). Results are renamed into place only when all are written: a full disk
or a read-only folder stops the run with one line, leaving the earlier results.

Exit status: 0 ok, 1 a notebook failed or its results could not be written, 2 bad usage, 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaekit", description="Run, list and copy the vaekit notebook series."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser(
        "run",
        help="execute notebooks with papermill (needs vaekit[notebooks])",
        description="Execute notebooks of the series headlessly with papermill.",
        epilog=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_run.add_argument(
        "notebooks",
        nargs="*",
        help="numbers (01), names (01_gaussian_mixtures) or paths; default: all",
    )
    p_run.add_argument(
        "--smoke", action="store_true", help="small, fast parameters (smoke=True)"
    )
    p_run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter of the notebooks' parameters cell (see below)",
    )
    p_run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for executed notebooks and metrics.json, "
        "merged with what it holds (default: runs/<date-time>)",
    )
    p_run.add_argument(
        "--notebook-dir",
        type=Path,
        default=None,
        help="where the series lives (default: the notebooks shipped with vaekit)",
    )
    p_run.add_argument(
        "--kernel", default=None, help="Jupyter kernel name (default: the notebook's)"
    )
    p_run.add_argument(
        "--keep-going",
        action="store_true",
        help="run the remaining notebooks after a failure",
    )
    p_run.add_argument(
        "--static-figures",
        action="store_true",
        help="also embed a PNG of every figure (needs kaleido and Chrome/Chromium)",
    )
    p_run.add_argument(
        "--timeout", type=_positive_int, default=None, help="seconds allowed per cell"
    )
    p_run.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads per kernel (sets OMP_NUM_THREADS and MKL_NUM_THREADS)",
    )
    p_run.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="if another vaekit run is writing into --out, wait this long for it (default: refuse at once)",
    )
    p_run.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_list = sub.add_parser("list", help="list the notebooks of the series")
    p_list.add_argument(
        "--notebook-dir", type=Path, default=None, help="where the series lives"
    )
    p_copy = sub.add_parser(
        "notebooks",
        help="copy the series into a folder to read and edit",
        description="Copy the notebooks shipped with vaekit into DIR (open them with "
        "`jupyter lab DIR`). Files you changed there are not overwritten "
        "unless --force.",
    )
    p_copy.add_argument("dir", type=Path, help="destination folder (created if needed)")
    p_copy.add_argument(
        "--force",
        action="store_true",
        help="overwrite notebooks that differ from the shipped ones",
    )
    p_clean = sub.add_parser(
        "clean", help="strip widget state and machine paths from executed notebooks"
    )
    p_clean.add_argument(
        "files", nargs="+", type=Path, help="notebook files, rewritten in place"
    )
    return parser


def _print_summary(metrics: dict, out: Path) -> None:
    for stem, m in metrics.items():
        print(f"{m['_status']:>11}  {m['_seconds']:7.1f} s  {stem}")
    print(
        f"executed notebooks: {out.resolve()}\nmetrics: {(out / 'metrics.json').resolve()}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except UsageError as err:
        print(f"vaekit {args.command}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a failed write (full disk, read-only folder, a file in the way): one line
        text = (
            err.strerror
            if isinstance(err, WriteFailure)
            else f"{err.strerror or err}: {err.filename or ''}"
        )
        note = (
            "; the folder keeps its earlier results and no half-written file"
            if args.command == "run"
            else ""
        )
        print(
            f"vaekit {args.command}: {text}{note}".replace("\n", " "), file=sys.stderr
        )
        return 1


def _main(args) -> int:
    if args.command == "list":
        folder = args.notebook_dir or default_notebook_dir()
        if not series(folder):
            raise UsageError(f"no notebooks (NN_name.ipynb) found in {folder}")
        for p in series(folder):
            print(p.stem)
        return 0
    if args.command == "notebooks":
        written = copy_series(args.dir, force=args.force)
        print(
            f"{len(written)} notebook{'s' * (len(written) != 1)} copied to {args.dir} "
            f"(open them with: jupyter lab {args.dir})"
        )
        return 0
    missing = _missing_runner()
    if missing:
        raise UsageError(
            f"needs the notebook runner ({', '.join(missing)} not installed): {RUNNER_HINT}"
        )
    if args.command == "clean":
        for f in args.files:
            try:
                clean_file(f)
            except (OSError, ValueError) as err:
                raise UsageError(f"{f}: {err}") from None
        return 0
    nb_dir = args.notebook_dir or default_notebook_dir()
    notebooks = resolve(args.notebooks, nb_dir)
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(
            args.threads
        )
    params = {name: parse_value(value) for name, value in args.parameter}
    try:
        metrics, failures = run(
            notebooks,
            out,
            params,
            smoke=args.smoke,
            kernel=args.kernel,
            keep_going=args.keep_going,
            static_figures=args.static_figures,
            timeout=args.timeout,
            progress=not args.no_progress,
            wait=args.wait,
        )
    except Interrupted as stop:
        _print_summary(stop.metrics, out)
        print("\n".join(["", "INTERRUPTED:"] + stop.failures), file=sys.stderr)
        return 130
    _print_summary(metrics, out)
    if failures:
        print("\n".join(["", "FAILED:"] + failures), file=sys.stderr)
        return 1
    print(f"open them with:  jupyter lab {out}")
    return 0
