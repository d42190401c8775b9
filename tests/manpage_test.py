"""`git theta --help`: git runs `man git-theta`; the page is rendered from the parser and installed by bin/setup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from git_theta import manpage
from git_theta.main import COMMANDS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "man" / "git-theta.1"


def test_the_committed_page_is_what_the_parser_renders() -> None:
    # Fails when a command or option changes without: python3 -m git_theta.manpage > docs/man/git-theta.1
    assert PAGE.read_text() == manpage.render()


def test_every_command_has_a_section() -> None:
    text = manpage.render()
    assert all(f"\n.SS {verb}\n" in text for verb in COMMANDS)


def test_git_theta_help_shows_the_page(tmp_path: Path) -> None:
    # As a user with the environment active: its bin/ on PATH, so man looks in its share/man.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MANPAGER": "cat",
        "GIT_PAGER": "cat",
        "MANWIDTH": "100",
    }
    env.pop("MANPATH", None)
    result = subprocess.run(["git", "theta", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "git-theta - version-control machine-learning model checkpoints in git" in result.stdout
    assert "merge-driver" in result.stdout and "--update-type" in result.stdout
