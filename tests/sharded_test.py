"""Sharded Hugging Face checkpoints as one model, through real git: the API loads the whole state dict from the
index, `git theta diff` / `git theta log` given the index compare models, and re-sharding is moves that store no
tensor object.

huggingface_hub and transformers are not installed here, so `save_sharded` writes shards the way both do
(huggingface_hub's split_state_dict_into_shards_factory: tensors in state-dict order, a new shard when the next
tensor would pass max_shard_size; safetensors.torch.save_file with {"format": "pt"}; the index as
json.dumps(index, indent=2, sort_keys=True) + "\\n")."""

from __future__ import annotations

import json
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import GIT_ENV, git, theta
from safetensors.torch import save_file

import git_theta
from git_theta.errors import ThetaError


def save_sharded(folder: Path, state: dict[str, torch.Tensor], max_shard_size: int) -> list[str]:
    """Shards and index as transformers' save_pretrained writes them; returns the shard file names."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for old in folder.glob("model-*-of-*.safetensors"):
        old.unlink()  # save_pretrained removes the shards of an earlier save
    weight_map = {}
    for file, shard in zip(names, shards):
        save_file(shard, folder / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return names


def state_dict(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {f"layers.{i}.weight": torch.randn(32, 32, generator=generator) for i in range(6)} | {
        "head.bias": torch.zeros(8, dtype=torch.bfloat16)
    }


def store_objects(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".git" / "lfs" / "objects").glob("??/??/*")}


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """One repository, read only by the tests: v1 in 2 shards, v2 the same model in 4 shards, v3 one tensor changed."""
    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", sysconfig.get_path("scripts") + os.pathsep + os.environ["PATH"])
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    repo = tmp_path_factory.mktemp("sharded") / "repo"
    (repo / "hf").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    theta(repo, "install", "--local")
    theta(repo, "track", "*.safetensors")
    state = state_dict(0)
    assert len(save_sharded(repo / "hf", state, max_shard_size=16 << 10)) == 2
    commit_all(repo, "v1: 2 shards")
    before = store_objects(repo)
    assert len(save_sharded(repo / "hf", state, max_shard_size=8 << 10)) == 4
    commit_all(repo, "v2: re-sharded into 4")
    new_objects = store_objects(repo) - before
    changed = dict(state)
    changed["layers.5.weight"] = state["layers.5.weight"] + 1
    save_sharded(repo / "hf", changed, max_shard_size=8 << 10)
    commit_all(repo, "v3: layer 5 changed")
    yield {"repo": repo, "state": state, "changed": changed, "resharding_objects": new_objects}
    monkeypatch.undo()


def test_load_returns_the_whole_state_dict_of_every_version(history: dict[str, object]) -> None:
    repo, state, changed = history["repo"], history["state"], history["changed"]
    assert isinstance(repo, Path) and isinstance(state, dict) and isinstance(changed, dict)
    for rev, expected in (("HEAD~2", state), ("HEAD~1", state), ("HEAD", changed)):
        loaded = git_theta.load("hf/model.safetensors.index.json", rev=rev, repo=repo, framework="torch")
        assert list(loaded) == sorted(expected)  # the weight_map's names, in its order
        assert all(
            torch.equal(loaded[name], expected[name]) and loaded[name].dtype == expected[name].dtype
            for name in expected
        )


def test_resharding_stores_only_the_new_shards_headers(history: dict[str, object]) -> None:
    repo, new_objects = history["repo"], history["resharding_objects"]
    assert isinstance(repo, Path) and isinstance(new_objects, set)
    headers = set()
    for shard in git(repo, "ls-tree", "--name-only", "HEAD~1", "hf/").stdout.split():
        if shard.endswith(".safetensors"):
            meta = json.loads(git(repo, "show", f"HEAD~1:{shard}").stdout)
            headers.add(meta["file"]["header"]["object"])
            assert all(link["update"] == "dense" for entry in meta["params"].values() for link in entry["stored"])
    assert new_objects and new_objects <= headers  # 4 new headers at most; not one tensor object


def test_diff_of_the_index_shows_moves_not_removals_and_additions(history: dict[str, object]) -> None:
    repo = history["repo"]
    assert isinstance(repo, Path)
    out = theta(repo, "diff", "HEAD~2", "HEAD~1", "--", "hf/model.safetensors.index.json").stdout
    assert out.splitlines()[0] == "hf/model.safetensors.index.json (HEAD~2 -> HEAD~1; a model of 2 -> 4 shards)"
    assert "removed" not in out and "added" not in out
    assert "  moved from shard 2 of 2 to shard 3 of 4  layers.4.weight  F32    [32,32]\n" in out
    # every tensor's file changed name (model-00001-of-00002 -> model-00001-of-00004): all moved, none stored
    assert (
        "0 of 7 groups changed (no change); 0 B of tensor data changed, 0 B newly stored; 7 moved between shards" in out
    )
    found = json.loads(theta(repo, "diff", "--json", "HEAD~2", "HEAD~1", "hf/model.safetensors.index.json").stdout)
    model = found["files"][0]
    assert (model["shards_before"], model["shards_after"], model["groups"]) == (2, 4, [])
    assert {
        "name": "layers.4.weight",
        "from": "hf/model-00002-of-00002.safetensors",
        "to": "hf/model-00003-of-00004.safetensors",
    } in model["moves"]
    # A real change: one modified group with numbers, shards unchanged.
    out = theta(repo, "diff", "HEAD~1", "HEAD", "hf/model.safetensors.index.json").stdout
    assert "1 of 7 groups changed (1 modified)" in out and "moved" not in out
    assert [line.split()[:2] for line in out.splitlines()[2:-1]] == [["modified", "layers.5.weight"]]


def test_log_of_the_index_summarises_the_model(history: dict[str, object]) -> None:
    repo = history["repo"]
    assert isinstance(repo, Path)
    out = theta(repo, "log", "hf/model.safetensors.index.json").stdout.splitlines()
    assert [line.split("  ")[-1] for line in out[::2]] == [
        "v3: layer 5 changed",
        "v2: re-sharded into 4",
        "v1: 2 shards",
    ]
    assert out[1].startswith("    hf/model.safetensors.index.json: 1 group changed (1 modified); stored ")
    assert (
        out[3]
        == "    hf/model.safetensors.index.json: 0 groups changed (no change); 7 moved between shards; stored nothing"
    )
    assert out[5].startswith("    hf/model.safetensors.index.json: 7 groups changed (7 added); stored dense ")
    only = theta(repo, "log", "-v", "hf/model.safetensors.index.json", "--param", "layers.0.weight").stdout.splitlines()
    assert [line.split("  ")[-1] for line in only[::2]] == ["v2: re-sharded into 4", "v1: 2 shards"]  # v3 left it alone
    assert only[1].split() == [
        "hf/model.safetensors.index.json",
        "moved",
        "from",
        "shard",
        "1",
        "of",
        "2",
        "to",
        "shard",
        "1",
        "of",
        "4",
        "layers.0.weight",
        "F32",
        "[32,32]",
    ]


def test_an_index_naming_a_missing_shard_or_the_wrong_shard_is_an_error_naming_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", "repo")
    theta(repo, "install", "--local")
    theta(repo, "track", "*.safetensors")
    save_sharded(repo, state_dict(1), max_shard_size=16 << 10)
    commit_all(repo, "good")
    git(repo, "tag", "good")
    good_index = (repo / "model.safetensors.index.json").read_text()
    hostile = (
        ("{", "not valid JSON"),
        ('{"weight_map": []}', 'no "weight_map" object'),
        ('{"weight_map": {"w": "../x.safetensors"}}', "not a file name beside the index"),
        ('{"weight_map": {"w": "model-00001-of-00002.safetensors"}, "weight_map": {}}', "appears twice"),
    )
    for bad, problem in hostile:
        (repo / "model.safetensors.index.json").write_text(bad)
        commit_all(repo, "hostile index")
        result = theta(repo, "diff", "good", "HEAD", "model.safetensors.index.json", check=False)
        assert result.returncode == 1 and result.stderr.count("git-theta: error:") == 1 and problem in result.stderr, (
            result.stderr
        )
        assert "Traceback" not in result.stderr and "HEAD:model.safetensors.index.json" in result.stderr
    index = json.loads(good_index)
    index["weight_map"]["extra.weight"] = "model-00003-of-00003.safetensors"
    (repo / "model.safetensors.index.json").write_text(json.dumps(index))
    commit_all(repo, "broken index")
    with pytest.raises(
        ThetaError, match=r"shard model-00003-of-00003.safetensors \(holding 'extra.weight'\) is missing"
    ):
        git_theta.load("model.safetensors.index.json", repo=repo)
    index["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors"
    (repo / "model.safetensors.index.json").write_text(json.dumps(index))
    commit_all(repo, "wrong shard")
    with pytest.raises(ThetaError, match=r"tensor 'extra.weight' is not in model-00001-of-00002.safetensors"):
        git_theta.load("model.safetensors.index.json", repo=repo)
