"""Record a named headline number from inside a notebook.

``vaekit run`` points ``$VAEKIT_METRICS`` at a JSON file for each notebook it executes; every
:func:`record` call merges one number into that file (atomically), and the runner gathers the
files into ``metrics.json``. Outside a run the numbers are kept in memory (:func:`recorded`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..utils import atomic_write

ENV_VAR = "VAEKIT_METRICS"
_memory: dict[str, float] = {}


def _to_number(name: str, value) -> float | int | bool:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return value
    if not isinstance(value, (int, float)):
        raise TypeError(
            f"record({name!r}, value): value must be a number or a one-element tensor, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"record({name!r}, value): value is {value}, not a finite number"
        )
    return value


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to ``path`` through a temporary file and a rename: readers never see half a file."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def record(name: str, value) -> float | int | bool:
    """Record ``value`` under ``name`` and return it, so ``x = record("nll", x)`` reads naturally."""
    if not isinstance(name, str) or not name:
        raise ValueError("record(name, value): name must be a non-empty string")
    value = _to_number(name, value)
    _memory[name] = value
    target = os.environ.get(ENV_VAR)
    if target:
        path = Path(target)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = value
        write_json_atomic(path, data)
    return value


def recorded() -> dict[str, float]:
    """The numbers recorded so far in this process."""
    return dict(_memory)
