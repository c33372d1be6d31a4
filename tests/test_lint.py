"""ruff over the package, the tests and the site's code, with the configuration in
pyproject.toml ([tool.ruff]: pyflakes and pycodestyle errors, 88 columns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["vaekit", "tests", "docs", "benchmarks"]  # `ruff check`
# `ruff format --check`: the code formatted so far (the rest follows in one `ruff format` run)
FORMATTED = [
    "docs",
    "tests/test_site.py",
    "tests/test_site_tools.py",
    "tests/test_lint.py",
]


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
    proc = _ruff("format", "--check", "--no-cache", *FORMATTED)
    assert proc.returncode == 0, (
        f"ruff format --check:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )
