"""``vaekit run``: notebook selection, parameters, metrics.json, failures that say where, and
nothing lost: atomic results, merged metrics, interrupted and failed runs that never replace a
complete one, one-line usage errors. Tiny notebooks written in tmp_path; the series itself is
only inspected, never executed here."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from vaekit.runner import cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENV.pop(
    "VAEKIT_SMOKE", None
)  # (conftest sets it for nbval; these tests say when they want smoke)


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells[1:]]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


# 01 applies smoke settings the way the series does (a cell after the parameters that calls
# vaekit.smoke_requested and overwrites values); `fail` makes it fail on demand.
SETUP = "import vaekit\nsmoke = vaekit.smoke_requested(smoke)\nif smoke:\n    steps = 2"


@pytest.fixture
def series_dir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    write_notebook(
        d / "01_first.ipynb",
        [
            "smoke = False\nscale = 2\nsteps = 10\nfail = False",
            SETUP,
            "vaekit.record('answer', 21 * scale)\nvaekit.record('steps', steps)",
            "assert not fail, 'asked to fail'",
        ],
    )
    write_notebook(
        d / "02_second.ipynb",
        [
            "smoke = False",
            "x = 1",
            "import vaekit\nvaekit.record('before', 1)",
            "assert x == 2, 'x should be two'",
        ],
    )
    write_notebook(
        d / "03_third.ipynb",
        ["smoke = False", "import vaekit\nvaekit.record('third', 3)"],
    )
    return d


@pytest.fixture(autouse=True)
def no_smoke_env(monkeypatch):
    monkeypatch.delenv("VAEKIT_SMOKE", raising=False)


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["notebooks"]


def test_resolve_by_number_name_and_path(series_dir):
    assert [p.stem for p in cli.resolve([], series_dir)] == [
        "01_first",
        "02_second",
        "03_third",
    ]
    assert [p.stem for p in cli.resolve(["3", "01_first"], series_dir)] == [
        "01_first",
        "03_third",
    ]
    assert (
        cli.resolve([str(series_dir / "02_second.ipynb")], series_dir)[0].name
        == "02_second.ipynb"
    )
    with pytest.raises(cli.UsageError, match="no single notebook matches '7'"):
        cli.resolve(["7"], series_dir)


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("0.5", 0.5),
        ("True", True),
        ("None", None),
        ("[1, 2]", [1, 2]),
        ("~/data", "~/data"),
    ],
)
def test_parse_value(text, value):
    assert cli.parse_value(text) == value


def test_parameters_are_read_from_the_parameters_cell(series_dir):
    assert cli.notebook_parameters(series_dir / "01_first.ipynb") == [
        "smoke",
        "scale",
        "steps",
        "fail",
    ]
    assert {"smoke", "seed"} <= set(
        cli.notebook_parameters(ROOT / "notebooks" / "00_setup.ipynb")
    )
    first, third = series_dir / "01_first.ipynb", series_dir / "03_third.ipynb"
    assert cli.split_parameters([first, third], {"scale": 3}) == {
        first: {"scale": 3},
        third: {},
    }
    with pytest.raises(
        cli.UsageError,
        match=r"-p scael: 01_first has no parameter 'scael' \(its parameters: smoke, scale, steps, fail\)",
    ):
        cli.split_parameters([first], {"scael": 3})
    with pytest.raises(
        cli.UsageError,
        match="none of the chosen notebooks .01_first, 03_third. has a parameter 'scael'",
    ):
        cli.split_parameters([first, third], {"scael": 3})
    # a value of another type than the default is refused (an int parameter given 1.5, a bool given 1)
    assert cli.notebook_defaults(first) == {
        "smoke": False,
        "scale": 2,
        "steps": 10,
        "fail": False,
    }
    with pytest.raises(
        cli.UsageError,
        match=r"-p scale 1.5: 01_first's scale is an int \(default 2\), got float",
    ):
        cli.split_parameters([first], {"scale": 1.5})
    with pytest.raises(cli.UsageError, match="01_first's fail is a bool"):
        cli.split_parameters([first], {"fail": 1})
    lr = write_notebook(
        series_dir / "04_lr.ipynb",
        ["smoke = False\nlr = 0.5\nroot = None\nks = (1, 5)", "pass"],
    )
    assert cli.split_parameters([lr], {"lr": 1, "root": "~/data", "ks": [1, 2]}) == {
        lr: {"lr": 1, "root": "~/data", "ks": [1, 2]}
    }


def test_runs_merge_and_a_failure_never_replaces_a_complete_result(
    series_dir, tmp_path
):
    out = tmp_path / "out"
    metrics, failures = cli.run(
        cli.resolve(["01"], series_dir), out, {"scale": 3}, smoke=True, progress=False
    )
    assert failures == []
    first = metrics_of(out)["01_first"]
    assert (
        first["answer"] == 63 and first["_status"] == "ok" and first["_smoke"] is True
    )
    # the values the notebook ran with: the smoke settings applied, the -p value passed
    assert first["_parameters"] == {
        "smoke": True,
        "scale": 3,
        "steps": 2,
        "fail": False,
    }
    assert first["_requested"] == {"scale": 3, "smoke": True}
    complete = (out / "01_first.ipynb").read_bytes()
    assert not list(out.glob(".running*")), "no temporary files are left behind"

    # a second run into the same folder keeps the first run's entry
    cli.run(cli.resolve(["03"], series_dir), out, {}, progress=False)
    assert set(metrics_of(out)) == {"01_first", "03_third"}

    # a failing rerun of 01: the complete notebook and its numbers stay, the attempt is recorded
    _, failures = cli.run(
        cli.resolve(["01"], series_dir), out, {"fail": True}, progress=False
    )
    assert (
        len(failures) == 1
        and "01_first.ipynb failed in cell 3" in failures[0]
        and "asked to fail" in failures[0]
    )
    assert "the last complete run is kept" in failures[0]
    assert (out / "01_first.ipynb").read_bytes() == complete
    assert json.loads((out / "metrics" / "01_first.json").read_text())["answer"] == 63
    entry = metrics_of(out)["01_first"]
    assert (
        entry["_status"] == "failed"
        and entry["_cell"] == 3
        and "asked to fail" in entry["_error"]
    )
    assert entry["_parameters"]["fail"] is True and entry["_smoke"] is False
    assert (
        entry["_last_complete"]["answer"] == 63
        and entry["_last_complete"]["_status"] == "ok"
    )
    assert entry["_notebook"] == "incomplete/01_first.ipynb"
    partial = nbformat.read(out / "incomplete" / "01_first.ipynb", as_version=4)
    assert partial.metadata.papermill.exception is True
    assert partial.metadata.vaekit == {
        "status": "failed",
        "cell": 3,
        "error": entry["_error"],
    }
    assert "03_third" in metrics_of(out)


def test_failure_names_notebook_and_cell_and_stops(series_dir, tmp_path):
    out = tmp_path / "out"
    metrics, failures = cli.run(cli.resolve([], series_dir), out, {}, progress=False)
    assert len(failures) == 1
    assert (
        "02_second.ipynb failed in cell 3" in failures[0]
        and "AssertionError: x should be two" in failures[0]
    )
    assert "03_third" not in metrics, (
        "the run stops at the first failure unless --keep-going"
    )
    assert (
        metrics["02_second"]["_status"] == "failed"
        and metrics["02_second"]["before"] == 1
    )
    assert not (out / "02_second.ipynb").exists(), (
        "only complete runs are written as NN_name.ipynb"
    )
    assert (out / "incomplete" / "02_second.ipynb").exists()
    _, failures = cli.run(
        cli.resolve(["02", "03"], series_dir), out, {}, keep_going=True, progress=False
    )
    assert len(failures) == 1 and metrics_of(out)["03_third"]["_status"] == "ok"


def test_a_cell_timeout_is_a_failure_at_that_cell(tmp_path):
    nb = write_notebook(
        tmp_path / "01_slow.ipynb",
        ["seconds = 600", "import time", "time.sleep(seconds)", "x = 1"],
    )
    metrics, failures = cli.run([nb], tmp_path / "out", {}, timeout=5, progress=False)
    entry = metrics["01_slow"]
    assert (
        entry["_status"] == "failed"
        and entry["_cell"] == 2
        and "timed out" in entry["_error"]
    )
    assert len(failures) == 1 and "01_slow.ipynb failed in cell 2" in failures[0]
    partial = nbformat.read(
        tmp_path / "out" / "incomplete" / "01_slow.ipynb", as_version=4
    )
    assert [c.metadata.papermill.status for c in partial.cells][-2:] == [
        "failed",
        "pending",
    ]


def test_smoke_settings_and_explicit_values_do_not_clash_silently(series_dir, tmp_path):
    with pytest.raises(cli.UsageError):  # (not a parameter of 03)
        cli.run(
            cli.resolve(["03"], series_dir),
            tmp_path / "o",
            {"steps": 5},
            smoke=True,
            progress=False,
        )
    metrics, failures = cli.run(
        cli.resolve(["01"], series_dir),
        tmp_path / "o",
        {"steps": 5},
        smoke=True,
        progress=False,
    )
    assert len(failures) == 1
    assert (
        "01_first.ipynb did not start: ValueError: smoke settings replace -p steps 5 (smoke uses 2)"
        in failures[0]
    )
    assert "answer" not in metrics["01_first"], (
        "the notebook stops before it computes anything"
    )
    assert metrics["01_first"]["_parameters"]["steps"] == 2


def test_command_line_exit_status_and_message(series_dir, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaekit",
            "run",
            "02",
            "--notebook-dir",
            str(series_dir),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 1
    assert (
        "02_second.ipynb failed in cell 3" in proc.stderr
        and "x should be two" in proc.stderr
    )
    # VAEKIT_SMOKE=1 is smoke mode, and metrics.json says so
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaekit",
            "run",
            "01",
            "-p",
            "scale",
            "5",
            "--notebook-dir",
            str(series_dir),
            "--out",
            str(tmp_path / "p"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={**ENV, "VAEKIT_SMOKE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "executed notebooks:" in proc.stdout
    entry = metrics_of(tmp_path / "p")["01_first"]
    assert entry["answer"] == 105 and entry["steps"] == 2
    assert (
        entry["_smoke"] is True
        and entry["_parameters"]["smoke"] is True
        and entry["_environment"] == {"VAEKIT_SMOKE": "1"}
    )


def wait_for(path: Path, proc, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_interrupted_run_keeps_the_complete_notebook_and_says_where_it_stopped(
    tmp_path,
):
    d = tmp_path / "nbs"
    d.mkdir()
    write_notebook(
        d / "01_sleepy.ipynb",
        [
            "smoke = False\nseconds = 0",
            "import time, vaekit\nvaekit.record('before', 1)",
            "time.sleep(seconds)",
            "vaekit.record('after', 2)",
        ],
    )
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "vaekit",
        "run",
        "01",
        "--notebook-dir",
        str(d),
        "--out",
        str(out),
        "--no-progress",
    ]
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    complete = (out / "01_sleepy.ipynb").read_bytes()

    # Ctrl-C in a terminal: SIGINT to the whole process group (the runner and its kernel)
    proc = subprocess.Popen(
        command + ["-p", "seconds", "600"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(
            out / ".running" / "01_sleepy.metrics.json", proc
        )  # 'before' was recorded: the sleep is running
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert (
        "interrupted" in stdout
        and "01_sleepy.ipynb was interrupted in cell 2" in stderr
    )
    assert "Traceback" not in stdout
    assert (out / "01_sleepy.ipynb").read_bytes() == complete, (
        "the complete notebook is untouched"
    )
    assert json.loads((out / "metrics" / "01_sleepy.json").read_text()) == {
        "before": 1,
        "after": 2,
    }
    entry = metrics_of(out)["01_sleepy"]
    assert (
        entry["_status"] == "interrupted"
        and entry["_cell"] == 2
        and entry["before"] == 1
        and "after" not in entry
    )
    assert entry["_parameters"]["seconds"] == 600
    assert entry["_last_complete"]["after"] == 2
    partial = nbformat.read(out / "incomplete" / "01_sleepy.ipynb", as_version=4)
    assert partial.metadata.papermill.exception is True, (
        "papermill's metadata must not claim it finished cleanly"
    )
    assert (
        partial.metadata.vaekit["status"] == "interrupted"
        and partial.metadata.vaekit["cell"] == 2
    )
    status = {c.source: c.metadata.papermill.status for c in partial.cells}
    assert status["time.sleep(seconds)"] == "interrupted"
    assert status["vaekit.record('after', 2)"] == "pending", (
        "a cell that never ran is not 'completed'"
    )
    assert not (out / ".running").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--threads", "0"],
            "argument --threads: expected a positive whole number, got '0'",
        ),
        (
            ["--timeout", "-5"],
            "argument --timeout: expected a positive whole number, got '-5'",
        ),
        (["-p", "scael", "3"], "-p scael: 01_first has no parameter 'scael'"),
        (["--out", "{file}"], "is not a folder"),
        (["--out", "{file}/sub"], "cannot write there"),
        (["--out", "{bad_metrics}"], "its metrics.json is not a vaekit metrics file"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    series_dir, tmp_path, capsys, args, message
):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    args = [
        a.format(file=tmp_path / "a_file", bad_metrics=tmp_path / "bad") for a in args
    ]
    argv = (
        ["run", "01", "--notebook-dir", str(series_dir), "--no-progress"]
        + (["--out", str(tmp_path / "o")] if "--out" not in args else [])
        + args
    )
    try:
        status = cli.main(argv)
    except SystemExit as stop:  # argparse's errors
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists(), (
        "nothing is created before the arguments are checked"
    )


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root can write into a read-only folder",
)
def test_read_only_out_folder_is_a_usage_error(series_dir, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert (
            cli.main(
                [
                    "run",
                    "01",
                    "--notebook-dir",
                    str(series_dir),
                    "--out",
                    str(ro),
                    "--no-progress",
                ]
            )
            == 2
        )
    finally:
        ro.chmod(0o755)
    assert "cannot write there" in capsys.readouterr().err


BLOCK_RUNNER = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in {'papermill', 'nbformat', 'nbclient', 'ipykernel', 'jupyterlab', 'jupyter_client'}:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
    sys.meta_path.insert(0, Block())
    from vaekit.runner.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_without_the_runner_extra_run_says_what_to_install_and_list_still_works(
    tmp_path,
):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_RUNNER, "run", "00", "--smoke"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "vaekit run: needs the notebook runner (papermill, nbformat, ipykernel not installed): "
        "pip install 'vaekit[notebooks]'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_RUNNER, "list"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and proc.stdout.split()[0] == "00_setup", proc.stderr


def test_default_notebook_dir_is_the_checkouts_series():
    assert cli.default_notebook_dir() == ROOT / "notebooks"


def test_notebooks_command_copies_the_series_and_keeps_edits(
    series_dir, tmp_path, capsys
):
    dest = tmp_path / "mine"
    assert [p.name for p in cli.copy_series(dest, source=series_dir)] == [
        "01_first.ipynb",
        "02_second.ipynb",
        "03_third.ipynb",
    ]
    assert cli.copy_series(dest, source=series_dir) == [], (
        "identical files are left as they are"
    )
    (dest / "02_second.ipynb").write_text(
        (dest / "02_second.ipynb").read_text().replace("x = 1", "x = 2")
    )
    (dest / "03_third.ipynb").unlink()
    with pytest.raises(
        cli.UsageError,
        match="02_second.ipynb: already there and different .* --force overwrites them",
    ):
        cli.copy_series(dest, source=series_dir)
    assert not (dest / "03_third.ipynb").exists(), (
        "nothing is copied when an edited file is in the way"
    )
    assert [p.name for p in cli.copy_series(dest, force=True, source=series_dir)] == [
        "02_second.ipynb",
        "03_third.ipynb",
    ]
    # the command, with the series shipped with the package
    assert cli.main(["notebooks", str(tmp_path / "series")]) == 0
    assert sorted(p.name for p in (tmp_path / "series").iterdir()) == [
        p.name for p in cli.series(ROOT / "notebooks")
    ]
    (tmp_path / "series" / "00_setup.ipynb").write_text("{}")
    assert cli.main(["notebooks", str(tmp_path / "series")]) == 2
    assert "00_setup.ipynb: already there and different" in capsys.readouterr().err


def machine_paths(node, where="metadata"):
    """(where, value) for every string in a notebook's metadata that is an absolute machine path."""
    if isinstance(node, dict):
        return [
            hit for k, v in node.items() for hit in machine_paths(v, f"{where}.{k}")
        ]
    if isinstance(node, list):
        return [
            hit for i, v in enumerate(node) for hit in machine_paths(v, f"{where}[{i}]")
        ]
    return (
        [(where, node)]
        if isinstance(node, str)
        and node.startswith(("/work/", "/tmp/", "/root/", "/home/"))
        else []
    )


