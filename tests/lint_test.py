"""The repository's code is formatted and lint-clean as ruff.toml says (ruff pinned in setup.py's test extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_code_is_formatted() -> None:
    result = ruff("format", "--check", "--quiet", ".")
    assert result.returncode == 0, f"run `ruff format .`:\n{result.stdout}{result.stderr}"


def test_code_passes_the_linter() -> None:
    result = ruff("check", "--quiet", ".")
    assert result.returncode == 0, f"run `ruff check --fix .` and fix the rest:\n{result.stdout}{result.stderr}"
