"""resolve: command line / git config override, then policy, then the asker; never a silent choice."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from git_theta.merge.choose import resolve
from git_theta.merge.plan import Conflict
from git_theta.merge.policy import Choice, make_choice, parse_policy
from git_theta.merge.unresolved import UnresolvedConflicts
from git_theta.metadata import ParamEntry, StoredLink

ENTRY = ParamEntry("F32", (2,), "a" * 64, (StoredLink("dense", "a" * 64, 1),))
LABELS = ["ours", "theirs"]
POLICY = parse_policy('[[rule]]\nparams = "*.bias"\nstrategy = "ours"\n')


def conflicts(*names: str) -> list[Conflict]:
    return [Conflict(name, (ENTRY, ENTRY), ENTRY) for name in names]


def test_override_beats_policy() -> None:
    override = make_choice("average", {}, "--strategy average")
    chosen = resolve("m", conflicts("x.bias", "x.weight"), LABELS, override, POLICY, None, "hint")
    assert {name: c.strategy for name, c in chosen.items()} == {"x.bias": "average", "x.weight": "average"}


def test_policy_then_asker_for_the_rest() -> None:
    asked: list[str] = []

    def ask(path: str, left: Sequence[Conflict], labels: Sequence[str]) -> dict[str, Choice]:
        asked.extend(c.name for c in left)
        return {c.name: make_choice("theirs", {}, "prompt") for c in left}

    chosen = resolve("m", conflicts("x.bias", "x.weight"), LABELS, None, POLICY, ask, "hint")
    assert asked == ["x.weight"]
    assert (chosen["x.bias"].strategy, chosen["x.weight"].strategy) == ("ours", "theirs")


def test_nothing_to_ask_stops_with_the_list() -> None:
    names = [f"layer.{i}.weight" for i in range(25)]
    with pytest.raises(UnresolvedConflicts) as caught:
        resolve("m.safetensors", conflicts("x.bias", *names), LABELS, None, POLICY, None, "run the hint")
    message = str(caught.value)
    assert message.startswith(
        "m.safetensors: 25 parameter(s) changed differently on several sides; no merge strategy covers them"
    )
    assert "layer.0.weight  (ours: F32[2], theirs: F32[2]; base: F32[2])" in message
    assert "x.bias" not in message and "... and 5 more" in message
    assert "  - run the hint" in message and "git config theta.merge.strategy average" in message
