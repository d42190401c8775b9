"""Smoke test of benchmarks/tensor_count_bench.py at a tiny scale: the table's shape and the checkout's bytes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "tensor_count_bench.py"
METRICS = [
    "first `git add` + `git commit`",
    "`git status` after `touch file`",
    "`git checkout HEAD~1 -- file` (rewrites v2 -> v1)",
    "`git diff HEAD~1 HEAD` (theta: diff driver; lfs: pointer diff)",
    "`git theta diff HEAD~1 HEAD -- file`",
    "filter CPU (user+sys), first add",
    "filter CPU (user+sys), checkout",
    "filter peak RSS, first add",
    "filter peak RSS, checkout",
]
TIME_CELL = r"\d+\.\d{3} s \(CPU \d+\.\d{3} s\)"


def test_a_few_hundred_tensors_and_a_small_million_case(tmp_path: Path) -> None:
    out, scratch = tmp_path / "report.json", tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, str(BENCH), "--counts", "200", "--side", "8", "--million", "--million-entries", "1000"]
    command += ["--json", str(out), "--tmpdir", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    rows = [line.strip("|").split(" | ") for line in result.stdout.splitlines() if line.startswith("| 200 | ")]
    assert [row[1] for row in rows] == METRICS
    for row in rows[:5]:
        assert re.fullmatch(TIME_CELL, row[2].strip()), row
    assert [row[3].strip() for row in rows[:5]][-1] == "n/a"  # `git theta diff` has no git-lfs counterpart
    assert "checked-out v1 identical to the original: lfs bytes, theta bytes" in result.stdout

    million = [line for line in result.stdout.splitlines() if line.startswith("| ") and "<= 60 s" in line]
    assert len(million) == 4 and all(line.endswith("| PASS |") for line in million), result.stdout
    assert sum("bytes identical" in line for line in million) == 2  # the checkout and the fresh clone

    report = json.loads(out.read_text())
    (case,) = report["counts"]
    assert case["tensors"] == 200 and case["changed_tensors"] == 20
    assert case["checkout_identical"] == {"lfs": "bytes", "theta": "bytes"}
    assert report["million"]["entries"] == 1000 and "error" not in report["million"]
    assert list(scratch.iterdir()) == []  # the temp dir is cleaned up


def test_bad_counts_are_refused() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--counts", "ten"], capture_output=True, text=True)
    assert result.returncode == 2 and "--counts" in result.stderr