def test_clean_strips_widget_state_and_machine_paths(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": {"x": 1}}
    }
    nb.metadata["papermill"] = {
        "input_path": "/work/main/notebooks/w.ipynb",
        "output_path": "/tmp/run/w.ipynb",
        "parameters": {"data_root": "/home/me/mnist"},
        "exception": None,
    }
    nb.cells = [
        nbformat.v4.new_code_cell(
            "1", metadata={"papermill": {"status": "completed", "where": "/root/x"}}
        )
    ]
    nbformat.write(nb, tmp_path / "w.ipynb")
    assert cli.main(["clean", str(tmp_path / "w.ipynb")]) == 0
    cleaned = nbformat.read(tmp_path / "w.ipynb", as_version=4)
    assert "widgets" not in cleaned.metadata
    assert cleaned.metadata.papermill == {"parameters": {}, "exception": None}
    assert (
        machine_paths(cleaned.metadata) == []
        and machine_paths(cleaned.cells[0].metadata) == []
    )
    assert cleaned.cells[0].metadata.papermill.status == "completed"


def test_the_series_is_in_order_and_each_has_a_parameters_cell():
    notebooks = cli.series(ROOT / "notebooks")
    assert notebooks and notebooks[0].name == "00_setup.ipynb"
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, (
            f"{path.name}: needs exactly one cell tagged 'parameters'"
        )
        assert "smoke" in tagged[0].source, (
            f"{path.name}: the parameters cell needs a smoke switch"
        )
        assert "widgets" not in nb.metadata, (
            f"{path.name}: stored widget state must be stripped"
        )
        assert not any(cli.CAPTURE_TAG in c.metadata.get("tags", []) for c in nb.cells)


