"""TensorFlow tensor bundles through real git, written and read back by real TensorFlow.

TensorFlow is imported once for the module (its import takes seconds) and writes every checkpoint here: a
tf.train.Checkpoint of a small keras model (two saves, one training step of the first layer apart) and the
variables/ of a tf.saved_model.save.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git, theta
from hostile_support import RepoState, assert_refused, run_bounded
from tensor_bundle_test import build_index, entry_proto, header_proto

DATA = ".data-00000-of-00001"


@pytest.fixture(scope="module")
def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow

    return tensorflow


def _model(tf: Any) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(2)])


@pytest.fixture(scope="module")
def saved(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ckpt-1 and ckpt-2 (the first layer trained one step), a second branch's ckpt-2, and a SavedModel."""
    root = tmp_path_factory.mktemp("tf")
    model = _model(tf)
    checkpoint = tf.train.Checkpoint(model=model)
    checkpoint.save(str(root / "ckpt" / "ckpt"))
    first = [v.numpy().copy() for v in model.variables]
    layer = model.layers[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.ones((3, 4))) ** 2)
    for variable, gradient in zip(layer.trainable_variables, tape.gradient(loss, layer.trainable_variables)):
        variable.assign_sub(0.01 * gradient)
    checkpoint.save(str(root / "ckpt" / "ckpt"))
    module = tf.Module()
    module.weight = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4))
    module.steps = tf.Variable(np.array([1, -2, 3], dtype=np.int64))
    module.half = tf.Variable(tf.constant([1.5, -0.0], tf.bfloat16))
    module.words = tf.Variable(["a", "bc"])
    tf.saved_model.save(module, str(root / "saved"))
    # four shards; the sharding policy splits variables into slices across them
    parts = {f"v{i}": tf.Variable(np.full((64,), i, np.float32)) for i in range(4)}
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=300)
    tf.train.Checkpoint(**parts).write(
        str(root / "sharded" / "ckpt"), options=tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    )
    return {"root": root, "first": first, "second": [v.numpy().copy() for v in model.variables]}


def _add_and_check_out(repo: Path, files: list[str]) -> dict[str, bytes]:
    originals = {name: (repo / name).read_bytes() for name in files}
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "checkpoint")
    for name in files:
        (repo / name).unlink()
    git(repo, "checkout", "-q", "--", ".")
    for name, data in originals.items():
        assert (repo / name).read_bytes() == data, name
    assert git(repo, "status", "--porcelain").stdout == ""
    return originals


def _metadata(repo: Path, spec: str) -> dict[str, Any]:
    return json.loads(git(repo, "show", spec).stdout)


def test_checkpoint_round_trip_restores_and_dedups(tf: Any, saved: dict[str, Any], repo: Path) -> None:
    (repo / "ckpt").mkdir()
    shutil.copy(saved["root"] / "ckpt" / "checkpoint", repo / "ckpt")
    for name in ("ckpt-1.index", f"ckpt-1{DATA}"):
        shutil.copy(saved["root"] / "ckpt" / name, repo / "ckpt")
    theta(repo, "track", "ckpt/ckpt-*")
    _add_and_check_out(repo, ["ckpt/checkpoint", "ckpt/ckpt-1.index", f"ckpt/ckpt-1{DATA}"])
    # the `checkpoint` text file TensorFlow writes beside them stays a plain git file
    assert git(repo, "show", "HEAD:ckpt/checkpoint").stdout.startswith('model_checkpoint_path: "ckpt-')
    index = _metadata(repo, "HEAD:ckpt/ckpt-1.index")
    assert index["format"] == "tensorflow" and index["file"]["variables"] == 6 and index["params"] == {}
    data = _metadata(repo, f"HEAD:ckpt/ckpt-1{DATA}")
    kernel = "model/_functional/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert data["params"][kernel]["dtype"] == "F32" and data["params"][kernel]["shape"] == [4, 8]
    assert [name for name in data["file"]["layout"] if name.startswith("@bytes/")] == ["@bytes/240"]  # object graph
    model = _model(tf)
    tf.train.Checkpoint(model=model).restore(str(repo / "ckpt" / "ckpt-1")).assert_consumed()
    for restored, original in zip(model.variables, saved["first"]):
        np.testing.assert_array_equal(restored.numpy(), original)

    # one training step of the first layer: the second layer's groups are the same objects
    for name in ("ckpt-2.index", f"ckpt-2{DATA}"):
        shutil.copy(saved["root"] / "ckpt" / name, repo / "ckpt")
    before = set((repo / ".git" / "lfs" / "objects").rglob("*"))
    _add_and_check_out(repo, ["ckpt/ckpt-2.index", f"ckpt/ckpt-2{DATA}"])
    new_objects = {path.name for path in set((repo / ".git" / "lfs" / "objects").rglob("*")) - before if path.is_file()}
    second = _metadata(repo, f"HEAD:ckpt/ckpt-2{DATA}")["params"]
    first = data["params"]
    unchanged = {name for name in second if name in first and second[name]["hash"] == first[name]["hash"]}
    assert {
        "model/_functional/_operations/2/_kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "model/_functional/_operations/2/bias/.ATTRIBUTES/VARIABLE_VALUE",
    } <= unchanged
    assert kernel not in unchanged
    changed_objects = {
        link["object"] for name, entry in second.items() if name not in unchanged for link in entry["stored"]
    }
    index_object = _metadata(repo, "HEAD:ckpt/ckpt-2.index")["file"]["index"]["object"]
    assert new_objects == changed_objects | {index_object}
    reader = tf.train.load_checkpoint(str(repo / "ckpt" / "ckpt-2"))
    np.testing.assert_array_equal(reader.get_tensor(kernel), saved["second"][0])


