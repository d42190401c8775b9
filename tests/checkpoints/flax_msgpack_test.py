"""Flax msgpack state dicts through real git, made by real flax: byte-identical checkouts, per-array groups."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import GIT_ENV, git, theta
from hostile_support import RepoState, assert_refused, run_bounded

import git_theta
from git_theta.checkpoints import flax_encode, flax_msgpack
from git_theta.checkpoints.flax_msgpack import FlaxMsgpackFormat
from git_theta.errors import CheckpointError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor

MODEL = "model.msgpack"


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.relu(nn.Dense(8)(x))
        return nn.Dense(2, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)(x)


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    """A small flax.linen model's params, initialised on a fixed key (CPU), as numpy arrays."""
    variables = _Mlp().init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    state = flax.serialization.to_state_dict(variables)
    return jax.tree_util.tree_map(np.asarray, state)  # type: ignore[no-any-return]


def _changed(params: dict[str, Any], layer: str, name: str, delta: float) -> dict[str, Any]:
    changed = jax.tree_util.tree_map(np.array, params)
    old = changed["params"][layer][name]
    changed["params"][layer][name] = (old + delta).astype(old.dtype)
    return changed  # type: ignore[no-any-return]


def _track(repo: Path, *patterns: str) -> None:
    theta(repo, "track", *patterns)
    git(repo, "commit", "-q", "-m", "track", "--", ".gitattributes")


def _objects(repo: Path) -> set[str]:
    return {path.name for path in (repo / ".git" / "lfs" / "objects").rglob("*") if path.is_file()}


def _commit(repo: Path, data: bytes, message: str) -> str:
    (repo / MODEL).write_bytes(data)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def _assert_equal_trees(loaded: Any, expected: Any) -> None:
    flat_loaded = jax.tree_util.tree_leaves_with_path(loaded)
    flat_expected = jax.tree_util.tree_leaves_with_path(expected)
    assert [path for path, _ in flat_loaded] == [path for path, _ in flat_expected]
    for (path, got), (_, want) in zip(flat_loaded, flat_expected):
        assert np.asarray(got).dtype == np.asarray(want).dtype, path
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=str(path))


def test_versions_check_out_byte_identical_and_a_changed_layer_is_the_only_new_object(
    repo: Path, params: dict[str, Any]
) -> None:
    _track(repo, "*.msgpack")
    first = flax.serialization.to_bytes(params)
    v1 = _commit(repo, first, "v1")
    metadata = git(repo, "show", f"{v1}:{MODEL}").stdout
    assert '"format":"flax"' in metadata
    for name in ("params/Dense_0/kernel", "params/Dense_0/bias", "params/Dense_1/kernel", "params/Dense_1/bias"):
        assert f'\n"{name}":' in metadata
    assert '"dtype":"BF16"' in metadata and '"shape":[4,8]' in metadata

    before = _objects(repo)
    second_params = _changed(params, "Dense_1", "kernel", 1.0)
    second = flax.serialization.to_bytes(second_params)
    v2 = _commit(repo, second, "v2: one layer changed")
    assert len(_objects(repo) - before) == 1, "only the changed layer (not the skeleton, not the others) is new"

    for commit, original, tree in ((v1, first, params), (v2, second, second_params)):
        (repo / MODEL).unlink()
        git(repo, "checkout", "-q", "--force", commit)
        rebuilt = (repo / MODEL).read_bytes()
        assert rebuilt == original
        assert git(repo, "status", "--porcelain").stdout == ""
        _assert_equal_trees(flax.serialization.from_bytes(params, rebuilt), tree)

    # The API reads the groups without a checkout, and saves a new version through write_new.
    loaded = git_theta.load(MODEL, rev=v1, repo=repo)
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    assert sorted(loaded) == sorted(flat) and all(np.array_equal(loaded[name], flat[name]) for name in flat)
    git_theta.save({**loaded, "params/Dense_0/bias": loaded["params/Dense_0/bias"] + 1}, MODEL, message="v3", repo=repo)
    saved = flax.serialization.from_bytes(params, (repo / MODEL).read_bytes())
    np.testing.assert_array_equal(saved["params"]["Dense_0"]["bias"], params["params"]["Dense_0"]["bias"] + 1)


