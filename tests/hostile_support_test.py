"""The shared hostile-input harness measures the command it runs, not the test process that starts it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hostile_support import run_bounded


def test_peak_rss_is_the_commands_own_not_the_test_process(tmp_path: Path) -> None:
    held = np.ones(300 << 18, dtype=np.float32)  # this process holds 300 MB while it starts the commands
    held[::1024] = 2.0
    assert run_bounded(["true"], cwd=tmp_path).max_rss_mb < 50
    allocating = run_bounded(
        [sys.executable, "-c", "b = bytearray(150 << 20); b[::4096] = b'x' * len(b[::4096])"], cwd=tmp_path
    )
    assert 150 <= allocating.max_rss_mb < 300
    assert held[1] == 1.0  # still held


def test_exit_status_output_and_input_pass_through(tmp_path: Path) -> None:
    result = run_bounded(["sh", "-c", "cat; echo oops >&2; exit 3"], cwd=tmp_path, input=b"fed")
    assert (result.returncode, result.stdout, result.stderr) == (3, "fed", "oops\n")
    assert run_bounded(["sh", "-c", "kill -9 $$"], cwd=tmp_path).returncode == -9
