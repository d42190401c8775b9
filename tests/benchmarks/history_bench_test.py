"""Smoke test of benchmarks/history_bench.py at a tiny scale: the report's shape, not its timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "history_bench.py"


def test_history_bench_tiny(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCH), "--tensors", "40", "--minilm-scale", "0.005", "--repeat", "1"]
    result = subprocess.run([*command, "--json", "-", "--tmpdir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["log"]["versions"] == 5 and report["diff"]["tensors"] == 40 and report["diff"]["changed"] == 4
    for key in ("theta", "lfs"):
        assert report["log"][key]["wall"] > 0 and report["log"][key]["cpu"] >= 0
    assert {"theta", "lfs", "theta diff", "theta diff --no-stats"} <= report["diff"].keys()
    assert list(tmp_path.iterdir()) == []  # the temp directory is removed
