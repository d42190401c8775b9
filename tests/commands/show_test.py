"""git theta show: a table of a checkpoint's groups at any revision, from metadata alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import git, theta
from safetensors.numpy import save_file
from safetensors.torch import save_file as torch_save

MODEL = "model.safetensors"


def two_versions(repo: Path) -> None:
    torch_save({"emb": torch.zeros(10, 4, dtype=torch.bfloat16), "w": torch.ones(4, 4)}, str(repo / MODEL))
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    save_file({"w": np.ones((4, 4), dtype=np.float32), "b": np.zeros(4, dtype=np.int64)}, repo / MODEL)
    git(repo, "commit", "-q", "-am", "v2")


def test_table_and_totals(repo: Path) -> None:
    two_versions(repo)
    lines = theta(repo, "show", f"HEAD~1:{MODEL}").stdout.splitlines()
    meta = json.loads(git(repo, "show", f"HEAD~1:{MODEL}").stdout)
    # what each link stores: a pack member's length, else its object's size
    sizes = {
        name: sum(link.get("length", link["size"]) for link in entry["stored"])
        for name, entry in meta["params"].items()
    }
    assert lines[0] == f"{MODEL} at HEAD~1 (safetensors)"
    assert lines[1].split() == ["group", "dtype", "shape", "update", "stored"]
    assert lines[2].split() == ["emb", "BF16", "[10,4]", "dense", str(sizes["emb"]), "B"]
    assert lines[3].split() == ["w", "F32", "[4,4]", "dense", str(sizes["w"]), "B"]
    total = sizes["emb"] + sizes["w"]
    assert lines[4].startswith(f"2 groups, 56 parameters, 144 B of tensor data, {total} B stored (")


def test_revisions_index_and_json(repo: Path) -> None:
    two_versions(repo)
    assert theta(repo, "show", MODEL).stdout == theta(repo, "show", f"HEAD:{MODEL}").stdout
    save_file({"only": np.ones(1, dtype=np.float32)}, repo / MODEL)
    git(repo, "add", MODEL)
    staged = json.loads(theta(repo, "show", "--json", f":{MODEL}").stdout)
    assert staged["rev"] == "index" and [g["name"] for g in staged["groups"]] == ["only"]
    doc = json.loads(theta(repo, "show", "--json", "--sort", "size", f"HEAD:{MODEL}").stdout)
    assert doc["format"] == "safetensors" and [g["name"] for g in doc["groups"]] == ["w", "b"]
    assert doc["totals"]["groups"] == 2 and doc["totals"]["parameters"] == 20 and doc["totals"]["bytes"] == 64 + 32
    assert doc["groups"][1] == {**doc["groups"][1], "dtype": "I64", "shape": [4], "updates": ["dense"], "bytes": 32}


def test_works_without_objects_and_from_a_subdirectory(repo: Path, tmp_path: Path) -> None:
    two_versions(repo)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-checkout", str(repo), str(clone))
    git(clone, "checkout", "HEAD", "--", ".gitattributes")
    (clone / "sub").mkdir()
    assert theta(clone / "sub", "show", f"HEAD~1:{MODEL}").stdout == theta(repo, "show", f"HEAD~1:{MODEL}").stdout


def test_errors(repo: Path) -> None:
    two_versions(repo)
    absent = theta(repo, "show", "HEAD:nope.safetensors", check=False)
    assert absent.returncode == 1 and "nope.safetensors: no git-theta checkpoint at HEAD" in absent.stderr
    bad_rev = theta(repo, "show", f"nosuch:{MODEL}", check=False)
    assert bad_rev.returncode == 1 and "nosuch: not a revision" in bad_rev.stderr
