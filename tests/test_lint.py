"""ruff over the package, the tests and the site's code, with the configuration in
pyproject.toml ([tool.ruff]: pyflakes and pycodestyle errors, 88 columns)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["vaekit", "tests", "docs", "benchmarks"]


def test_ruff_check():
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check {' '.join(CHECKED)}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
