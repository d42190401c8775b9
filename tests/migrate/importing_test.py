"""migrate import on a real git-lfs history: excluded paths, missing and damaged objects, files that are not
checkpoints, a Hugging Face-shaped repository pushed and cloned."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import git, theta
from hostile_support import assert_refused, run_bounded
from migrate_support import (
    HF_DEFAULT,
    History,
    copy_of,
    drop_object,
    made_history,
    subject_commits,
)

from git_theta import attributes
from git_theta.migrate import exporting, info
from git_theta.repo import Repo


@pytest.fixture
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return made_history(tmp_path_factory)


@pytest.fixture
def lfs_repo(history: History, tmp_path: Path) -> Path:
    return copy_of(history, tmp_path)


def test_excluded_paths_and_the_default_branch_only(lfs_repo: Path, history: History) -> None:
    theta(lfs_repo, "migrate", "import", "--include", "*.safetensors,*.bin", "--exclude", "data.bin")
    old = {line.split()[2]: line.split()[0] for line in history.refs.splitlines()}
    # only the current branch moves by default
    for ref in ("refs/heads/side", "refs/tags/v2-light", "refs/tags/v3"):
        assert git(lfs_repo, "rev-parse", ref).stdout.strip() == old[ref]
    assert git(lfs_repo, "rev-parse", "main").stdout.strip() != old["refs/heads/main"]
    assert (
        git(lfs_repo, "rev-parse", "main:data.bin").stdout
        == git(lfs_repo, "rev-parse", f"{old['refs/heads/main']}:data.bin").stdout
    )
    lines = git(lfs_repo, "show", "main:.gitattributes").stdout.splitlines()
    assert f"*.bin {attributes.ATTRIBUTES}" in lines
    assert lines[-1] == "data.bin filter=lfs diff=lfs merge=lfs -text"  # the excluded file stays with git-lfs
    assert git(lfs_repo, "check-attr", "filter", "data.bin").stdout.strip().endswith("lfs")
    assert (lfs_repo / "data.bin").read_bytes() == bytes(range(256)) * 8


def test_a_missing_object_is_fetched_or_refused_naming_it_and_the_commit(
    lfs_repo: Path, history: History, lfs_server: object
) -> None:
    oid = drop_object(lfs_repo, history.models["v2"])
    before = git(lfs_repo, "for-each-ref").stdout
    git(lfs_repo, "remote", "add", "origin", "http://127.0.0.1:9/unused.git")
    git(lfs_repo, "config", "lfs.url", lfs_server.url)  # type: ignore[attr-defined]
    (row,) = info.info(Repo.discover(lfs_repo), include=["*.safetensors"], exclude=[], refs=["main"]).rows
    assert (row.versions, row.not_local) == (4, 1)  # main holds side's version too; a dry run fetches nothing
    refused = theta(lfs_repo, "migrate", "import", "--include", "*.safetensors", check=False)
    v2 = subject_commits(lfs_repo, "main")["v2"]
    assert refused.returncode == 1
    assert refused.stderr.count("git-theta: error:") == 1 and "Traceback" not in refused.stderr
    assert f"model.safetensors: git-lfs object {oid} (commit {v2}) is not in the local store" in refused.stderr
    assert git(lfs_repo, "for-each-ref").stdout == before

    path = lfs_server.object_path(oid)  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(history.models["v2"])  # as `git lfs push` would have left it
    theta(lfs_repo, "migrate", "import", "--include", "*.safetensors")
    git(lfs_repo, "checkout", "main~2", "--", "model.safetensors")
    assert (lfs_repo / "model.safetensors").read_bytes() == history.models["v2"]


def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line_naming_it(lfs_repo: Path) -> None:
    before = git(lfs_repo, "for-each-ref").stdout
    result = theta(lfs_repo, "migrate", "info", "--include", "*.bin", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("git-theta: error: data.bin: not a checkpoint") and "--exclude" in result.stderr
    assert theta(lfs_repo, "migrate", "import", check=False).returncode == 1  # the default: all of git-lfs's patterns
    assert git(lfs_repo, "for-each-ref").stdout == before


@pytest.mark.parametrize("damage", ["flipped", "truncated", "declared-larger"])
def test_a_damaged_lfs_object_or_lying_pointer_is_refused_in_bounded_memory(
    lfs_repo: Path, history: History, damage: str
) -> None:
    oid = hashlib.sha256(history.models["v2"]).hexdigest()
    path = lfs_repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    data = bytearray(history.models["v2"])
    if damage == "flipped":
        data[-1] ^= 1  # still a readable safetensors file: only the sha256 tells
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        # v2's pointer claims 1 TiB: nothing may be allocated for it; the bytes on disk decide
        v2 = subject_commits(lfs_repo, "main")["v2"]
        pointer = exporting.pointer_text(oid, 1 << 40)
        blob = git(lfs_repo, "hash-object", "-w", "--stdin", input=pointer).stdout.strip()
        tree = git(lfs_repo, "ls-tree", v2).stdout.replace(
            git(lfs_repo, "rev-parse", f"{v2}:model.safetensors").stdout.strip(), blob
        )
        new_tree = git(lfs_repo, "mktree", input=tree.encode()).stdout.strip()
        commit = git(lfs_repo, "commit-tree", new_tree, "-p", v2, "-m", "lying pointer").stdout.strip()
        git(lfs_repo, "branch", "lying", commit)
    before = git(lfs_repo, "for-each-ref").stdout
    refs = ["lying"] if damage == "declared-larger" else ["main"]
    result = run_bounded(["git-theta", "migrate", "import", "--include", "*.safetensors", *refs], cwd=lfs_repo)
    assert_refused(result, ["model.safetensors", oid])
    assert git(lfs_repo, "for-each-ref").stdout == before


def test_a_hugging_face_shaped_repository_migrates_pushes_and_clones(tmp_path: Path, lfs_server: object) -> None:
    """Config, tokenizer, two safetensors shards and their index, two commits through git-lfs -> import with the
    default patterns -> push (objects to a giftless server) -> a fresh clone holds every shard byte for byte."""
    import json

    import numpy as np
    from safetensors.numpy import load_file, save_file

    git(tmp_path, "lfs", "install")
    theta(tmp_path, "install")
    repo, origin = tmp_path / "model", tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text(HF_DEFAULT)
    (repo / "config.json").write_text('{"model_type": "tiny", "hidden_size": 16}\n')
    (repo / "tokenizer.json").write_text('{"version": "1.0", "model": {"vocab": {"a": 0, "b": 1}}}\n')
    shards = {
        "model-00001-of-00002.safetensors": ["embed", "layer0"],
        "model-00002-of-00002.safetensors": ["layer1", "head"],
    }
    weight_map = {name: shard for shard, names in shards.items() for name in names}
    (repo / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}) + "\n")
    versions: list[dict[str, bytes]] = []
    for version in (1, 2):
        for shard, names in shards.items():
            seed = version if shard.startswith("model-00002") else 1  # version 2 changes the second shard only
            rng = np.random.default_rng([seed, len(shard)])
            save_file(
                {n: rng.standard_normal((32, 16)).astype(np.float32) for n in names},
                str(repo / shard),
                {"format": "pt"},
            )
        versions.append({shard: (repo / shard).read_bytes() for shard in shards})
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{version}")
    assert git(repo, "cat-file", "-p", f"HEAD:{next(iter(shards))}").stdout.startswith("version https://git-lfs")

    theta(repo, "migrate", "import")  # the default: the patterns HF's .gitattributes routes to git-lfs
    url = lfs_server.url  # type: ignore[attr-defined]
    git(repo, "config", "lfs.url", url)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    metadata = [
        json.loads(git(repo, "show", f"{rev}:{shard}").stdout) for rev in ("HEAD", "HEAD~1") for shard in shards
    ]
    needed = {link["object"] for meta in metadata for entry in meta["params"].values() for link in entry["stored"]}
    assert needed <= lfs_server.oids()  # type: ignore[attr-defined]

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "-c", f"lfs.url={url}", str(origin), str(clone))
    for shard, data in versions[1].items():
        assert (clone / shard).read_bytes() == data
    assert (clone / "config.json").read_text() == (repo / "config.json").read_text()
    index = json.loads((clone / "model.safetensors.index.json").read_text())
    loaded = {name: load_file(str(clone / shard))[name] for name, shard in index["weight_map"].items()}
    assert sorted(loaded) == ["embed", "head", "layer0", "layer1"]
    second = "model-00002-of-00002.safetensors"
    git(clone, "checkout", "HEAD~1", "--", second)  # the older version, fetched when needed
    assert (clone / second).read_bytes() == versions[0][second]
