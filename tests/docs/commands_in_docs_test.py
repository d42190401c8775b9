"""Every `git theta VERB --flag` written in README.md and docs/*.md names a verb and flags that exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from git_theta.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `git theta VERB ...` up to the end of the line or of an inline code span / table cell.
COMMAND = re.compile(r"git theta ([a-z][a-z-]*)([^\n`|]*)")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no sub-commands")


def _mentions() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for match in COMMAND.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc.name, match.group(1), match.group(2)))
    return found


def test_docs_mention_commands() -> None:
    assert len(_mentions()) > 20


@pytest.mark.parametrize("doc,verb,rest", _mentions())
def test_every_documented_verb_and_flag_exists(doc: str, verb: str, rest: str) -> None:
    verbs = _subparsers()
    if verb not in verbs:
        pytest.fail(f"{doc}: `git theta {verb}` is not a git-theta command (known: {', '.join(sorted(verbs))})")
    options = {option for action in verbs[verb]._actions for option in action.option_strings}
    for token in rest.split():
        flag = token.split("=", 1)[0].rstrip(",.;:)")
        if flag.startswith("-") and flag not in ("-", "--") and re.match(r"^--?[a-zA-Z]", flag):
            assert flag in options, (
                f"{doc}: `git theta {verb}` has no option {flag} (it has {', '.join(sorted(options))})"
            )
