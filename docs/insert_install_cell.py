"""Give each notebook of the series the cell that installs vaekit in Colab or Binder.

    python docs/insert_install_cell.py            # every notebooks/[0-9][0-9]_*.ipynb
    python docs/insert_install_cell.py PATH ...   # these notebooks
    python docs/insert_install_cell.py --check    # exit 1 if a notebook lacks the current cell

The cell's source is ``docs/_install_cell.py``. It goes right before the notebook's first code
cell (after the title and the lesson), tagged ``install-vaekit``; run again, the script finds
the tagged cell and only updates its source, so it is idempotent. Only a changed notebook is
rewritten, and nothing else in it changes (outputs, metadata, other cells).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).resolve().parent / "_install_cell.py"
TAG = "install-vaekit"


def cell_source() -> str:
    return SOURCE.read_text(encoding="utf-8").rstrip("\n")


def install_cells(nb) -> list[int]:
    return [
        i
        for i, c in enumerate(nb.cells)
        if TAG in c.get("metadata", {}).get("tags", [])
    ]


def with_install_cell(nb) -> bool:
    """Insert or update the install cell in ``nb``; True when ``nb`` changed."""
    source = cell_source()
    found = install_cells(nb)
    if found:
        cell = nb.cells[found[0]]
        changed = (
            cell.source != source or cell.outputs or cell.execution_count is not None
        )
        cell.source, cell.outputs, cell.execution_count = source, [], None
        for extra in reversed(found[1:]):  # one install cell only
            del nb.cells[extra]
            changed = True
        return bool(changed)
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [TAG]
    first_code = next(
        (i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells)
    )
    nb.cells.insert(first_code, cell)
    return True


def has_current_install_cell(nb) -> bool:
    found = install_cells(nb)
    if len(found) != 1:
        return False
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    return found[0] == first_code and nb.cells[found[0]].source == cell_source()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true", help="report, change nothing")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            if not has_current_install_cell(nb):
                missing.append(path.name)
            continue
        if with_install_cell(nb):
            nbformat.write(nb, path)
            print(f"{path}: install cell written")
        else:
            print(f"{path}: already has the install cell")
    if missing:
        print(
            "without the current install cell: " + ", ".join(missing), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
