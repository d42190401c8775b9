"""git-theta's lines in .gitattributes: tracked patterns, exclusions, the clone hint, git-lfs lines."""

from __future__ import annotations

from pathlib import Path

from git_theta import attributes
from git_theta.attributes import ATTRIBUTES, CLONE_HINT, EXCLUDED


def test_track_appends_one_line_per_new_pattern_under_one_clone_hint(tmp_path: Path) -> None:
    path = tmp_path / ".gitattributes"
    path.write_text("*.txt text eol=lf\n")
    assert attributes.track(path, ["*.safetensors", "*.pt", "*.safetensors"]) == ["*.safetensors", "*.pt"]
    assert attributes.track(path, ["*.pt", "*.bin"]) == ["*.bin"]
    lines = path.read_text().splitlines()
    assert lines == [
        CLONE_HINT,
        "*.txt text eol=lf",
        f"*.safetensors {ATTRIBUTES}",
        f"*.pt {ATTRIBUTES}",
        f"*.bin {ATTRIBUTES}",
    ]
    assert attributes.tracked_patterns(path) == ["*.safetensors", "*.pt", "*.bin"]


def test_untrack_keeps_other_lines_and_drops_the_hint_with_the_last_pattern(tmp_path: Path) -> None:
    path = tmp_path / ".gitattributes"
    attributes.track(path, ["*.safetensors", "*.pt"])
    assert attributes.untrack(path, ["*.pt", "*.npz"]) == ["*.pt"]
    assert CLONE_HINT in path.read_text()
    assert attributes.untrack(path, ["*.safetensors"]) == ["*.safetensors"]
    assert path.read_text() == ""


def test_exclude_appends_after_the_tracked_lines_once(tmp_path: Path) -> None:
    path = tmp_path / ".gitattributes"
    attributes.track(path, ["weights/**"])
    assert attributes.exclude(path, ["weights/*.json", "weights/*.json"]) == ["weights/*.json"]
    assert attributes.exclude(path, ["weights/*.json"]) == []
    assert path.read_text().splitlines()[-1] == f"weights/*.json {EXCLUDED}"
    assert attributes.tracked_patterns(path) == ["weights/**"]  # an exclusion is not a tracked pattern


def test_lfs_patterns_are_the_lines_routing_files_to_git_lfs(tmp_path: Path) -> None:
    path = tmp_path / ".gitattributes"
    path.write_text("# *.bin filter=lfs\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.md text\n")
    assert attributes.lfs_patterns(path) == ["*.safetensors"]
