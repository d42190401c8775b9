"""The message for conflicts no choice covers: what conflicts (at most LISTED lines), and every way to resolve."""

from __future__ import annotations

from git_theta.merge.plan import Conflict
from git_theta.merge.policy import CONFIG_STRATEGY, POLICY_FILE
from git_theta.merge.unresolved import LISTED, unresolved_message
from git_theta.metadata import ParamEntry, StoredLink

ENTRY = ParamEntry("F32", (2,), "a" * 64, (StoredLink("dense", "a" * 64, 1),))


def test_lists_at_most_listed_conflicts_then_how_to_resolve() -> None:
    conflicts = [Conflict(f"p{i}", (ENTRY, None), ENTRY) for i in range(LISTED + 3)]
    message = unresolved_message("m.safetensors", conflicts, ["ours", "theirs"], "rerun with --strategy", "why")
    lines = message.splitlines()
    assert lines[0] == f"m.safetensors: {LISTED + 3} parameter(s) changed differently on several sides; why:"
    assert lines[1] == "  p0  (ours: F32[2], theirs: deleted; base: F32[2])"
    assert lines[LISTED + 1] == "  ... and 3 more"
    text = "\n".join(lines)
    assert "rerun with --strategy" in text and POLICY_FILE in text and CONFIG_STRATEGY in text and "ties" in text
