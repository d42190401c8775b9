"""`git theta log`'s text and JSON, from commits built in memory (no repository needed)."""

from __future__ import annotations

from git_theta.display import changes, log_view
from git_theta.history import Commit, FileChange
from git_theta.metadata import Metadata, ParamEntry, StoredLink

OLD = Metadata("safetensors", {}, {"a": ParamEntry("F32", (2,), "a" * 64, (StoredLink("dense", "1" * 64, 8),))})
NEW = Metadata(
    "safetensors",
    {},
    {
        "a": ParamEntry("F32", (2,), "c" * 64, (StoredLink("dense", "1" * 64, 8), StoredLink("xor", "3" * 64, 5))),
        "b": ParamEntry("F32", (1,), "b" * 64, (StoredLink("dense", "2" * 64, 4),)),
    },
)
FILES = [FileChange("m.safetensors", changes.compare(OLD, NEW))]
COMMITS = [Commit("f" * 40, "f" * 10, "2026-12-02", "A U Thor", "v2", FILES)]


def test_one_line_per_commit_and_file_and_per_group_when_verbose() -> None:
    lines = log_view.render(commits=COMMITS, param=None, verbose=False).splitlines()
    assert lines[0] == "ffffffffff  2026-12-02  A U Thor  v2"
    assert lines[1].startswith("    m.safetensors: 2 groups changed") and lines[1].endswith("stored dense 4 B, xor 5 B")
    verbose = log_view.render(commits=COMMITS, param=None, verbose=True).splitlines()
    assert len(verbose) == 4 and verbose[2].split()[1] == "a" and verbose[3].split()[1] == "b"


def test_json_names_every_group_with_its_update_and_stored_bytes() -> None:
    [commit] = log_view.to_json(COMMITS)
    groups = {g["name"]: g for g in commit["files"][0]["groups"]}
    assert (groups["a"]["update"], groups["a"]["stored_bytes"]) == ("xor", 5)
    assert groups["b"]["old"] is None and groups["b"]["status"] == changes.ADDED
