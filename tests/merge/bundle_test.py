"""Value merges of TensorFlow checkpoints: real TensorFlow writes both branches, real `git merge` stops on the
bundle, `git theta merge --redo` merges it as a unit, and TensorFlow restores the merged values.

TensorFlow is imported once for the module (its import takes seconds).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git, theta
from hostile_support import RepoState, assert_refused, run_bounded

DATA = ".data-00000-of-00001"
W = "module/w/.ATTRIBUTES/VARIABLE_VALUE"
B = "module/b/.ATTRIBUTES/VARIABLE_VALUE"
STEPS = "module/steps/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.fixture(scope="module")
def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow

    return tensorflow


def _module(tf: Any, w: np.ndarray[Any, Any], b: np.ndarray[Any, Any], extra: bool = False) -> Any:
    module = tf.Module()
    module.w = tf.Variable(w)
    module.b = tf.Variable(b)
    module.steps = tf.Variable(np.array([7], np.int64))
    if extra:
        module.z = tf.Variable(np.zeros(2, np.float32))
    return module


def _save(tf: Any, repo: Path, w: np.ndarray[Any, Any], b: np.ndarray[Any, Any], extra: bool = False) -> None:
    tf.train.Checkpoint(module=_module(tf, w, b, extra)).write(str(repo / "ckpt"))


def _branches(tf: Any, repo: Path, theirs_extra: bool = False) -> dict[str, np.ndarray[Any, Any]]:
    """main and `other` both fine-tune w from the base; only `other` changes b."""
    rng = np.random.default_rng(0)
    values = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
    }
    values["w_ours"] = values["w"] + rng.standard_normal((3, 4)).astype(np.float32)
    values["w_theirs"] = values["w"] - rng.standard_normal((3, 4)).astype(np.float32)
    values["b_theirs"] = values["b"] + np.float32(0.5)
    theta(repo, "track", "ckpt.*")
    _save(tf, repo, values["w"], values["b"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    _save(tf, repo, values["w_theirs"], values["b_theirs"], theirs_extra)
    git(repo, "commit", "-q", "-am", "theirs fine-tuned w and b")
    git(repo, "checkout", "-q", "main")
    _save(tf, repo, values["w_ours"], values["b"])
    git(repo, "commit", "-q", "-am", "ours fine-tuned w")
    return values


def test_merge_stops_then_redo_merges_the_bundle_so_tensorflow_restores_it(tf: Any, repo: Path) -> None:
    values = _branches(tf, repo)
    git(repo, "config", "theta.merge.strategy", "average")
    result = git(repo, "merge", "-q", "other", check=False)
    assert result.returncode != 0
    # both files stop, each saying what finishes the merge
    assert "ckpt.index: TensorFlow bundle: the .index changed on both sides" in result.stderr
    assert f"ckpt{DATA}: TensorFlow bundle: the .index holds a CRC-32C of each tensor" in result.stderr
    assert "git theta merge --redo ckpt.index" in result.stderr
    assert f"git theta merge --redo ckpt{DATA}" in result.stderr
    assert "or take one side for every file of the bundle: `git checkout --ours -- 'ckpt.*'`" in result.stderr

    done = theta(repo, "merge", "--redo", "ckpt.index", "--strategy", "average")
    assert "rewrote the CRC-32C of 2 tensor(s) in ckpt.index" in done.stderr  # w computed, b from theirs; not the graph
    expected_w = ((values["w_ours"].astype(np.float64) + values["w_theirs"]) / 2).astype(np.float32)
    reader = tf.train.load_checkpoint(str(repo / "ckpt"))
    np.testing.assert_array_equal(reader.get_tensor(W), expected_w)
    np.testing.assert_array_equal(reader.get_tensor(B), values["b_theirs"])
    np.testing.assert_array_equal(reader.get_tensor(STEPS), [7])
    module = _module(tf, np.zeros((3, 4), np.float32), np.zeros(4, np.float32))
    tf.train.Checkpoint(module=module).read(str(repo / "ckpt")).assert_consumed()  # read: the counterpart of write
    np.testing.assert_array_equal(module.w.numpy(), expected_w)
    restored = _module(tf, np.zeros((3, 4), np.float32), np.zeros(4, np.float32))
    tf.train.Checkpoint(module=restored).restore(
        str(repo / "ckpt")
    ).assert_nontrivial_match()  # (save_counter: write() saves none)
    np.testing.assert_array_equal(restored.w.numpy(), expected_w)
    np.testing.assert_array_equal(restored.b.numpy(), values["b_theirs"])

    assert git(repo, "status", "--porcelain").stdout == "M  ckpt.data-00000-of-00001\nM  ckpt.index\n"
    # the shard's clean, reading the new index beside it, found every CRC-32C right: the tensors stay typed groups
    staged = json.loads(git(repo, "show", f":ckpt{DATA}").stdout)["params"]
    assert staged[W]["dtype"] == "F32" and staged[B]["shape"] == [4] and staged[STEPS]["dtype"] == "I64"
    git(repo, "commit", "-q", "--no-edit")
    assert git(repo, "status", "--porcelain").stdout == ""
    assert len(git(repo, "log", "-1", "--format=%P").stdout.split()) == 2
    merged = {name: (repo / name).read_bytes() for name in ("ckpt.index", f"ckpt{DATA}")}
    # later checkouts: byte for byte, from the metadata alone
    git(repo, "checkout", "-q", "HEAD~1")
    git(repo, "checkout", "-q", "main")
    for name in merged:
        (repo / name).unlink()
    git(repo, "checkout", "-q", "--", ".")
    for name, data in merged.items():
        assert (repo / name).read_bytes() == data, name
    assert git(repo, "status", "--porcelain").stdout == ""


def test_rules_of_the_data_shard_path_apply(tf: Any, repo: Path) -> None:
    """.thetamerge.toml names the data shard's path and its groups; the prompt is never needed."""
    values = _branches(tf, repo)
    (repo / ".thetamerge.toml").write_text(
        '[[rule]]\npath = "ckpt.data-*"\nparams = "module/w/*"\nstrategy = "theirs"\n'
    )
    assert git(repo, "merge", "-q", "other", check=False).returncode != 0
    theta(repo, "merge", "--redo", f"ckpt{DATA}")
    reader = tf.train.load_checkpoint(str(repo / "ckpt"))
    np.testing.assert_array_equal(reader.get_tensor(W), values["w_theirs"])
    np.testing.assert_array_equal(reader.get_tensor(B), values["b_theirs"])


