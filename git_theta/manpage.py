"""The man page `git theta --help` shows (git turns `--help` into `man git-theta`), made from the parser.

Each command's section is its argparse help, verbatim, so the page cannot drift from the commands:
tests/manpage_test.py checks that docs/man/git-theta.1 (installed by setup.py into share/man/man1, where `man`
finds it from a virtual environment's bin/ on PATH) equals what this module renders. Regenerate it with
`python3 -m git_theta.manpage > docs/man/git-theta.1`.
"""

from __future__ import annotations

import argparse
import os

from git_theta import __version__
from git_theta.main import COMMANDS, build_parser

# argparse wraps help to the terminal width ($COLUMNS): a fixed width makes the page the same everywhere.
WIDTH = "100"


def _roff(text: str) -> str:
    """Text shown as is: backslashes escaped, no line read as a roff request."""
    lines = text.replace("\\", "\\e").splitlines()
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)


def _verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        sections = [
            f'.TH GIT-THETA 1 "" "git-theta {__version__}" "Git Manual"',
            ".SH NAME",
            "git-theta \\- version-control machine-learning model checkpoints in git",
            ".SH SYNOPSIS",
            ".B git theta",
            "COMMAND [OPTIONS]",
            ".SH DESCRIPTION",
            ".nf",
            _roff(parser.format_help()),
            ".fi",
            ".SH COMMANDS",
        ]
        verbs = _verb_parsers(parser)
        for verb in COMMANDS:
            sections += [f".SS {verb}", ".nf", _roff(verbs[verb].format_help()), ".fi"]
        sections += [
            ".SH SEE ALSO",
            "git(1), gitattributes(5); the guides in the docs/ directory of git-theta's repository",
        ]
        return "\n".join(sections) + "\n"
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    print(render(), end="")
