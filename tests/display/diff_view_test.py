"""`git theta diff`'s table, JSON and orders, from metadata built in memory (no stats: nothing is loaded)."""

from __future__ import annotations

from git_theta.display import changes, diff_view
from git_theta.metadata import Metadata, ParamEntry, StoredLink


def entry(dtype: str, shape: tuple[int, ...], digest: str, stored: int) -> ParamEntry:
    return ParamEntry(dtype, shape, digest * 64, (StoredLink("dense", digest * 64, stored),))


OLD = Metadata("safetensors", {}, {"a": entry("F32", (4,), "a", 16), "gone": entry("F32", (1,), "g", 4)})
NEW = Metadata("safetensors", {}, {"a": entry("F16", (4,), "c", 8), "big": entry("F32", (64,), "b", 200)})
DIFF = diff_view.FileDiff("m.safetensors", 2, 2, changes.group_count(OLD, NEW), changes.compare(OLD, NEW), {})


def test_sort_by_name_or_stored_size() -> None:
    assert [c.name for c in diff_view.sort_changes(DIFF, "name")] == ["a", "big", "gone"]
    assert [c.name for c in diff_view.sort_changes(DIFF, "stored")] == ["big", "a", "gone"]


def test_render_without_stats_has_no_number_columns_and_a_summary() -> None:
    lines = diff_view.render(old="HEAD", new="index", diffs=[DIFF], key="name", color=False).splitlines()
    assert lines[0] == "m.safetensors (HEAD -> index)"
    assert lines[1].split() == diff_view.HEADER[:6]
    assert lines[2].split()[:4] == ["modified", "(dtype)", "a", "F32->F16"]
    assert lines[-1].startswith("  3 of 3 groups changed")


def test_json_counts_every_change() -> None:
    document = diff_view.to_json(old="HEAD", new="index", diffs=[DIFF], key="name")
    assert document["summary"]["groups_changed"] == 3 and document["summary"]["stored_bytes"] == 208
    assert [g["status"] for g in document["files"][0]["groups"]] == [changes.MODIFIED, changes.ADDED, changes.REMOVED]