def test_the_runner_reads_each_notebooks_parameters_after_its_smoke_settings():
    """metrics.json's `_parameters` are read by a cell the runner puts after the cell that applies
    the smoke settings (the first cell after the parameters that calls vaekit.smoke_requested)."""
    for path in cli.series(ROOT / "notebooks"):
        nb = nbformat.read(path, as_version=4)
        cli._insert_capture_cell(nb, ["smoke"], {}, Path("unused.json"))
        at = next(
            i
            for i, c in enumerate(nb.cells)
            if cli.CAPTURE_TAG in c.metadata.get("tags", [])
        )
        assert "smoke_requested(" in nb.cells[at - 1].source, (
            f"{path.name}: the cell after the parameters cell should apply the smoke settings (vaekit.smoke_requested)"
        )


def test_committed_notebooks_carry_no_machine_paths():
    found = {}
    for path in cli.series(ROOT / "notebooks"):
        nb = nbformat.read(path, as_version=4)
        hits = machine_paths(nb.metadata) + [
            hit
            for i, c in enumerate(nb.cells)
            for hit in machine_paths(c.metadata, f"cells[{i}].metadata")
        ]
        if hits:
            found[path.name] = hits[:3]
    assert not found, (
        f"machine paths in notebook metadata (run `vaekit clean notebooks/*.ipynb`): {found}"
    )


