"""Smoke test of benchmarks/tf_bench.py at the smallest scale: the report's rows and exact checkouts, not timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench_test import METRICS

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "tf_bench.py"


def test_tensorflow_checkpoint_smallest_scale(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    command = [sys.executable, str(BENCH), "--scale", "0.001", "--json", str(out), "--tmpdir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| (t) ")]
    assert [row.split(" | ")[1] for row in rows] == METRICS
    (case,) = json.loads(out.read_text())["cases"]
    assert case["checkout_identical"] == {"lfs": "bytes", "theta": "bytes"}
    assert case["tensors"] == 100 and case["changed_tensors"] == 10
    growth = next(row for row in case["rows"] if row["key"] == "store_growth_bytes")
    assert 0 < growth["theta"] < growth["lfs"]  # only the changed variables are stored again
