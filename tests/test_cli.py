"""``vaekit run``: notebook selection, parameters, metrics.json, and failures that say where."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vaekit import cli

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells[1:]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def series_dir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    write_notebook(d / "01_first.ipynb", ["smoke = False\nscale = 2", "import vaekit\nvaekit.record('answer', 21 * scale)\nvaekit.record('smoke', smoke)"])
    write_notebook(d / "02_second.ipynb", ["smoke = False", "x = 1", "import vaekit\nvaekit.record('before', 1)", "assert x == 2, 'x should be two'"])
    write_notebook(d / "03_third.ipynb", ["smoke = False", "import vaekit\nvaekit.record('third', 3)"])
    return d


def test_resolve_by_number_name_and_path(series_dir):
    assert [p.stem for p in cli.resolve([], series_dir)] == ["01_first", "02_second", "03_third"]
    assert [p.stem for p in cli.resolve(["3", "01_first"], series_dir)] == ["01_first", "03_third"]
    assert cli.resolve([str(series_dir / "02_second.ipynb")], series_dir)[0].name == "02_second.ipynb"
    with pytest.raises(SystemExit, match="no single notebook matches '7'"):
        cli.resolve(["7"], series_dir)


@pytest.mark.parametrize("text, value", [("3", 3), ("0.5", 0.5), ("True", True), ("None", None), ("[1, 2]", [1, 2]), ("~/data", "~/data")])
def test_parse_value(text, value):
    assert cli.parse_value(text) == value


def test_run_collects_metrics_and_parameters(series_dir, tmp_path):
    out = tmp_path / "out"
    metrics, failures = cli.run(cli.resolve(["01", "03"], series_dir), out, {"scale": 3}, smoke=True, progress=False)
    assert failures == []
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["parameters"] == {"scale": 3, "smoke": True}
    assert saved["notebooks"]["01_first"]["answer"] == 63 and saved["notebooks"]["01_first"]["smoke"] is True
    assert saved["notebooks"]["03_third"]["third"] == 3
    assert (out / "01_first.ipynb").exists() and (out / "03_third.ipynb").exists()


def test_failure_names_notebook_and_cell_and_stops(series_dir, tmp_path):
    out = tmp_path / "out"
    metrics, failures = cli.run(cli.resolve([], series_dir), out, {}, progress=False)
    assert len(failures) == 1
    assert "02_second.ipynb failed in cell" in failures[0] and "AssertionError: x should be two" in failures[0]
    assert "03_third" not in metrics, "the run stops at the first failure unless --keep-going"
    assert metrics["02_second"]["_status"] == "failed" and metrics["02_second"]["before"] == 1
    _, failures = cli.run(cli.resolve([], series_dir), out, {}, keep_going=True, progress=False)
    assert len(failures) == 1 and json.loads((out / "metrics.json").read_text())["notebooks"]["03_third"]["_status"] == "ok"


def test_command_line_exit_status_and_message(series_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vaekit", "run", "02", "--notebook-dir", str(series_dir),
                           "--out", str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "02_second.ipynb failed in cell" in proc.stderr and "x should be two" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "vaekit", "run", "01", "--smoke", "-p", "scale", "5",
                           "--notebook-dir", str(series_dir), "--out", str(tmp_path / "p"), "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "executed notebooks:" in proc.stdout
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["notebooks"]["01_first"]["answer"] == 105


def test_widget_state_is_stripped(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": 1}}}
    nbformat.write(nb, tmp_path / "w.ipynb")
    cli.strip_widget_state(tmp_path / "w.ipynb")
    assert "widgets" not in nbformat.read(tmp_path / "w.ipynb", as_version=4).metadata


def test_the_series_is_in_order_and_each_has_a_parameters_cell():
    notebooks = cli.series(ROOT / "notebooks")
    assert notebooks and notebooks[0].name == "00_setup.ipynb"
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert "smoke" in tagged[0].source, f"{path.name}: the parameters cell needs a smoke switch"
        assert "widgets" not in nb.metadata, f"{path.name}: stored widget state must be stripped"