# ----------------------------------------------------------------------------- one run per folder, nothing lost


def earlier_results(out: Path) -> dict[str, bytes]:
    """A folder holding a previous run's results (written here, as vaekit run writes them): returns its files."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics").mkdir(exist_ok=True)
    (out / "01_first.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    (out / "metrics" / "01_first.json").write_text('{"answer": 42}')
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "notebooks": {"01_first": {"_status": "ok", "answer": 42}},
                "written_by": "vaekit run",
            }
        )
    )
    return snapshot(out)


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_two_notebooks_with_the_same_name_are_refused(tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        write_notebook(tmp_path / d / "00_setup.ipynb", ["smoke = False", "pass"])
    a, b = (
        str(tmp_path / "a" / "00_setup.ipynb"),
        str(tmp_path / "b" / "00_setup.ipynb"),
    )
    with pytest.raises(
        cli.UsageError,
        match="two notebooks named 00_setup.ipynb .* would overwrite each other",
    ):
        cli.resolve([a, b], tmp_path)
    assert cli.main(["run", a, b, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "two notebooks named 00_setup.ipynb" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert len(cli.resolve([a, a], tmp_path)) == 1, (
        "the same file twice is one notebook"
    )


@pytest.mark.parametrize(
    "content",
    [
        '{"accuracy": 0.9}',
        '{"notebooks": {"a": 1}}',
        '{"notebooks": {}}',
        "[1, 2]",
        '{"notebooks": {"01_first": {"_status": "ok"}}, "model": "resnet"}',
    ],
)
def test_a_metrics_json_vaekit_did_not_write_is_refused_and_kept(
    series_dir, tmp_path, capsys, content
):
    out = tmp_path / "other"
    out.mkdir()
    (out / "metrics.json").write_text(content)
    assert (
        cli.main(
            [
                "run",
                "01",
                "--notebook-dir",
                str(series_dir),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "its metrics.json is not a vaekit metrics file (not written by vaekit run)"
        in err
        and len(err.splitlines()) == 1
    )
    assert (out / "metrics.json").read_text() == content
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_metrics_written_by_vaekit_are_accepted_with_or_without_the_mark(tmp_path):
    for data in (
        {
            "notebooks": {"01_first": {"_status": "ok", "answer": 1}}
        },  # before the mark existed
        {"notebooks": {}, "written_by": "vaekit run"},
    ):
        (tmp_path / "metrics.json").write_text(json.dumps(data))
        cli.check_metrics_file(tmp_path)


def test_a_second_run_into_a_locked_folder_is_refused_and_changes_nothing(
    series_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    before = earlier_results(out)
    with cli.FolderLock(out):
        assert (out / cli.LOCK_NAME).read_text().strip() == str(os.getpid())
        assert (
            cli.main(
                [
                    "run",
                    "01",
                    "--notebook-dir",
                    str(series_dir),
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert (
            f"another vaekit run (pid {os.getpid()}) is writing there" in err
            and len(err.splitlines()) == 1
        )
        before[cli.LOCK_NAME] = (out / cli.LOCK_NAME).read_bytes()
        assert snapshot(out) == before
    assert not (out / cli.LOCK_NAME).exists(), "the lock file goes with the lock"


def test_a_waiting_run_gets_the_folder_when_the_first_lets_go(tmp_path):
    import threading

    first = cli.FolderLock(tmp_path).__enter__()
    threading.Timer(0.5, first.__exit__, (None, None, None)).start()
    t0 = time.monotonic()
    with pytest.raises(cli.UsageError, match="another vaekit run"):
        cli.FolderLock(tmp_path, wait=0.1).__enter__()
    with cli.FolderLock(tmp_path, wait=10):
        assert 0.3 < time.monotonic() - t0 < 5


def test_a_lock_left_by_a_killed_run_is_recovered(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from vaekit.runner.cli import FolderLock
        lock = FolderLock({str(tmp_path)!r}).__enter__()
        print('locked', flush=True)
        time.sleep(600)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(cli.UsageError, match=f"pid {holder.pid}"):
            cli.FolderLock(tmp_path).__enter__()
        holder.kill()  # SIGKILL: no cleanup runs; the lock file stays behind
        holder.wait(30)
        assert (tmp_path / cli.LOCK_NAME).exists()
        with cli.FolderLock(tmp_path):
            assert (tmp_path / cli.LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        if holder.poll() is None:
            holder.kill()


def test_two_runs_into_one_folder_at_once_one_is_refused_the_other_completes(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    write_notebook(
        d / "01_sleepy.ipynb",
        [
            "smoke = False\nseconds = 0",
            "import time, vaekit\nvaekit.record('n', 1)",
            "time.sleep(seconds)",
        ],
    )
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "vaekit",
        "run",
        "01",
        "--notebook-dir",
        str(d),
        "--out",
        str(out),
        "--no-progress",
    ]
    first = subprocess.Popen(
        command + ["-p", "seconds", "3"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(out / cli.LOCK_NAME, first)
        second = subprocess.run(
            command, env=ENV, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2
        assert second.stderr.strip().startswith(
            f"vaekit run: --out {out}: another vaekit run (pid {first.pid}) is writing there"
        )
        stdout, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    entry = metrics_of(out)["01_sleepy"]
    assert (
        entry["_status"] == "ok"
        and entry["_parameters"]["seconds"] == 3
        and entry["n"] == 1
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "01_sleepy.ipynb",
        "metrics",
        "metrics.json",
    ]


def test_results_are_committed_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    before = earlier_results(out)
    (out / "incomplete").mkdir()
    (
        out / "incomplete" / "01_first.ipynb"
    ).mkdir()  # a folder where a file goes: found before anything is renamed
    with pytest.raises(
        cli.WriteFailure,
        match="cannot write .*incomplete/01_first.ipynb: a folder is in the way",
    ):
        cli._commit_files(
            [
                (out / "01_first.ipynb", b"new"),
                (out / "incomplete" / "01_first.ipynb", b"x"),
                (out / "metrics.json", b"{}"),
            ]
        )
    assert snapshot(out) == before
    (out / "incomplete" / "01_first.ipynb").rmdir()
    (out / "sub").write_text("a file where a folder goes")
    with pytest.raises(cli.WriteFailure, match="cannot write .*sub"):
        cli._commit_files(
            [(out / "01_first.ipynb", b"new"), (out / "sub" / "x.json", b"{}")]
        )
    before["sub"] = b"a file where a folder goes"
    assert snapshot(out) == before, (
        "no temporary file is left and no target was replaced"
    )


def test_a_file_in_the_way_of_the_results_is_one_line_and_loses_nothing(
    series_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    before = earlier_results(out)
    (out / "metrics" / "01_first.json").unlink()
    (out / "metrics").rmdir()
    (out / "metrics").write_text("a file where vaekit keeps a folder")
    before = snapshot(out)
    status = cli.main(
        [
            "run",
            "01",
            "--notebook-dir",
            str(series_dir),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert (
        err.startswith("vaekit run: cannot write")
        and "metrics" in err
        and "earlier results" in err
    )
    assert "Traceback" not in err
    assert snapshot(out) == before, (
        "the earlier notebook, metrics.json and the file in the way are untouched"
    )


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a small tmpfs at ``path``; returns why it could not (not root, no permission), else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a full disk needs a small tmpfs, and mounting one needs root"
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return (
        None
        if done.returncode == 0
        else f"mount -t tmpfs failed here: {done.stderr.strip()}"
    )


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped with the reason elsewhere); fill it with ``fill()``."""
    disk = tmp_path / "disk"
    why = _mount_tmpfs(disk, "256k")
    if why:
        pytest.skip(why)

    def fill():
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        assert os.statvfs(disk).f_bavail == 0

    try:
        yield disk, fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_ends_the_run_with_one_line_and_keeps_the_earlier_results(
    series_dir, full_disk, capsys
):
    disk, fill = full_disk
    out = disk / "out"
    before = earlier_results(out)
    fill()
    status = cli.main(
        [
            "run",
            "01",
            "--notebook-dir",
            str(series_dir),
            "--out",
            str(out),
            "--no-progress",
            "-p",
            "scale",
            "5",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and "Traceback" not in err
    assert snapshot(out) == before, (
        "the earlier results are intact and no half-written file is left"
    )
    assert not (out / ".running").exists() and not (out / cli.LOCK_NAME).exists()


def test_copying_the_series_onto_a_full_disk_leaves_no_partial_notebook(
    series_dir, full_disk, capsys
):
    disk, fill = full_disk
    fill()
    with pytest.raises(
        cli.WriteFailure, match="No space left on device; no partial notebook is left"
    ):
        cli.copy_series(disk / "mine", source=series_dir)
    assert list((disk / "mine").iterdir()) == []
    assert cli.main(["notebooks", str(disk / "series")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("vaekit notebooks: cannot write")
        and len(err.strip().splitlines()) == 1
    )
    assert list((disk / "series").iterdir()) == []
    (
        disk / "filler"
    ).unlink()  # space again: the copy completes, and nothing there is taken for an edit
    assert len(cli.copy_series(disk / "mine", source=series_dir)) == 3