def test_saved_model_and_sharded_round_trip(tf: Any, saved: dict[str, Any], repo: Path) -> None:
    shutil.copytree(saved["root"] / "saved", repo / "saved")
    shutil.copytree(saved["root"] / "sharded", repo / "sharded")
    theta(repo, "track", "saved/variables/variables.*", "sharded/ckpt.*")
    shards = [f"sharded/ckpt.data-0000{k}-of-00004" for k in range(4)]
    _add_and_check_out(
        repo,
        [
            "saved/variables/variables.index",
            f"saved/variables/variables{DATA}",
            "saved/saved_model.pb",
            "sharded/ckpt.index",
            *shards,
        ],
    )
    reader = tf.train.load_checkpoint(str(repo / "sharded" / "ckpt"))
    for i in range(4):
        np.testing.assert_array_equal(reader.get_tensor(f"v{i}/.ATTRIBUTES/VARIABLE_VALUE"), np.full((64,), i))
    names = [name for shard in shards for name in _metadata(repo, f"HEAD:{shard}")["file"]["layout"]]
    assert sum("#slice-" in name for name in names) == 7 and "v0/.ATTRIBUTES/VARIABLE_VALUE" in names
    params = _metadata(repo, f"HEAD:saved/variables/variables{DATA}")["params"]
    assert params["half/.ATTRIBUTES/VARIABLE_VALUE"]["dtype"] == "BF16"
    assert "words/.ATTRIBUTES/VARIABLE_VALUE" not in params  # a string tensor stays raw bytes
    loaded = tf.saved_model.load(str(repo / "saved"))
    np.testing.assert_array_equal(loaded.weight.numpy(), np.arange(12, dtype=np.float32).reshape(3, 4))
    assert loaded.half.numpy().view(np.uint16).tolist() == [0x3FC0, 0x8000]
    assert [w.decode() for w in loaded.words.numpy()] == ["a", "bc"]


