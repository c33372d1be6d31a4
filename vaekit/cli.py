"""``vaekit run``: execute the notebook series headlessly with papermill.

    vaekit run                      # every notebook, in order, default parameters
    vaekit run 01 06 --smoke        # two notebooks with their small, fast parameters
    vaekit run 06 -p epochs 50 -p data_root ~/mnist --out runs/long
    vaekit list                     # the notebooks of the series

Each executed notebook is written to the output folder with its widget state stripped, and the
headline numbers every notebook recorded with :func:`vaekit.record` are gathered into
``metrics.json`` there. A failing notebook is reported with its name, cell and error, and the
command exits with status 1.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

from .recorder import ENV_VAR as METRICS_ENV, write_json_atomic
from .viz import STATIC_ENV



def default_notebook_dir() -> Path:
    """``./notebooks`` when run from a checkout, else the one beside the installed package."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "notebooks"


def series(notebook_dir: Path) -> list[Path]:
    """The notebooks of the series, in order (``NN_name.ipynb``)."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def resolve(names: list[str], notebook_dir: Path) -> list[Path]:
    """Turn ``01``, ``01_gaussian_mixtures``, or a path into notebook files, in series order."""
    available = series(notebook_dir)
    if not names:
        if not available:
            raise SystemExit(f"vaekit run: no notebooks found in {notebook_dir}")
        return available
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path.resolve())
            continue
        matches = [p for p in available if p.stem == name or p.stem.split("_", 1)[0] == name.zfill(2) or p.stem.startswith(name + "_")]
        if len(matches) != 1:
            listing = ", ".join(p.stem for p in available) or "none"
            raise SystemExit(f"vaekit run: no single notebook matches {name!r} (available: {listing})")
        chosen.append(matches[0])
    return sorted(set(chosen), key=lambda p: (p.name, str(p)))


def parse_value(text: str):
    """``-p NAME VALUE``: a Python literal (``3``, ``0.5``, ``True``, ``None``, ``[1, 2]``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def strip_widget_state(path: Path) -> None:
    """Remove stored widget state (megabytes of it, useless without a kernel) from a notebook file."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if nb.metadata.pop("widgets", None) is not None:
        nbformat.write(nb, path)


def shrink_pngs(path: Path, colors: int = 256) -> None:
    """Re-encode the notebook's PNG figure copies with a palette of ``colors`` (needs Pillow; else
    leaves them): plots have few colours, and this roughly halves the file."""
    try:
        from PIL import Image
    except ImportError:
        return
    import base64
    import io

    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")
            buf = io.BytesIO()
            image.quantize(colors).save(buf, format="PNG", optimize=True)
            if buf.tell() < len(data["image/png"]) * 3 // 4:
                data["image/png"] = base64.b64encode(buf.getvalue()).decode()
    nbformat.write(nb, path)


def describe_failure(nb_path: Path, err) -> str:
    cell = getattr(err, "exec_count", None)
    index = getattr(err, "cell_index", None)
    source = (getattr(err, "source", "") or "").strip().splitlines()
    where = f"cell {index}" + (f" (In [{cell}])" if cell is not None else "") if index is not None else "a cell"
    first = f"\n    {source[0][:100]}" if source else ""
    what = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
    return f"{nb_path.name} failed in {where}:{first}\n    {what}"


def run(notebooks: list[Path], out: Path, parameters: dict, smoke: bool = False, kernel: str | None = None,
        keep_going: bool = False, static_figures: bool = False, timeout: int | None = None,
        progress: bool = True) -> tuple[dict, list[str]]:
    """Execute ``notebooks`` into ``out``; return (metrics by notebook, failure messages)."""
    import papermill as pm
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    params = dict(parameters)
    if smoke:
        params["smoke"] = True
    metrics: dict = {}
    failures: list[str] = []
    saved_env = {k: os.environ.get(k) for k in (METRICS_ENV, STATIC_ENV)}
    bar = tqdm(notebooks, desc="notebooks", unit="nb", disable=not progress)
    try:
        for nb_path in bar:
            bar.set_postfix_str(nb_path.stem)
            target = out / nb_path.name
            metrics_file = out / "metrics" / f"{nb_path.stem}.json"
            metrics_file.unlink(missing_ok=True)
            os.environ[METRICS_ENV] = str(metrics_file.resolve())
            if static_figures:
                os.environ[STATIC_ENV] = "1"
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(str(nb_path), str(target), parameters=params, kernel_name=kernel,
                                    progress_bar=False, cwd=str(nb_path.parent), execution_timeout=timeout)
                status = "ok"
            except Exception as err:  # papermill's execution error, a dead kernel, a timeout
                status = "failed"
                failures.append(describe_failure(nb_path, err) + f"\n    executed notebook: {target}")
            finally:
                if target.exists():
                    strip_widget_state(target)
                    if static_figures:
                        shrink_pngs(target)
            recorded = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
            metrics[nb_path.stem] = {**recorded, "_status": status, "_seconds": round(time.perf_counter() - t0, 1)}
            write_json_atomic(out / "metrics.json", {"parameters": params, "notebooks": metrics})
            if failures and not keep_going:
                break
    finally:
        bar.close()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return metrics, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaekit", description="Run the vaekit notebook series headlessly.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks with papermill")
    p_run.add_argument("notebooks", nargs="*", help="numbers (01), names (01_gaussian_mixtures) or paths; default: all")
    p_run.add_argument("--smoke", action="store_true", help="small, fast parameters (smoke=True)")
    p_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="override a parameter of the notebooks' parameters cell")
    p_run.add_argument("--out", type=Path, default=None, help="folder for executed notebooks and metrics.json "
                       "(default: runs/<date-time>)")
    p_run.add_argument("--notebook-dir", type=Path, default=None, help="where the series lives (default: ./notebooks)")
    p_run.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    p_run.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after a failure")
    p_run.add_argument("--static-figures", action="store_true",
                       help="also embed a PNG of every figure (needs kaleido and Chrome/Chromium)")
    p_run.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell")
    p_run.add_argument("--threads", type=int, default=None, help="CPU threads per kernel (sets OMP_NUM_THREADS)")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list the notebooks of the series")
    args = parser.parse_args(argv)

    if args.command == "list":
        for p in series(default_notebook_dir()):
            print(p.stem)
        return 0
    nb_dir = args.notebook_dir or default_notebook_dir()
    notebooks = resolve(args.notebooks, nb_dir)
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    params = {name: parse_value(value) for name, value in args.parameter}
    metrics, failures = run(notebooks, out, params, smoke=args.smoke, kernel=args.kernel,
                            keep_going=args.keep_going, static_figures=args.static_figures,
                            timeout=args.timeout, progress=not args.no_progress)
    for stem, m in metrics.items():
        print(f"{m['_status']:>6}  {m['_seconds']:7.1f} s  {stem}")
    print(f"executed notebooks: {out.resolve()}\nmetrics: {(out / 'metrics.json').resolve()}")
    if failures:
        print("\n".join(["", "FAILED:"] + failures), file=sys.stderr)
        return 1
    print(f"open them with:  jupyter lab {out}")
    return 0