def test_bundles_that_differ_in_variables_are_refused_in_one_line(tf: Any, repo: Path) -> None:
    _branches(tf, repo, theirs_extra=True)
    git(repo, "config", "theta.merge.strategy", "average")
    assert git(repo, "merge", "-q", "other", check=False).returncode != 0
    state = RepoState.capture(repo)
    result = run_bounded(["git", "theta", "merge", "--redo", "ckpt.index"], cwd=repo)
    message = assert_refused(result, names="ckpt.index")
    assert "are not the same variables at the same places" in message and "take one side" in message
    state.assert_unchanged(repo)
    result = run_bounded(["git", "theta", "merge", "HEAD", "other", "--path", f"ckpt{DATA}"], cwd=repo)
    assert "merging revisions with --path does not rewrite its .index" in assert_refused(result, names=f"ckpt{DATA}")
    state.assert_unchanged(repo)


def test_rewritten_crcs_are_what_tensorflow_checks(tf: Any, tmp_path: Path) -> None:
    """Changed bytes of a tensor: TensorFlow refuses the stale index, and reads the one rewrite_crcs patched."""
    from git_theta import crc32c
    from git_theta.checkpoints.tensor_bundle import parse_index, rewrite_crcs

    _save(tf, tmp_path, np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(4, np.float32))
    entry = next(e for e in parse_index((tmp_path / "ckpt.index").read_bytes()).entries if e.key == W)
    data = bytearray((tmp_path / f"ckpt{DATA}").read_bytes())
    new = -np.arange(12, dtype=np.float32).reshape(3, 4)
    data[entry.offset : entry.offset + entry.size] = new.tobytes()
    (tmp_path / f"ckpt{DATA}").write_bytes(bytes(data))
    with pytest.raises(Exception, match="hecksum"):  # TensorFlow's "Checksum does not match"
        tf.train.load_checkpoint(str(tmp_path / "ckpt")).get_tensor(W)
    index = rewrite_crcs((tmp_path / "ckpt.index").read_bytes(), {W: crc32c.mask(crc32c.crc32c(new.tobytes()))})
    (tmp_path / "ckpt.index").write_bytes(index)
    np.testing.assert_array_equal(tf.train.load_checkpoint(str(tmp_path / "ckpt")).get_tensor(W), new)


