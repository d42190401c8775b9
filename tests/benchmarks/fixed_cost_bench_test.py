"""Smoke test of benchmarks/fixed_cost_bench.py at a tiny count: the report's shape, not timings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "fixed_cost_bench.py"


def test_tiny_fixed_cost_bench(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, str(BENCH), "--count", "300", "--runs", "1", "--json", str(out)]
    result = subprocess.run([*command, "--tmpdir", str(scratch)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and " us " in line]
    assert [row.split("|")[1].strip() for row in rows] == ["smudge", "re-clean", "first clean"]
    for row in rows:
        assert re.search(r"\| \d+\.\d us \| <= 20 us \| (PASS|FAIL) \|$", row), row
    report = json.loads(out.read_text())
    assert report["count"] == 300 and set(report["rows"]) == {"smudge", "re-clean", "first clean"}
    assert all(row["us_per_tensor"] > 0 for row in report["rows"].values())
    assert list(scratch.iterdir()) == []  # the temp repo is gone
