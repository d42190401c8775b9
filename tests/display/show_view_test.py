"""`git theta show`'s table and JSON, from metadata built in memory (no repository needed)."""

from __future__ import annotations

from git_theta.display import show_view
from git_theta.metadata import Metadata, ParamEntry, StoredLink

META = Metadata(
    "safetensors",
    {},
    {
        "b": ParamEntry("F32", (2, 2), "b" * 64, (StoredLink("dense", "1" * 64, 10),)),
        "a": ParamEntry("F32", (8,), "a" * 64, (StoredLink("dense", "2" * 64, 4),)),
    },
)


def test_groups_sorted_by_name_or_size_with_totals() -> None:
    assert show_view.ordered(META, "name") == ["a", "b"]
    assert show_view.ordered(META, "size") == ["a", "b"]  # 32 bytes before 16
    assert show_view.ordered(META, "stored") == ["b", "a"]
    assert show_view.totals(META) == {"groups": 2, "parameters": 12, "bytes": 48, "stored_bytes": 14}
    document = show_view.to_json(side="HEAD", path="m.safetensors", meta=META, key="stored")
    assert [g["name"] for g in document["groups"]] == ["b", "a"] and document["rev"] == "HEAD"


def test_render_has_a_header_one_row_per_group_and_totals() -> None:
    lines = show_view.render(side="HEAD", path="m.safetensors", meta=META, key="name").splitlines()
    assert lines[0] == "m.safetensors at HEAD (safetensors)"
    assert [line.split()[0] for line in lines[2:4]] == ["a", "b"]
    assert lines[-1].startswith("2 groups, 12 parameters, 48 B of tensor data, 14 B stored")