def test_data_file_without_a_matching_index_is_kept_exactly(saved: dict[str, Any], repo: Path) -> None:
    """No index: raw chunks. Another save's index: tensors whose CRC-32C differs are kept raw. A hostile index:
    ignored. Each still checks out byte for byte; only the .index itself is refused when it is not one."""
    theta(repo, "track", "*.index", "*.data-*-of-*")
    source = saved["root"] / "ckpt"
    shutil.copy(source / f"ckpt-2{DATA}", repo / f"alone{DATA}")
    shutil.copy(source / f"ckpt-2{DATA}", repo / f"stale{DATA}")
    shutil.copy(source / "ckpt-1.index", repo / "stale.index")
    shutil.copy(source / f"ckpt-1{DATA}", repo / f"hostile{DATA}")
    # a shard that starts like a safetensors file (a counter of 5, then a byte 0x7b): its name decides
    (repo / f"looks{DATA}").write_bytes((5).to_bytes(8, "little") + b'{"a": 1}' + bytes(7))
    _add_and_check_out(repo, [f"alone{DATA}", f"stale{DATA}", "stale.index", f"hostile{DATA}", f"looks{DATA}"])
    assert _metadata(repo, f"HEAD:looks{DATA}")["format"] == "tensorflow"
    alone = _metadata(repo, f"HEAD:alone{DATA}")
    assert alone["file"]["layout"] == ["@bytes/0"] and alone["params"]["@bytes/0"]["dtype"] == "U8"
    stale = _metadata(repo, f"HEAD:stale{DATA}")["params"]
    assert "model/_functional/_operations/2/bias/.ATTRIBUTES/VARIABLE_VALUE" in stale  # same bytes in both saves
    assert "model/_functional/_operations/1/bias/.ATTRIBUTES/VARIABLE_VALUE" not in stale  # trained: CRC differs
    # an index that declares a huge tensor past the end of the file: that range is raw, nothing is allocated
    huge = build_index([(b"", header_proto()), (b"big", entry_proto(1, [1 << 40], 0, 4 << 40, 0))])
    (repo / "hostile.index").write_bytes(huge)
    (repo / f"hostile{DATA}").write_bytes((source / f"ckpt-1{DATA}").read_bytes())
    assert run_bounded(["git", "add", f"hostile{DATA}"], cwd=repo).returncode == 0
    assert list(_metadata(repo, f":hostile{DATA}")["params"]) == ["@bytes/0"]
    # a pattern that also catches TensorFlow's `checkpoint` text file makes its `git add` fail clearly
    theta(repo, "track", "checkpoint")
    shutil.copy(source / "checkpoint", repo / "checkpoint")
    result = run_bounded(["git", "add", "checkpoint"], cwd=repo)
    assert "not a checkpoint git-theta can read" in assert_refused(result, names="checkpoint")
    (repo / "hostile.index").write_bytes(huge[:-3])
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", "hostile.index"], cwd=repo)
    assert "not a TensorFlow bundle index" in assert_refused(result, names="hostile.index")
    state.assert_unchanged(repo)


def test_value_merge_stops_and_redo_merges_when_git_took_the_index(tf: Any, saved: dict[str, Any], repo: Path) -> None:
    """Only theirs changed the .index (git takes it), both changed the data shard: --redo on the shard merges the
    bundle, a string tensor's CRC-32C coming from the index of the side whose bytes are kept (ours', from HEAD)."""
    theta(repo, "track", "ckpt-*")
    source = saved["root"] / "ckpt"

    def put(version: int) -> None:
        shutil.copy(source / f"ckpt-{version}.index", repo / "ckpt-1.index")
        shutil.copy(source / f"ckpt-{version}{DATA}", repo / f"ckpt-1{DATA}")

    put(1)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    put(2)
    git(repo, "commit", "-q", "-am", "trained")
    git(repo, "checkout", "-q", "main")
    edited = bytearray((source / f"ckpt-1{DATA}").read_bytes())
    edited[-1] ^= 0xFF
    (repo / f"ckpt-1{DATA}").write_bytes(bytes(edited))
    git(repo, "commit", "-q", "-am", "edited the object graph's last byte")
    git(repo, "config", "theta.merge.strategy", "average")
    result = git(repo, "merge", "-q", "other", check=False)
    assert result.returncode != 0
    expected = f"git-theta: error: ckpt-1{DATA}: TensorFlow bundle: the .index holds a CRC-32C of each tensor"
    assert expected in result.stderr
    assert git(repo, "diff", "--name-only", "--diff-filter=U").stdout == f"ckpt-1{DATA}\n"
    done = theta(repo, "merge", "--redo", f"ckpt-1{DATA}")
    # ours' index patched: theirs' trained kernel and bias and its save counter; the graph keeps ours' CRC-32C
    assert "rewrote the CRC-32C of 3 tensor(s) in ckpt-1.index" in done.stderr
    kernel = "model/_functional/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(tf.train.load_checkpoint(str(repo / "ckpt-1")).get_tensor(kernel), saved["second"][0])
    assert (repo / f"ckpt-1{DATA}").read_bytes()[-1] == edited[-1]  # ours' edit of the object graph is kept
    git(repo, "commit", "-q", "--no-edit")
    assert git(repo, "status", "--porcelain").stdout == ""


def test_committed_layout_must_name_each_group_once() -> None:
    """Checkout trusts no committed file section: a layout that repeats, omits or invents groups is refused."""
    import io

    from git_theta.checkpoints.tensorflow import TensorflowFormat
    from git_theta.errors import CheckpointError
    from git_theta.metadata import ParamEntry

    params = {"w": ParamEntry("F32", (1,), "0" * 64, ())}
    for file in (
        {"bundle": "data", "layout": ["w", "w"]},
        {"bundle": "data", "layout": []},
        {"bundle": "data", "layout": ["w", "x"]},
        {"bundle": "data", "layout": "w"},
        {"bundle": "other"},
    ):
        with pytest.raises(CheckpointError):
            TensorflowFormat().write(file, params, None, io.BytesIO())  # type: ignore[arg-type]
