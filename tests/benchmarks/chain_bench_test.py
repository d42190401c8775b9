"""Smoke test of benchmarks/chain_bench.py at a tiny scale: the report's shape and exact checkouts, not timings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "chain_bench.py"


def test_tiny_chain_bench(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, str(BENCH), "--size", "0.25", "--commits", "3", "--repeat", "1", "--json", str(out)]
    result = subprocess.run([*command, "--tmpdir", str(scratch)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    rows = [line for line in result.stdout.splitlines() if line.startswith("| newest") or line.startswith("| middle")]
    rows += [line for line in result.stdout.splitlines() if line.startswith("| oldest")]
    assert [row.split(" ")[1] for row in rows] == ["newest", "middle", "oldest"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"\d+\.\d{3}", cells[3]), row  # theta/lfs filter CPU ratio
        assert re.fullmatch(r"<= 1\.[25]x (PASS|FAIL)", cells[4]), row

    report = json.loads(out.read_text())
    assert report["commits"] == 3 and report["tensors"] == 130
    assert [v["commit"] for v in report["versions"].values()] == [2, 1, 0]
    assert report["versions"]["oldest"]["max_depth"] == 1 and report["versions"]["newest"]["max_depth"] >= 2
    assert list(scratch.iterdir()) == []  # the temp repos are gone
