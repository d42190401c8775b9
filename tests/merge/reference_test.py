"""docs/merging.md cannot drift from the strategies' declared arguments or from the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from git_theta.main import build_parser
from git_theta.merge.policy import parse_policy
from git_theta.merge.reference import replace_section, strategy_reference
from git_theta.merge.strategies.ties import TiesStrategy

DOC = Path(__file__).resolve().parents[2] / "docs" / "merging.md"


def test_reference_section_is_current() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert replace_section(document) == document, (
        "docs/merging.md is stale: run `python3 -m git_theta.merge.reference docs/merging.md`"
    )


def test_reference_lists_every_argument_with_its_default() -> None:
    reference = strategy_reference()
    for argument in TiesStrategy.arguments:
        assert f"| `{argument.name}` | float | `{argument.default}` |" in reference
    assert "### `median`" not in reference  # plugins are documented by their own packages


def test_policy_examples_parse() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        policy = parse_policy(block, "docs/merging.md")
        assert policy.default is not None or policy.rules


def test_documented_merge_flags_exist() -> None:
    subparsers = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    merge_flags = {flag for action in subparsers["merge"]._actions for flag in action.option_strings}
    text = DOC.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"git theta merge[^`\n]*", text))
    for line in mentioned:
        for flag in re.findall(r"--[a-z-]+", line):
            assert flag in merge_flags, f"docs/merging.md mentions {flag} in {line!r}"
    assert "merge-driver" in subparsers
