"""plan: settle parameters on metadata alone; only different changes on several sides conflict."""

from __future__ import annotations

from git_theta.merge.plan import plan
from git_theta.metadata import Metadata, ParamEntry, StoredLink


def entry(tag: str) -> ParamEntry:
    return ParamEntry("F32", (2,), tag * 64, (StoredLink("dense", tag * 64, 10),))


def meta(**params: str) -> Metadata:
    return Metadata("safetensors", {}, {name: entry(tag) for name, tag in params.items()})


def test_three_way_cases() -> None:
    base = meta(
        same="a",
        ours_only="b",
        theirs_only="c",
        both_same="d",
        both_diff="e",
        ours_deleted="f",
        theirs_deleted="1",
        del_vs_change="2",
    )
    ours = meta(
        same="a",
        ours_only="B",
        theirs_only="c",
        both_same="D",
        both_diff="E",
        theirs_deleted="1",
        added_ours="3",
        added_both="5",
    )
    theirs = meta(
        same="a",
        ours_only="b",
        theirs_only="C",
        both_same="D",
        both_diff="9",
        ours_deleted="f",
        del_vs_change="7",
        added_both="6",
    )
    result = plan([ours, theirs], base)
    assert {n: e.hash[0] for n, e in result.taken.items()} == {
        "same": "a",
        "ours_only": "B",
        "theirs_only": "C",
        "both_same": "D",
        "added_ours": "3",
    }
    assert [c.name for c in result.conflicts] == ["added_both", "both_diff", "del_vs_change"]
    deleted = result.conflicts[2]
    assert deleted.versions[0] is None and deleted.versions[1].hash[0] == "7" and deleted.base.hash[0] == "2"
    assert sorted(result.one_sided) == ["added_ours", "ours_deleted", "ours_only", "theirs_deleted", "theirs_only"]
    assert "ours: deleted" in deleted.describe(["ours", "theirs"])


def test_n_way_one_changed_value_is_taken() -> None:
    base = meta(w="a", v="a")
    versions = [meta(w="a", v="b"), meta(w="c", v="b"), meta(w="a", v="a")]
    result = plan(versions, base)
    assert result.taken["w"].hash[0] == "c" and result.taken["v"].hash[0] == "b"
    assert result.conflicts == []


def test_without_base_any_difference_conflicts() -> None:
    result = plan([meta(w="a", v="b"), meta(w="a", v="c")], None)
    assert list(result.taken) == ["w"]
    assert [c.name for c in result.conflicts] == ["v"]


def test_exhaustive_computes_every_parameter_changed_anywhere() -> None:
    """A mergekit recipe: one-sided and identical changes are computed too; equal-everywhere and absent ones are not."""
    base = meta(same="a", ours_only="b", both_same="d", both_diff="e", theirs_deleted="1")
    ours = meta(same="a", ours_only="B", both_same="D", both_diff="E", theirs_deleted="1", added_ours="3")
    theirs = meta(same="a", ours_only="b", both_same="D", both_diff="9")
    result = plan([ours, theirs], base, exhaustive=True)
    assert [c.name for c in result.conflicts] == ["both_diff", "both_same", "ours_only"]
    assert sorted(result.taken) == ["added_ours", "same"]
    assert sorted(result.one_sided) == ["added_ours", "theirs_deleted"]
    # without a base (linear, slerp) only differences between the versions count
    result = plan([meta(w="a", v="b"), meta(w="a", v="c")], None, exhaustive=True)
    assert [c.name for c in result.conflicts] == ["v"] and sorted(result.taken) == ["w"]
