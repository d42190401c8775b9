"""The README's demo runs end to end (bin/demo = bin/setup + this module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "git_theta.demo", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "sha256 of checked-out file == sha256 of the original" in out
    assert "the average of both branches" in out
    assert "2 of 104 groups changed" in out
    assert "fsck: ok" in out
