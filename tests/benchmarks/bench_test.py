"""Smoke test of benchmarks/bench.py: the smallest scale, case (c) only; checks the report's shape, not timings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
METRICS = [
    "first `git add` + `git commit`",
    "`git add` + `git commit` of v2 (10% of tensors changed)",
    "`git checkout HEAD~1 -- file` (rewrites v2 -> v1)",
    "`git status` after `touch file`",
    "filter CPU time (user+sys), first add",
    "filter CPU time (user+sys), checkout",
    "store after v1 (.git/lfs/objects)",
    "store growth for v2 (.git/lfs/objects)",
    ".git/objects growth for v1 + v2",
    "filter peak RSS, first add",
    "filter peak RSS, checkout",
    "git peak RSS, first add",
    "git peak RSS, checkout",
]


def test_minilm_smallest_scale(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [
        sys.executable,
        str(BENCH),
        "--cases",
        "c",
        "--scale",
        "0.001",
        "--json",
        str(out),
        "--tmpdir",
        str(scratch),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    rows = [line for line in result.stdout.splitlines() if line.startswith("| (c) ")]
    assert [row.split(" | ")[1] for row in rows] == METRICS
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"\d+\.\d{3}", cells[4]), row  # theta/lfs ratio
        assert float(cells[4]) > 0, row
        assert cells[6] in ("PASS", "FAIL", ""), row
    assert "checked-out v1 identical to the original: lfs bytes, theta bytes" in result.stdout

    report = json.loads(out.read_text())
    (case,) = report["cases"]
    assert case["case"] == "c" and case["changed_tensors"] >= 1 and case["tensors"] >= 10
    assert [row["metric"] for row in case["rows"]] == METRICS
    by_key = {row["key"]: row for row in case["rows"]}
    # What must hold whatever the timings: both stores hold v1, theta's dedup keeps v2's growth below git-lfs's.
    assert 0 < by_key["store_v1_bytes"]["theta"] and 0 < by_key["store_v1_bytes"]["lfs"]
    assert by_key["store_growth_bytes"]["theta"] < by_key["store_growth_bytes"]["lfs"]
    assert by_key["store_growth_bytes"]["lfs"] == by_key["store_v1_bytes"]["lfs"]  # git-lfs stores a whole copy
    assert list(scratch.iterdir()) == []  # the temp dir is cleaned up


def test_unknown_case_is_refused() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--cases", "z"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown case" in result.stderr
