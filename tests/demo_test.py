"""The README's demo runs end to end (bin/demo = bin/setup + this module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end_and_removes_its_temp_dir(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "git_theta.demo"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # the ~170 MB repository is gone; the printed commands can be pasted into a shell
    assert list(tmp_path.iterdir()) == []
    assert "removed the demo's temp dir" in out
    assert "$ git theta track '*.safetensors'" in out
    assert "sha256 of checked-out file == sha256 of the original" in out
    assert "the average of both branches" in out
    assert "2 of 104 groups changed" in out
    assert "fsck: ok" in out
