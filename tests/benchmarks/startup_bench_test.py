"""Smoke test of benchmarks/startup_bench.py: a few starts per tool give the report's shape, not timings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "startup_bench.py"


@pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is what the filter is compared with")
def test_tiny_startup_bench(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, str(BENCH), "--runs", "2", "--json", str(out), "--tmpdir", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and " ms " in line]
    assert [row.split("|")[1].strip() for row in rows] == ["CPU (user+sys)", "wall"]
    for row in rows:
        assert re.fullmatch(r"\| .+ \| \d+\.\d ms \| \d+\.\d ms \| \d+\.\d\d \|", row), row
    report = json.loads(out.read_text())
    assert report["runs"] == 2 and set(report["samples"]) == {"theta", "lfs"}
    assert all(len(v) == 2 and min(v) > 0 for row in report["samples"].values() for v in row.values())
    assert list(scratch.iterdir()) == []  # the temp repository is gone


def test_a_filter_that_does_not_shake_hands_is_one_line_and_exit_1(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH.parent))
    import runner
    import startup_bench

    with pytest.raises(runner.BenchError, match=r"`true` did not shake hands \(exit code 0\)"):
        startup_bench.one_start(["true"], tmp_path, {"PATH": "/usr/bin:/bin"})
