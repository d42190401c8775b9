"""git theta diff: per-group numbers on real repositories, text and --json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from conftest import git, theta
from safetensors.numpy import save_file
from safetensors.torch import save_file as torch_save

MODEL = "model.safetensors"
RNG = np.random.default_rng(0)
BASE = {
    "enc.0.weight": RNG.normal(0, 0.02, (8, 8)).astype(np.float32),
    "enc.1.weight": RNG.normal(0, 0.02, (8, 8)).astype(np.float32),
    "enc.0.bias": np.zeros(8, dtype=np.float32),
    "head.weight": RNG.normal(0, 0.02, (4, 8)).astype(np.float32),
}


def commit(repo: Path, tensors: dict[str, np.ndarray], message: str, path: str = MODEL) -> None:
    save_file(tensors, repo / path)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)


def edited() -> dict[str, np.ndarray]:
    """enc.0.weight: one entry +0.5; enc.1.weight scaled by 2; enc.0.bias: -0.0 in one place; head removed;
    new added."""
    tensors = {name: value.copy() for name, value in BASE.items()}
    tensors["enc.0.weight"][3, 4] += 0.5
    tensors["enc.1.weight"] *= 2
    tensors["enc.0.bias"][0] = -0.0
    del tensors["head.weight"]
    tensors["new.weight"] = np.ones((2, 2), dtype=np.float32)
    return tensors


def diff_json(repo: Path, *args: str) -> dict:
    return json.loads(theta(repo, "diff", "--json", *args).stdout)


def groups(doc: dict, index: int = 0) -> dict[str, dict]:
    return {g["name"]: g for g in doc["files"][index]["groups"]}


def test_numbers_match_numpy(repo: Path) -> None:
    commit(repo, BASE, "v1")
    new = edited()
    save_file(new, repo / MODEL)
    doc = diff_json(repo)
    assert (doc["old"], doc["new"]) == ("index", "working tree")
    found = groups(doc)
    assert {n: g["status"] for n, g in found.items()} == {
        "enc.0.bias": "modified", "enc.0.weight": "modified", "enc.1.weight": "modified",
        "head.weight": "removed", "new.weight": "added",
    }  # fmt: skip
    old, now = BASE["enc.0.weight"].astype(np.float64), new["enc.0.weight"].astype(np.float64)
    stats = found["enc.0.weight"]["stats"]
    assert math.isclose(stats["norm"], 0.5, rel_tol=1e-6)
    assert math.isclose(stats["relative"], 0.5 / np.linalg.norm(old), rel_tol=1e-6)
    assert stats["changed"] == 1 / 64 and stats["changed_count"] == 1
    assert math.isclose(stats["max_abs"], 0.5, rel_tol=1e-6)
    assert math.isclose(
        stats["cosine"], float(old.ravel() @ now.ravel() / np.linalg.norm(old) / np.linalg.norm(now)), rel_tol=1e-9
    )
    doubled = found["enc.1.weight"]["stats"]
    assert math.isclose(doubled["relative"], 1.0, rel_tol=1e-6) and math.isclose(doubled["cosine"], 1.0, rel_tol=1e-9)
    # -0.0 against +0.0: numerically equal, but the bits changed, and git-theta is exact.
    bias = found["enc.0.bias"]["stats"]
    assert bias["changed_count"] == 1 and bias["norm"] == 0.0 and bias["relative"] is None and bias["cosine"] is None
    assert found["head.weight"]["new"] is None and found["head.weight"]["stats"] is None
    assert found["new.weight"]["old"] is None and found["new.weight"]["new"]["shape"] == [2, 2]
    summary = doc["summary"]
    assert (summary["groups_changed"], summary["modified"], summary["added"], summary["removed"]) == (5, 3, 1, 1)
    assert summary["bytes_changed"] == (64 + 64 + 8 + 32 + 4) * 4


def test_text_output(repo: Path) -> None:
    commit(repo, BASE, "v1")
    save_file(edited(), repo / MODEL)
    out = theta(repo, "diff").stdout
    lines = out.splitlines()
    assert lines[0] == f"{MODEL} (index -> working tree)"
    assert lines[1].split() == [
        "status",
        "group",
        "dtype",
        "shape",
        "update",
        "stored",
        "norm",
        "relative",
        "changed",
        "max|d|",
        "cosine",
    ]
    row = next(line.split() for line in lines if " enc.0.weight " in line)
    assert row[:4] == ["modified", "enc.0.weight", "F32", "[8,8]"]
    assert row[-5:-2] == ["5.000e-01", row[-4], "1.56%"] and row[-2] == "5.00e-01"
    assert next(line.split() for line in lines if "head.weight" in line) == ["removed", "head.weight", "F32", "[4,8]"]
    assert next(line.split() for line in lines if "new.weight" in line)[:5] == [
        "added",
        "new.weight",
        "F32",
        "[2,2]",
        "dense",
    ]
    assert lines[-1].startswith(
        "  5 of 5 groups changed (3 modified, 1 added, 1 removed); 688 B of tensor data changed, "
    )
    assert "\033[" not in out  # not a terminal: no colour


def test_worktree_diff_leaves_the_index_alone(repo: Path) -> None:
    commit(repo, BASE, "v1")
    save_file(edited(), repo / MODEL)
    staged = git(repo, "ls-files", "-s").stdout
    theta(repo, "diff")
    assert git(repo, "ls-files", "-s").stdout == staged
    assert git(repo, "status", "--porcelain").stdout == f" M {MODEL}\n"


def test_revisions_cached_and_ranges(repo: Path) -> None:
    commit(repo, BASE, "v1")
    commit(repo, edited(), "v2")
    assert set(groups(diff_json(repo, "HEAD~1", "HEAD"))) == {
        "enc.0.bias",
        "enc.0.weight",
        "enc.1.weight",
        "head.weight",
        "new.weight",
    }
    assert diff_json(repo, "HEAD~1..HEAD")["files"] == diff_json(repo, "HEAD~1", "HEAD")["files"]
    reverse = groups(diff_json(repo, "HEAD", "HEAD~1"))
    assert (reverse["head.weight"]["status"], reverse["new.weight"]["status"]) == ("added", "removed")
    assert diff_json(repo)["files"] == []  # working tree == index
    one_rev = diff_json(repo, "HEAD~1")
    assert (one_rev["old"], one_rev["new"]) == ("HEAD~1", "working tree") and len(one_rev["files"][0]["groups"]) == 5
    changed = {**BASE, "head.weight": BASE["head.weight"] + 1}
    save_file(changed, repo / MODEL)
    git(repo, "add", MODEL)
    cached = diff_json(repo, "--cached")
    assert (cached["old"], cached["new"]) == ("HEAD", "index")
    assert set(groups(cached)) == {"enc.0.bias", "enc.0.weight", "enc.1.weight", "head.weight", "new.weight"}
    assert set(groups(diff_json(repo, "--cached", "HEAD~1"))) == {"head.weight"}
    assert theta(repo, "diff").stdout == ""


def test_paths_filter_and_sort(repo: Path) -> None:
    commit(repo, BASE, "v1")
    commit(repo, BASE, "other", path="other.safetensors")
    save_file(edited(), repo / MODEL)
    save_file({**BASE, "head.weight": BASE["head.weight"] * 3}, repo / "other.safetensors")
    both = diff_json(repo)
    assert [f["path"] for f in both["files"]] == [MODEL, "other.safetensors"]
    assert both["summary"]["groups_changed"] == 6
    assert "total: 2 checkpoints, 6 groups changed" in theta(repo, "diff").stdout
    only = diff_json(repo, "--", "other.safetensors")
    assert [f["path"] for f in only["files"]] == ["other.safetensors"]
    assert [f["path"] for f in diff_json(repo, "HEAD", "other.safetensors")["files"]] == ["other.safetensors"]
    filtered = diff_json(repo, "--filter", "enc.*.weight", MODEL)
    assert [g["name"] for g in filtered["files"][0]["groups"]] == ["enc.0.weight", "enc.1.weight"]
    by_norm = diff_json(repo, "--sort", "norm", MODEL)
    norms = [g["stats"]["norm"] for g in by_norm["files"][0]["groups"] if g["stats"]]
    assert norms == sorted(norms, reverse=True)
    assert [g["stats"] for g in by_norm["files"][0]["groups"]][-2:] == [None, None]  # added/removed last


def test_colour(repo: Path) -> None:
    commit(repo, BASE, "v1")
    save_file(edited(), repo / MODEL)
    coloured = theta(repo, "diff", "--color=always").stdout
    assert "\033[31mremoved" in coloured and "\033[32madded" in coloured and "\033[33mmodified" in coloured
    assert "\033[" not in theta(repo, "diff", "--color=never").stdout


def test_shape_dtype_change_and_bf16(repo: Path) -> None:
    torch_save({"w": torch.ones(4, dtype=torch.bfloat16), "v": torch.ones(3), "s": torch.ones(2)}, str(repo / MODEL))
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    torch_save(
        {
            "w": torch.tensor([1, 1, 1.5, 1], dtype=torch.bfloat16),
            "v": torch.ones(4),
            "s": torch.ones(2, dtype=torch.float16),
        },
        str(repo / MODEL),
    )
    found = groups(diff_json(repo))
    assert found["v"]["layout_change"] == "shape" and found["v"]["stats"] is None
    assert found["s"]["layout_change"] == "dtype"
    assert found["w"]["stats"]["changed_count"] == 1 and math.isclose(found["w"]["stats"]["max_abs"], 0.5)
    text = theta(repo, "diff").stdout
    assert "modified (shape)  v" in text and "[3]->[4]" in text and "F32->F16" in text


def test_missing_objects_clear_error_and_no_stats(repo: Path, tmp_path: Path) -> None:
    commit(repo, BASE, "v1")
    commit(repo, edited(), "v2")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-checkout", str(repo), str(clone))
    git(clone, "checkout", "HEAD", "--", ".gitattributes")
    failed = theta(clone, "diff", "HEAD~1", "HEAD", check=False)
    assert (
        failed.returncode == 1
        and "missing" in failed.stderr
        and "--no-stats" in failed.stderr
        and "Traceback" not in failed.stderr
    )
    doc = diff_json(clone, "--no-stats", "HEAD~1", "HEAD")
    assert len(doc["files"][0]["groups"]) == 5 and all(g["stats"] is None for g in doc["files"][0]["groups"])


def test_bad_revision(repo: Path) -> None:
    commit(repo, BASE, "v1")
    failed = theta(repo, "diff", "no-such-rev", check=False)
    assert failed.returncode == 1 and "no-such-rev: neither a revision nor a path" in failed.stderr
