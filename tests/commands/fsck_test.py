"""git theta fsck: ok exactly when every reachable tracked version can be checked out; each problem one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from conftest import delete_object, git
from hostile_support import commit_blob, put_object, run_bounded, store_path
from safetensors.numpy import save_file

from git_theta import objects
from git_theta.tensor import Tensor

MODEL = "model.safetensors"


def commit_model(repo: Path, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    save_file(
        {"a": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)}, str(repo / MODEL)
    )
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", f"model {seed}")
    return json.loads(git(repo, "cat-file", "blob", f"HEAD:{MODEL}").stdout)


def dump(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode()  # "version" is the first key: it stays metadata


def problems(repo: Path, *args: str) -> list[str]:
    result = run_bounded(["git-theta", "fsck", *args], cwd=repo)
    lines = [line for line in result.stderr.splitlines() if line.startswith("git-theta: error: ")]
    assert result.returncode == (1 if lines else 0), result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert (f"fsck: {len(lines)} problem(s)" if lines else "fsck: ok") in result.stdout.splitlines(), result.describe()
    return [line.removeprefix("git-theta: error: ") for line in lines]


def test_healthy_history_is_ok(repo: Path) -> None:
    commit_model(repo, 0)
    commit_model(repo, 1)
    save_file({"x": np.ones(3, dtype=np.float32)}, str(repo / "staged.safetensors"))
    git(repo, "add", "staged.safetensors")
    assert problems(repo) == []
    assert problems(repo, "--quick") == []


def test_objects_git_lfs_prune_deleted_count_as_present_and_are_linked_back(repo: Path) -> None:
    """git lfs prune before git-lfs 3.5 deletes every object no pointer names; made here, they have a second name."""
    commit_model(repo, 0)
    commit_model(repo, 1)
    stored = sorted(path for path in (repo / ".git" / "lfs" / "objects").glob("??/??/*"))
    assert stored
    for path in stored:
        path.unlink()  # the first name only, as prune does
    result = run_bounded(["git-theta", "fsck"], cwd=repo)
    assert result.returncode == 0, result.describe()
    assert result.stdout.splitlines() == [
        "fsck: ok",
        f"fsck: {len(stored)} unpushed object(s) deleted from the store (git lfs prune) were linked back",
    ]
    assert all(path.is_file() for path in stored)
    assert problems(repo) == []  # nothing left to link back: no second line
    assert run_bounded(["git-theta", "fsck"], cwd=repo).stdout == "fsck: ok\n"


def test_a_broken_chain_reusing_a_good_hash_is_tried(repo: Path) -> None:
    """The old fsck skipped every chain whose tensor hash had rebuilt once, so this said ok."""
    meta = commit_model(repo)
    wrong = b"".join(
        objects.encode(objects.Bundle("dense", {"value": Tensor("F32", (5,), np.zeros(5, np.float32).tobytes())}))
    )
    meta["params"]["b"]["stored"] = [{"object": put_object(repo, wrong), "size": len(wrong), "update": "dense"}]
    commit = commit_blob(repo, MODEL, dump(meta))
    [problem] = problems(repo)
    assert (
        problem.startswith(f"{MODEL}@{commit[:7]}: parameter 'b': ") and "does not match its recorded hash" in problem
    )


def test_an_unknown_format_plugin_is_reported(repo: Path) -> None:
    meta = commit_model(repo)
    meta["format"] = "nonesuch"
    commit = commit_blob(repo, MODEL, dump(meta))
    [problem] = problems(repo, "--quick")
    assert problem.startswith(f"{MODEL}@{commit[:7]}: unknown checkpoints plugin 'nonesuch'")


def test_unparsable_metadata_is_one_problem_and_the_rest_is_still_checked(repo: Path) -> None:
    meta = commit_model(repo)
    commit_blob(repo, MODEL, b'{"version":"git-theta/1","format":"safetensors","file":{},"params":{"a":1}}')
    oid = meta["params"]["a"]["stored"][0]["object"]
    delete_object(repo, oid)
    found = problems(repo)
    # one for the unparsable version; one per parameter of the good version whose pack is gone
    users = sum(any(link["object"] == oid for link in entry["stored"]) for entry in meta["params"].values())
    assert len(found) == 1 + users, found
    assert any("parameter 'a' is not an object" in p for p in found)
    assert any("parameter 'a': object" in p and "is missing" in p for p in found)


def test_a_swapped_file_blob_is_reported(repo: Path) -> None:
    meta = commit_model(repo)
    oid = meta["file"]["header"]["object"]
    store_path(repo, oid).write_bytes(b"".join(objects.encode_blob(b"another header")))
    [problem] = problems(repo, "--quick")
    assert f"file data: object {oid} is corrupt" in problem


def test_a_staged_version_is_named_by_index(repo: Path) -> None:
    meta = commit_model(repo)
    meta["params"]["a"]["hash"] = "0" * 64
    blob = git(repo, "hash-object", "-w", "--stdin", input=dump(meta)).stdout.strip()
    git(repo, "update-index", "--cacheinfo", f"100644,{blob},{MODEL}")
    [problem] = problems(repo)
    assert problem.startswith(f"{MODEL}@index: parameter 'a': ")