def test_an_optax_state_and_chunked_arrays_round_trip(
    repo: Path, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _track(repo, "*.msgpack", "*.flax")
    state = optax.adam(1e-3).init(params)
    optimizer = flax.serialization.to_bytes(state)
    # flax chunks arrays above MAX_CHUNK_SIZE bytes (2**30): a smaller limit makes real chunked files of kilobytes.
    monkeypatch.setattr(flax.serialization, "MAX_CHUNK_SIZE", 64)
    tree = {"embed": np.arange(40, dtype=np.float32).reshape(5, 8), "step": np.int64(7), "meta": [1, "two", None, 2.5]}
    chunked = flax.serialization.msgpack_serialize(tree)
    (repo / "opt.msgpack").write_bytes(optimizer)
    (repo / "big.flax").write_bytes(chunked)
    git(repo, "add", "opt.msgpack", "big.flax")
    git(repo, "commit", "-q", "-m", "optimizer and chunked")
    opt_metadata = git(repo, "show", "HEAD:opt.msgpack").stdout
    assert '\n"0/count":' in opt_metadata and '\n"0/mu/params/Dense_0/kernel":' in opt_metadata
    big_metadata = git(repo, "show", "HEAD:big.flax").stdout
    assert [f'\n"embed/chunks/{i}":' in big_metadata for i in range(3)] == [True, True, True]
    for path in ("opt.msgpack", "big.flax"):
        (repo / path).unlink()
    git(repo, "checkout", "-q", "--", ".")
    assert (repo / "opt.msgpack").read_bytes() == optimizer and (repo / "big.flax").read_bytes() == chunked
    _assert_equal_trees(flax.serialization.from_bytes(state, (repo / "opt.msgpack").read_bytes()), state)
    restored = flax.serialization.msgpack_restore((repo / "big.flax").read_bytes())
    np.testing.assert_array_equal(restored["embed"], tree["embed"])
    assert restored["step"] == 7 and restored["meta"] == tree["meta"]


def test_theta_format_forces_a_file_whose_first_arrays_lie_beyond_the_sniffed_head(repo: Path) -> None:
    late = flax.serialization.msgpack_serialize({"config": "x" * 5000, "w": np.arange(3, dtype=np.float32)})
    assert not FlaxMsgpackFormat.sniff(late[:4096], "late.ckpt")
    (repo / "late.ckpt").write_bytes(late)
    _track(repo, "*.ckpt")
    assert git(repo, "add", "late.ckpt", check=False).returncode != 0  # no format claims it
    with (repo / ".gitattributes").open("a") as attributes:
        attributes.write("*.ckpt theta-format=flax\n")
    git(repo, "add", ".gitattributes", "late.ckpt")
    assert '\n"w":' in git(repo, "show", ":late.ckpt").stdout
    git(repo, "commit", "-q", "-m", "forced")
    (repo / "late.ckpt").unlink()
    git(repo, "checkout", "-q", "--", "late.ckpt")
    assert (repo / "late.ckpt").read_bytes() == late


def test_checkout_refuses_a_layout_that_does_not_fit() -> None:
    sink = _BlobSink()
    section = FlaxMsgpackFormat().read(io.BytesIO(_KERNEL), MODEL, sink)  # type: ignore[arg-type]
    params = {"kernel": ParamEntry("F32", (4,), "0" * 64, ())}

    class Source:
        def tensors(self, names: list[str]) -> Iterator[Tensor]:
            return (sink.tensors[name] for name in names)

        def get_blob(self, ref: Any) -> bytes:
            return sink.blobs[0]

    out = io.BytesIO()
    FlaxMsgpackFormat().write(section, params, Source(), out)
    assert out.getvalue() == _KERNEL
    longer = {**section, "layout": [{"raw": 1}, *section["layout"]]}
    with pytest.raises(CheckpointError, match="does not fit its skeleton"):
        FlaxMsgpackFormat().write(longer, params, Source(), io.BytesIO())
    with pytest.raises(CheckpointError, match="does not match the stored flax layout for array 'kernel'"):
        FlaxMsgpackFormat().write(section, {"kernel": ParamEntry("F32", (5,), "0" * 64, ())}, Source(), io.BytesIO())


def test_git_merge_averages_in_place(repo: Path, params: dict[str, Any]) -> None:
    _track(repo, "*.msgpack")
    _commit(repo, flax.serialization.to_bytes(params), "base")
    git(repo, "checkout", "-q", "-b", "other")
    theirs = _changed(_changed(params, "Dense_0", "kernel", 3.0), "Dense_0", "bias", 5.0)
    _commit(repo, flax.serialization.to_bytes(theirs), "theirs")
    git(repo, "checkout", "-q", "main")
    ours = _changed(params, "Dense_0", "kernel", 1.0)
    ours_bytes = flax.serialization.to_bytes(ours)
    _commit(repo, ours_bytes, "ours")
    git(repo, "config", "theta.merge.strategy", "average")
    git(repo, "merge", "-q", "other", "-m", "merge")
    assert git(repo, "status", "--porcelain").stdout == ""
    merged_bytes = (repo / MODEL).read_bytes()
    assert len(merged_bytes) == len(ours_bytes)  # values rebuilt in place: the framing is unchanged
    merged = flax.serialization.from_bytes(params, merged_bytes)["params"]
    expected = (ours["params"]["Dense_0"]["kernel"] + theirs["params"]["Dense_0"]["kernel"]) / 2
    np.testing.assert_allclose(merged["Dense_0"]["kernel"], expected, rtol=1e-6)
    assert not np.array_equal(merged["Dense_0"]["kernel"], ours["params"]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(merged["Dense_0"]["bias"], theirs["params"]["Dense_0"]["bias"])  # one side changed it
    np.testing.assert_array_equal(merged["Dense_1"]["kernel"], params["params"]["Dense_1"]["kernel"])

    # A layer added on one branch, a value changed on the other: a new skeleton, the old order, the layer appended.
    git(repo, "checkout", "-q", "-b", "wider")
    wider = _loaded(merged_bytes, params)
    wider["params"]["Dense_2"] = {"kernel": np.full((2, 3), 0.5, np.float32)}
    _commit(repo, flax.serialization.to_bytes(wider), "a third layer")
    git(repo, "checkout", "-q", "main")
    main = _changed(_loaded(merged_bytes, params), "Dense_1", "bias", 2.0)
    _commit(repo, flax.serialization.to_bytes(main), "bias")
    git(repo, "merge", "-q", "wider", "-m", "merge the wider model")
    assert git(repo, "status", "--porcelain").stdout == ""
    state = flax.serialization.msgpack_restore((repo / MODEL).read_bytes())["params"]
    assert list(state) == ["Dense_0", "Dense_1", "Dense_2"]
    np.testing.assert_array_equal(state["Dense_2"]["kernel"], wider["params"]["Dense_2"]["kernel"])
    np.testing.assert_array_equal(state["Dense_1"]["bias"], merged["Dense_1"]["bias"] + 2)


def _loaded(data: bytes, template: dict[str, Any]) -> dict[str, Any]:
    loaded = flax.serialization.from_bytes(template, data)
    return jax.tree_util.tree_map(np.array, loaded)  # type: ignore[no-any-return]


class _Sink:
    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def add(self, name: str, tensor: Tensor) -> None:
        self.tensors[name] = tensor

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return {"object": "skeleton", "size": len(data)}


def _names(data: bytes) -> dict[str, tuple[str, tuple[int, ...]]]:
    sink = _Sink()
    FlaxMsgpackFormat().read(io.BytesIO(data), MODEL, sink)  # type: ignore[arg-type]
    return {name: (tensor.dtype, tensor.shape) for name, tensor in sink.tensors.items()}


def test_names_are_escaped_key_paths_and_unreadable_leaves_stay_in_the_skeleton() -> None:
    tree = {
        "a/b": np.zeros(2, np.float32),  # a "/" inside a key cannot be confused with nesting
        "a": {"b": np.ones(2, np.float32)},
        "100%": np.zeros(1, np.int8),
        "list": [np.zeros(1, np.uint16), np.zeros(3, np.bool_)],
        "complex": np.zeros(2, np.complex64),  # no name for it: kept whole
        "scalar": np.float32(1),  # ExtType 3 (a numpy scalar): kept whole
        "f8": np.zeros(2, jnp.float8_e4m3fn),
        "": {"w": np.zeros(1, np.int32)},  # an empty key: not the same path as a top-level "w"
        "w": np.zeros(1, np.int64),
    }
    assert _names(flax.serialization.msgpack_serialize(tree)) == {
        "a%2Fb": ("F32", (2,)),
        "a/b": ("F32", (2,)),
        "100%25": ("I8", (1,)),
        "list/0": ("U16", (1,)),
        "list/1": ("BOOL", (3,)),
        "f8": ("F8_E4M3", (2,)),
        "%/w": ("I32", (1,)),
        "w": ("I64", (1,)),
    }


def test_sniff_needs_a_map_and_an_array_leaf_or_the_extension(params: dict[str, Any]) -> None:
    data = flax.serialization.to_bytes(params)
    assert FlaxMsgpackFormat.sniff(data[:4096], "weights.bin")
    big_first = flax.serialization.msgpack_serialize({"w": np.zeros(5000, np.float32)})
    assert FlaxMsgpackFormat.sniff(big_first[:4096], "checkpoint_100")  # the array's data runs past the head
    assert FlaxMsgpackFormat.sniff(b"\x80", "empty.msgpack")
    assert not FlaxMsgpackFormat.sniff(b"\x81\xa1a\x01", "plain.bin")  # a msgpack map without arrays
    assert not FlaxMsgpackFormat.sniff(b"PK\x03\x04", "model.msgpack")


def test_orbax_directory_commits_as_plain_files_and_the_documented_conversion_works(repo: Path) -> None:
    """An Orbax checkpoint is a directory of small files (docs/design.md): a `*.msgpack` pattern leaves them to
    git as they are, and the conversion docs/checkpoint-formats.md gives makes a file git-theta reads."""
    _track(repo, "*.msgpack")
    snippet = _doc_snippet()
    namespace: dict[str, Any] = {}
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        # The doc's own example, run as a reader would: saves checkpoints/step_1 with orbax, writes model.msgpack.
        exec(snippet, namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
    files = sorted(str(path.relative_to(repo)) for path in (repo / "checkpoints").rglob("*") if path.is_file())
    assert "checkpoints/step_1/_METADATA" in files and any("/d/" in name for name in files)
    originals = {name: (repo / name).read_bytes() for name in files}
    git(repo, "add", "checkpoints", MODEL)
    git(repo, "commit", "-q", "-m", "orbax + converted")
    assert git(repo, "check-attr", "filter", "checkpoints/step_1/_METADATA").stdout.endswith("unspecified\n")
    committed = git(repo, "show", "HEAD:checkpoints/step_1/_METADATA").stdout.encode()
    assert committed == originals["checkpoints/step_1/_METADATA"]
    assert '\n"params/dense/kernel":' in git(repo, "show", f"HEAD:{MODEL}").stdout
    converted = (repo / MODEL).read_bytes()
    for name in [*files, MODEL]:
        (repo / name).unlink()
    git(repo, "checkout", "-q", "--", ".")
    assert {name: (repo / name).read_bytes() for name in files} == originals
    assert (repo / MODEL).read_bytes() == converted
    restored = flax.serialization.msgpack_restore(converted)
    np.testing.assert_array_equal(restored["params"]["dense"]["kernel"], np.arange(12, dtype=np.float32).reshape(3, 4))


def _doc_snippet() -> str:
    text = (Path(__file__).parents[2] / "docs" / "checkpoint-formats.md").read_text()
    start = text.index("```python\n", text.index("### Orbax checkpoints")) + len("```python\n")
    return text[start : text.index("```", start)]


# Hostile files: each is refused at `git add` with one line naming the file, in bounded memory and time.
_KERNEL = b"\x81\xa6kernel\xc7\x1d\x01\x93\x91\x04\xa7float32\xc4\x10" + bytes(16)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "truncated inside an array": (_KERNEL[:-5], "ends early"),
    "key declares 4 GiB": (b"\x81\xdb\xff\xff\xff\xff" + b"k" * 100, "ends early"),
    "bin declares 4 GiB": (b"\x81\xa1k\xc6\xff\xff\xff\xff" + bytes(100), "ends early"),
    "array inside an ext declares 4 GiB": (
        b"\x81\xa1k\xc9\xff\xff\xff\xff\x01\x93\x91\xce\xff\xff\xff\xed\xa5uint8\xc6\xff\xff\xff\xed" + bytes(64),
        "array 'k': file ends early",
    ),
    "map declares 2^32 - 1 entries": (b"\xdf\xff\xff\xff\xff\xa1k\x01", f"limit of {flax_msgpack.MAX_MSGPACK_ITEMS}"),
    "nested 100,000 deep": (b"\x81\xa1k" + b"\x91" * 100_000 + b"\xc0", f"limit of {flax_msgpack.MAX_MSGPACK_DEPTH}"),
    "never-used byte 0xc1": (b"\x81\xa1k\xc1", "0xc1"),
    "bytes after the value": (b"\x81\xa1k\x01\x00", "bytes after its msgpack value"),
}


@pytest.fixture(scope="module")
def hostile_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One repository for every hostile case: each `git add` is refused, leaving it as it was."""
    root = tmp_path_factory.mktemp("flax-hostile")
    env = {**os.environ, **GIT_ENV, "HOME": str(root), "XDG_CONFIG_HOME": str(root / ".config")}
    path = root / "repo"
    path.mkdir()
    for command in (["git", "init", "-q"], ["git-theta", "install", "--local"], ["git-theta", "track", "*.msgpack"]):
        subprocess.run(command, cwd=path, env=env, check=True, capture_output=True)
    yield path


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_is_refused_at_add(hostile_repo: Path, name: str) -> None:
    data, reason = HOSTILE[name]
    (hostile_repo / MODEL).write_bytes(data)
    state = RepoState.capture(hostile_repo)
    result = run_bounded(["git", "add", MODEL], cwd=hostile_repo, max_rss_mb=300, max_seconds=30)
    line = assert_refused(result, MODEL)
    assert reason in line, line
    state.assert_unchanged(hostile_repo)


def test_array_headers_that_lie_keep_the_leaf_whole() -> None:
    """A shape or a bin length that does not fit the payload is not an array git-theta reads: no group, exact bytes."""
    huge_shape = b"\x81\xa1w\xc7\x25\x01\x93\x91\xcf\x00\x00\x01\x00\x00\x00\x00\x00\xa7float32\xc4\x10" + bytes(16)
    short_bin = b"\x81\xa1w\xc7\x1d\x01\x93\x91\x04\xa7float32\xc4\x08" + bytes(16)
    unknown_dtype = b"\x81\xa1w\xc7\x1e\x01\x93\x91\x04\xa8float128\xc4\x10" + bytes(16)
    assert _names(_KERNEL) == {"kernel": ("F32", (4,))}
    for data in (huge_shape, short_bin, unknown_dtype):
        assert _names(data) == {}


def test_write_new_writes_what_flax_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {
        "params/Dense_0/kernel": np.arange(300 * 2, dtype=np.float32).reshape(300, 2),  # a dimension >= 128
        "params/Dense_0/bias": np.zeros(2, jnp.bfloat16),
        "params/a/b%2Fc": np.ones(6, np.int8),  # a 16-byte payload (fixext 16); the key is "b/c"
        "%/z": np.zeros(2, np.int16),  # the empty key
        "step": np.array(70000, np.int64),
        "embed/" + "e" * 40: np.arange(24, dtype=np.uint16),  # a str8 key; chunked below
        **{f"many/{i:02d}": np.array([i], np.uint8) for i in range(17)},  # a map16
    }
    tensors = {name: Tensor.from_numpy(array) for name, array in arrays.items()}
    monkeypatch.setattr(flax_encode, "FLAX_CHUNK_BYTES", 16)
    monkeypatch.setattr(flax.serialization, "MAX_CHUNK_SIZE", 16)
    nested: dict[str, Any] = {}
    for name in sorted(arrays):
        *parents, leaf = ["" if part == "%" else part.replace("%2F", "/") for part in name.split("/")]
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = arrays[name]
    out = io.BytesIO()
    FlaxMsgpackFormat().write_new(tensors, out)  # type: ignore[arg-type]
    assert out.getvalue() == flax.serialization.msgpack_serialize(nested)
    names = _names(out.getvalue())
    assert names["params/a/b%2Fc"] == ("I8", (6,)) and names["embed/" + "e" * 40 + "/chunks/2"] == ("U16", (8,))
    with pytest.raises(CheckpointError, match="lies under another parameter"):
        clash = {"a": tensors["step"], "a/b": tensors["step"]}
        FlaxMsgpackFormat().write_new(clash, io.BytesIO())  # type: ignore[arg-type]


class _BlobSink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.blobs: list[bytes] = []

    def put_blob(self, data: bytes) -> dict[str, Any]:
        self.blobs.append(data)
        return {"object": "0" * 64, "size": len(data)}


def test_file_section_golden_bytes() -> None:
    """The file section and skeleton of a fixed file (docs/checkpoint-formats.md, "Flax / JAX"), byte for byte."""
    w = b"\xc7\x1d\x01\x93\x91\x04\xa7float32\xc4\x10" + bytes(range(16))
    b = b"\xd8\x01\x93\x91\x06\xa4int8\xc4\x06" + bytes(6)  # fixext 16
    data = b"\x82\xa1a\x81\xa1w" + w + b"\xa1b" + b
    sink = _BlobSink()
    section = FlaxMsgpackFormat().read(io.BytesIO(data), MODEL, sink)  # type: ignore[arg-type]
    assert json.dumps(section, separators=(",", ":")) == (
        '{"layout":[{"raw":22},{"array":"a/w","bytes":16},{"raw":14},{"array":"b","bytes":6},{"raw":0}],'
        '"skeleton":{"object":"' + "0" * 64 + '","size":36}}'
    )
    assert sink.blobs == [b"\x82\xa1a\x81\xa1w" + w[:-16] + b"\xa1b" + b[:-6]]
    assert {name: (t.dtype, t.shape, bytes(t.data)) for name, t in sink.tensors.items()} == {
        "a/w": ("F32", (4,), bytes(range(16))),
        "b": ("I8", (6,), bytes(6)),
    }


def test_item_array_and_name_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The running limits, lowered so that small files reach them (the real values are checked against the docs)."""
    tree = {"x": list(range(15)), "w": np.zeros(1, np.int8), "v": np.ones(1, np.int8)}
    many = flax.serialization.msgpack_serialize(tree)
    monkeypatch.setattr(flax_msgpack, "MAX_MSGPACK_ITEMS", 20)
    with pytest.raises(flax_msgpack.LimitError, match="more than the limit of 20 msgpack items"):
        _names(many)
    monkeypatch.setattr(flax_msgpack, "MAX_MSGPACK_ITEMS", 1000)
    monkeypatch.setattr(flax_msgpack, "MAX_FLAX_ARRAYS", 1)
    with pytest.raises(flax_msgpack.LimitError, match="more than the limit of 1 arrays"):
        _names(many)
    monkeypatch.setattr(flax_msgpack, "MAX_FLAX_ARRAYS", 10)
    monkeypatch.setattr(flax_msgpack, "MAX_FLAX_NAME_BYTES", 4)
    nested = {"ab": {"c": np.zeros(1, np.int8), "cd": np.zeros(1, np.int8)}, "abcde": np.zeros(1, np.int8)}
    assert _names(flax.serialization.msgpack_serialize(nested)) == {"ab/c": ("I8", (1,))}  # longer names: skeleton
    # Checkout refuses a blob above objects.MAX_BLOB_BYTES, so the add refuses a skeleton above it.
    monkeypatch.setattr(flax_msgpack, "MAX_BLOB_BYTES", 100)
    with pytest.raises(flax_msgpack.LimitError, match="not array data exceed"):
        _names(flax.serialization.msgpack_serialize({"config": "x" * 200, "w": np.zeros(1, np.int8)}))
    assert _names(flax.serialization.msgpack_serialize({"w": np.zeros(1000, np.int8)})) == {"w": ("I8", (1000,))}


def test_a_new_set_of_arrays_gets_a_new_skeleton_only_in_a_plain_state_dict(params: dict[str, Any]) -> None:
    class Store:
        def __init__(self, data: bytes) -> None:
            self.sink = _BlobSink()
            self.section = FlaxMsgpackFormat().read(io.BytesIO(data), MODEL, self.sink)  # type: ignore[arg-type]
            self.entries = {n: ParamEntry(t.dtype, t.shape, t.hash(), ()) for n, t in self.sink.tensors.items()}

        def tensors(self, names: list[str]) -> Iterator[Tensor]:
            return (self.sink.tensors[name] for name in names)

        def get_blob(self, ref: Any) -> bytes:
            return self.sink.blobs[0]

        def arguments(self) -> tuple[Any, ...]:
            """file_for_params' arguments for removing every array."""
            return self.section, self.entries, {}, self, self.sink

    store = Store(flax.serialization.to_bytes(params))
    extra = Tensor.from_numpy(np.arange(4, dtype=np.int32))
    store.sink.tensors["params/Dense_0/extra"] = extra
    after = {**store.entries, "params/Dense_0/extra": ParamEntry("I32", (4,), extra.hash(), ())}
    del after["params/Dense_1/bias"]
    fmt = FlaxMsgpackFormat()
    section = fmt.file_for_params(store.section, store.entries, after, store, store.sink)  # type: ignore[arg-type]
    out = io.BytesIO()
    FlaxMsgpackFormat().write(section, after, _Replay(store.sink, section), out)  # type: ignore[arg-type]
    expected = flax.serialization.msgpack_restore(flax.serialization.to_bytes(params))  # in file order
    expected["params"]["Dense_0"]["extra"] = np.arange(4, dtype=np.int32)
    del expected["params"]["Dense_1"]["bias"]
    # What flax writes for that state dict, in its order (msgpack_serialize would sort the keys; to_bytes does not).
    assert out.getvalue() == flax.serialization.msgpack_serialize(expected, in_place=True)

    with_step = Store(flax.serialization.msgpack_serialize({"w": np.zeros(2, np.float32), "step": 3}))
    with pytest.raises(CheckpointError, match="holds more than nested maps of arrays"):
        fmt.file_for_params(*with_step.arguments())  # type: ignore[arg-type]


class _Replay:
    """A source over a sink whose last blob is the skeleton a section refers to."""

    def __init__(self, sink: _BlobSink, section: dict[str, Any]) -> None:
        self.sink = sink

    def tensors(self, names: list[str]) -> Iterator[Tensor]:
        return (self.sink.tensors[name] for name in names)

    def get_blob(self, ref: Any) -> bytes:
        return self.sink.blobs[-1]
