"""ruff over the package, the tests, the site's code, the benchmarks and the notebooks, with the
configuration in pyproject.toml ([tool.ruff]: pyflakes and pycodestyle errors, 88 columns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `ruff check` and `ruff format --check` (ruff reads notebooks' code cells natively)
CHECKED = ["vaekit", "tests", "docs", "benchmarks", "notebooks"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip(
        "ruff", reason="ruff is not installed (pip install -e '.[dev]')"
    )
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_check():
    proc = _ruff("check", "--no-cache", *CHECKED)
    assert proc.returncode == 0, (
        f"ruff check:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )


def test_ruff_format():
    proc = _ruff("format", "--check", "--no-cache", *CHECKED)
    assert proc.returncode == 0, (
        f"ruff format --check:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )


def test_notebook_code_fits_the_site_column():
    """The site shows a code cell 88 columns wide: no line of a notebook's code may scroll
    sideways, strings and comments included (the formatter leaves those long)."""
    proc = _ruff("check", "--no-cache", "--select", "E501", "notebooks")
    assert proc.returncode == 0, (
        f"code lines over 88 columns:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )
