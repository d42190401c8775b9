"""git theta log: which commits changed a checkpoint or one group, with update types and stored sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from safetensors.numpy import save_file

MODEL = "model.safetensors"


def history(repo: Path) -> None:
    """v1 (a, b); an unrelated commit; v2 changes a; v3 adds c; a commit to another checkpoint."""
    tensors = {"a": np.ones((4, 4), dtype=np.float32), "b": np.zeros(4, dtype=np.float32)}
    save_file(tensors, repo / MODEL)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "readme")
    tensors["a"] = tensors["a"] * 2
    save_file(tensors, repo / MODEL)
    git(repo, "commit", "-q", "-am", "v2: scale a")
    tensors["c"] = np.arange(3, dtype=np.int32)
    save_file(tensors, repo / MODEL)
    git(repo, "commit", "-q", "-am", "v3: add c")
    save_file({"x": np.ones(2, dtype=np.float32)}, repo / "other.safetensors")
    git(repo, "add", "other.safetensors")
    git(repo, "commit", "-q", "-m", "other")


def stored(repo: Path, rev: str, name: str) -> int:
    doc = json.loads(git(repo, "show", f"{rev}:{MODEL}").stdout)
    return sum(link["size"] for link in doc["params"][name]["stored"])


def test_log_of_a_checkpoint(repo: Path) -> None:
    history(repo)
    lines = theta(repo, "log", MODEL).stdout.splitlines()
    subjects = [line.split("  ")[-1] for line in lines if not line.startswith(" ")]
    assert subjects == ["v3: add c", "v2: scale a", "v1"]
    assert lines[0].split("  ")[1:3] == ["2026-01-01", "Theta Tester"]
    assert lines[1] == f"    {MODEL}: 1 group changed (1 added); stored dense {stored(repo, 'HEAD~1', 'c')} B"
    assert lines[3].startswith(f"    {MODEL}: 1 group changed (1 modified); stored ")
    assert lines[5].startswith(f"    {MODEL}: 2 groups changed (2 added); stored dense ")
    every = theta(repo, "log").stdout
    assert "other" in every and "readme" not in every


def test_log_of_one_group(repo: Path) -> None:
    history(repo)
    out = theta(repo, "log", MODEL, "--param", "a").stdout.splitlines()
    assert [line.split("  ")[-1] for line in out if not line.startswith(" ")] == ["v2: scale a", "v1"]
    assert out[1].split() == [
        MODEL,
        "modified",
        "a",
        "F32",
        "[4,4]",
        out[1].split()[5],
        str(stored(repo, "HEAD~2", "a")),
        "B",
    ]
    assert out[3].split()[:6] == [MODEL, "added", "a", "F32", "[4,4]", "dense"]
    only_c = theta(repo, "log", "--param", "c").stdout.splitlines()
    assert len(only_c) == 2 and only_c[0].endswith("v3: add c")
    assert theta(repo, "log", "--param", "nothing").stdout == ""


def test_verbose_json_and_limit(repo: Path) -> None:
    history(repo)
    verbose = theta(repo, "log", "-v", "-n", "1", MODEL).stdout.splitlines()
    assert len(verbose) == 3 and verbose[2].split()[:5] == ["added", "c", "I32", "[3]", "dense"]
    doc = json.loads(theta(repo, "log", "--json", MODEL).stdout)
    assert [c["subject"] for c in doc] == ["v3: add c", "v2: scale a", "v1"]
    assert doc[0]["commit"] == git(repo, "rev-parse", "HEAD~1").stdout.strip()
    group = doc[1]["files"][0]["groups"][0]
    assert (group["name"], group["status"], group["stored_bytes"]) == ("a", "modified", stored(repo, "HEAD~2", "a"))
    assert group["old"]["hash"] != group["new"]["hash"]
    assert json.loads(theta(repo, "log", "--json", "--rev", "HEAD~3", MODEL).stdout)[0]["subject"] == "v1"


def test_no_commits_is_a_clear_error(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    failed = theta(tmp_path, "log", check=False)
    assert failed.returncode == 1 and "not a revision" in failed.stderr


def test_pages_and_limits_give_the_same_history(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from git_theta import history as log_history
    from git_theta.repo import Repo

    history(repo)
    found = Repo.discover(repo)
    whole = [c.subject for c in log_history.history(repo=found, rev="HEAD", paths=[])]
    assert whole == ["other", "v3: add c", "v2: scale a", "v1"]
    monkeypatch.setattr(log_history, "FIRST_PAGE", 1)  # every page boundary, then pages of 2
    monkeypatch.setattr(log_history, "LAST_PAGE", 2)
    assert [c.subject for c in log_history.history(repo=found, rev="HEAD", paths=[])] == whole
    for limit in range(6):
        assert [c.subject for c in log_history.history(repo=found, rev="HEAD", paths=[], limit=limit)] == whole[:limit]
    assert [c.subject for c in log_history.history(repo=found, rev="HEAD", paths=[MODEL], param="a", limit=1)] == [
        "v2: scale a"
    ]


def test_a_negative_limit_is_refused(repo: Path) -> None:
    history(repo)
    failed = theta(repo, "log", "-n", "-1", check=False)
    assert failed.returncode == 1 and "-n/--max-count must be 0 or more, not -1" in failed.stderr
    assert theta(repo, "log", "-n", "0").stdout == ""


def test_records_split_across_many_chunks_parse_the_same(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from git_theta import git as git_module
    from git_theta import history as log_history
    from git_theta.repo import Repo

    history(repo)
    found = Repo.discover(repo)
    whole = log_history.history(repo=found, rev="HEAD", paths=[])
    real_stream = git_module.stream
    monkeypatch.setattr(
        git_module, "stream", lambda *args, **kwargs: real_stream(*args, **{**kwargs, "chunk_bytes": 3})
    )
    assert log_history.history(repo=found, rev="HEAD", paths=[]) == whole


def test_a_commit_that_changed_only_file_level_data_is_listed(repo: Path) -> None:
    tensors = {"w": np.ones((4, 4), np.float32)}
    save_file(tensors, repo / MODEL)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    save_file(tensors, repo / MODEL, metadata={"format": "pt"})  # the same tensors, a new __metadata__
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "metadata only")
    out = theta(repo, "log", MODEL).stdout
    assert "metadata only" in out and "model.safetensors: 0 groups changed" in out and "file data changed" in out
    doc = json.loads(theta(repo, "log", "--json", MODEL).stdout)
    assert doc[0]["subject"] == "metadata only" and doc[0]["files"][0]["file_changed"] is True
    # a group's history lists only its own changes
    assert "metadata only" not in theta(repo, "log", MODEL, "--param", "w").stdout
