"""Smoke test of benchmarks/gguf_bench.py at its smallest scale: the report's shape and what holds whatever the
timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench_test import METRICS

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gguf_bench.py"


def test_gguf_smallest_scale(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, str(BENCH), "--scale", "0.001", "--json", str(out), "--tmpdir", str(scratch)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| (g) mixed GGUF")]
    assert [row.split(" | ")[1] for row in rows] == METRICS
    assert "checked-out v1 identical to the original: lfs bytes, theta bytes" in result.stdout

    (case,) = json.loads(out.read_text())["cases"]
    assert case["tensors"] == 108 and case["changed_tensors"] == 11
    by_key = {row["key"]: row for row in case["rows"]}
    # git-theta stores the 11 changed tensors again, git-lfs the whole file.
    assert 0 < by_key["store_growth_bytes"]["theta"] < by_key["store_growth_bytes"]["lfs"] / 4
    assert by_key["store_growth_bytes"]["lfs"] == by_key["store_v1_bytes"]["lfs"]
    assert list(scratch.iterdir()) == []
