"""The speed benchmark runs end to end and reports what the README says it reports: every
contender's ratio on its own line at the end, and the two NLL implementations agreeing on the
same samples. No time is asserted: the numbers themselves live in the README."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_bench_speed_quick_reports_every_ratio():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "bench_speed.py", "--quick", "--reps", "1", "--bf16"],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    difference = re.search(
        r"largest difference between the two estimates (\S+) nats", text
    )
    assert difference and float(difference.group(1)) < 1e-3, text
    tail = text.split("ratios of the best wall-clock times:")[1].strip().splitlines()
    ratios = {}
    for line in tail:
        m = re.fullmatch(r"(\S+) ratio (\d+\.\d\d)", line)
        assert m, f"not a ratio line: {line!r}"
        ratios[m.group(1)] = float(m.group(2))
    expected = {
        "fit/canonical",
        "fit[bf16]/canonical",
        "canonical/floor",
        "fit/floor",
        "fit[bf16]/floor",
        "fit[bf16]/floor[bf16]",
        "floor+adam+binarize/canonical",
        "log_likelihood/straightforward",
        "log_likelihood[bf16]/straightforward",
        "straightforward/floor",
        "log_likelihood/floor",
        "log_likelihood[bf16]/floor",
        "log_likelihood[bf16]/floor[bf16]",
    }
    assert set(ratios) == expected
    assert all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios
