"""The package type-checks under mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_mypy_strict_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "git_theta"],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