def test_sharded_bundle_merges_shards_git_took_and_shards_it_left(tf: Any, repo: Path) -> None:
    """Four shards: one changed only by ours and one only by theirs (git takes those), one changed by both (left
    conflicted); --redo merges that one and rewrites the index's CRC-32Cs for all three."""
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=300)
    options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    base = {f"v{i}": np.full((64,), i, np.float32) for i in range(4)}

    def save(values: dict[str, np.ndarray[Any, Any]]) -> None:
        parts = {name: tf.Variable(value) for name, value in values.items()}
        tf.train.Checkpoint(**parts).write(str(repo / "ckpt"), options=options)

    theta(repo, "track", "ckpt.*")
    save(base)
    shards = sorted(path.name for path in repo.glob("ckpt.data-*"))
    assert len(shards) > 2
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    theirs = {**base, "v1": base["v1"] + 2, "v3": base["v3"] * 3}
    save(theirs)
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    ours = {**base, "v0": base["v0"] - 1, "v1": base["v1"] + 4}
    save(ours)
    git(repo, "commit", "-q", "-am", "ours")
    assert git(repo, "merge", "-q", "other", "-s", "ort", check=False).returncode != 0
    conflicted = set(git(repo, "diff", "--name-only", "--diff-filter=U").stdout.split())
    assert "ckpt.index" in conflicted and 1 <= len(conflicted & set(shards)) < len(shards)
    theta(repo, "merge", "--redo", "ckpt.index", "--strategy", "average")
    reader = tf.train.load_checkpoint(str(repo / "ckpt"))
    expected = {**base, "v0": ours["v0"], "v1": base["v1"] + 3, "v3": theirs["v3"]}
    for name, value in expected.items():
        np.testing.assert_array_equal(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"), value, name)
    git(repo, "commit", "-q", "--no-edit")
    assert git(repo, "status", "--porcelain").stdout == ""


def test_a_hostile_committed_index_is_refused_in_one_line(tf: Any, repo: Path) -> None:
    """Committed metadata is not trusted: their .index's blob is no table; --redo names it and changes nothing."""
    _branches(tf, repo)
    git(repo, "checkout", "-q", "other")
    text = git(repo, "show", "HEAD:ckpt.index").stdout
    meta = json.loads(text)
    from git_theta import objects
    from git_theta.repo import Repo

    store = Repo.discover(repo).store
    oid, size = store.put(objects.encode_blob(b"not an index" * 8))
    reference = json.dumps(meta["file"]["index"], separators=(",", ":"))
    assert reference in text
    hostile = text.replace(reference, json.dumps({"object": oid, "size": size}, separators=(",", ":")))
    staged = git(repo, "hash-object", "-w", "--stdin", input=hostile.encode()).stdout.strip()
    git(repo, "update-index", "--cacheinfo", f"100644,{staged},ckpt.index")
    git(repo, "commit", "-q", "-m", "a hostile index")
    git(repo, "checkout", "-q", "-f", "main")  # the working tree still holds the index before the edit
    git(repo, "config", "theta.merge.strategy", "average")
    assert git(repo, "merge", "-q", "other", check=False).returncode != 0
    state = RepoState.capture(repo)
    result = run_bounded(["git", "theta", "merge", "--redo", "ckpt.index"], cwd=repo)
    assert "ckpt.index (theirs): not a TensorFlow bundle index" in assert_refused(result, names="ckpt.index")
    state.assert_unchanged(repo)
