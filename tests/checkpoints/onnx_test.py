"""ONNX models through real git: built with onnx, checked out byte for byte, loaded again with onnx.load + checker."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import git, theta
from hostile_support import RepoState, assert_refused, run_bounded
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from git_theta.checkpoints.onnx import (
    MAX_GRAPH_DEPTH,
    MAX_TENSORS,
    OnnxDataFormat,
    OnnxFormat,
)
from git_theta.clean import StoringSink
from git_theta.metadata import Metadata
from git_theta.smudge import smudge
from git_theta.store import ObjectStore


def _weights(seed: int, n: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(size=(n, n)).astype(np.float32),
        "B": rng.normal(size=n).astype(np.float32),
        "H": rng.normal(size=n).astype(np.float16),
        "then_c": np.arange(n, dtype=np.float32),
    }


def _model(weights: dict[str, np.ndarray[Any, Any]]) -> onnx.ModelProto:
    """MatMul + Add, an If whose then-branch has its own initializer, a typed (float_data) and a bool initializer,
    a Constant node and a sparse initializer."""
    n = weights["B"].shape[0]
    vector = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n]) for name in ("Z1", "Z2", "Z")]
    then_graph = helper.make_graph(
        [helper.make_node("Add", ["Y", "then_c"], ["Z1"])],
        "then",
        [],
        [vector[0]],
        [numpy_helper.from_array(weights["then_c"], "then_c")],
    )
    else_graph = helper.make_graph([helper.make_node("Identity", ["Y"], ["Z2"])], "else", [], [vector[1]])
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["XW"]),
        helper.make_node("Add", ["XW", "B"], ["Y"]),
        helper.make_node("If", ["cond"], ["Z"], then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Constant", [], ["C"], value=numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int32))),
    ]
    initializers = [numpy_helper.from_array(weights[name], name) for name in ("W", "B", "H")]
    initializers.append(helper.make_tensor("T", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))  # in float_data, not raw_data
    initializers.append(numpy_helper.from_array(np.array(True), "cond"))
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([5, 6], dtype=np.float32), "S"),
        numpy_helper.from_array(np.array([1, 3], dtype=np.int64)),
        [4],
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])],
        [vector[2]],
        initializers,
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, producer_name="git-theta-test", opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _arrays(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    branch = next(a.g for a in model.graph.node[2].attribute if a.name == "then_branch")
    found.update({t.name: numpy_helper.to_array(t) for t in branch.initializer})
    return found


def _assert_arrays(path: Path, weights: dict[str, np.ndarray[Any, Any]]) -> None:
    loaded = _arrays(path)
    for name, array in weights.items():
        assert loaded[name].dtype == array.dtype and loaded[name].tobytes() == array.tobytes(), name


def _objects(repo: Path) -> frozenset[str]:
    return RepoState.capture(repo).objects


@pytest.fixture
def onnx_repo(repo: Path) -> Path:
    theta(repo, "track", "*.onnx", "*.data")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "track onnx")
    return repo


def test_inline_model_round_trips_and_a_changed_initializer_stores_only_itself(onnx_repo: Path) -> None:
    repo, first = onnx_repo, _weights(1, 8)
    onnx.save_model(_model(first), str(repo / "model.onnx"))
    original = (repo / "model.onnx").read_bytes()
    git(repo, "add", "model.onnx")
    git(repo, "commit", "-q", "-m", "v1")
    shown = git(repo, "show", "HEAD:model.onnx").stdout
    assert '"format":"onnx"' in shown and '"kept":1' in shown  # T lives in float_data: kept in the skeleton
    for name in ("W", "B", "H", "then_c", "cond", "C.value", "S", "S.indices"):  # C.value: the Constant's tensor
        assert f'\n"{name}":' in shown, name
    before = _objects(repo)
    second = {**first, "W": first["W"] * 2}
    onnx.save_model(_model(second), str(repo / "model.onnx"))
    changed = (repo / "model.onnx").read_bytes()
    git(repo, "add", "model.onnx")
    git(repo, "commit", "-q", "-m", "v2")
    assert len(_objects(repo) - before) == 1  # the new W; the skeleton and every other tensor are the same objects
    for commit, data in (("HEAD~1", original), ("HEAD", changed)):
        (repo / "model.onnx").unlink()
        git(repo, "checkout", "-q", commit, "--", "model.onnx")
        assert (repo / "model.onnx").read_bytes() == data
    _assert_arrays(repo / "model.onnx", second)
    git(repo, "reset", "-q", "--hard", "HEAD")
    assert git(repo, "status", "--porcelain").stdout == ""


def _save_external(repo: Path, weights: dict[str, np.ndarray[Any, Any]], location: str = "model.data") -> None:
    (repo / location).unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(
        _model(weights),
        str(repo / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=64,
    )


def test_external_data_round_trips_without_the_sibling_and_stores_one_tensor_per_change(onnx_repo: Path) -> None:
    repo, first = onnx_repo, _weights(2, 32)
    _save_external(repo, first)
    originals = {name: (repo / name).read_bytes() for name in ("model.onnx", "model.data")}
    git(repo, "add", "model.onnx", "model.data")
    git(repo, "commit", "-q", "-m", "v1")
    data = git(repo, "show", "HEAD:model.data").stdout
    assert '"format":"onnx-data"' in data and '"described":true' in data
    for name in ("W", "B", "H", "then_c"):  # then_c is in the If's then-branch
        assert f'\n"{name}":' in data, name
    assert '"external":4' in git(repo, "show", "HEAD:model.onnx").stdout
    before = _objects(repo)
    second = {**first, "B": first["B"] + 1}
    _save_external(repo, second)
    assert (repo / "model.onnx").read_bytes() == originals["model.onnx"]  # the offsets did not move
    git(repo, "add", "model.onnx", "model.data")
    git(repo, "commit", "-q", "-m", "v2")
    assert len(_objects(repo) - before) == 1  # only the new B
    (repo / "model.onnx").unlink()
    (repo / "model.data").unlink()
    git(repo, "checkout", "-q", "HEAD~1", "--", "model.data")  # the sibling is not there: checkout needs only metadata
    assert (repo / "model.data").read_bytes() == originals["model.data"]
    git(repo, "checkout", "-q", "HEAD~1", "--", "model.onnx")
    assert (repo / "model.onnx").read_bytes() == originals["model.onnx"]
    _assert_arrays(repo / "model.onnx", first)
    git(repo, "reset", "-q", "--hard", "HEAD")
    _assert_arrays(repo / "model.onnx", second)
    assert git(repo, "status", "--porcelain").stdout == ""


def test_a_data_file_no_model_describes_is_stored_in_chunks_exactly(onnx_repo: Path) -> None:
    """No sibling, or one that is not a model: never a failure, the bytes go into U8 chunks."""
    repo = onnx_repo
    blob = np.random.default_rng(3).bytes(3000)
    (repo / "lonely.onnx.data").write_bytes(blob)  # a name onnx-data claims without a sibling
    (repo / "broken.onnx").write_bytes(b"\x3a\xff\xff")  # graph field declaring more bytes than there are
    (repo / "broken.data").write_bytes(blob[:100])
    git(repo, "add", "lonely.onnx.data", "broken.data")
    for name, size in (("lonely.onnx.data", 3000), ("broken.data", 100)):
        shown = git(repo, "show", f":{name}").stdout
        assert '"format":"onnx-data"' in shown and '"described":false' in shown
        chunk = next(line for line in shown.splitlines() if line.startswith('"bytes@0":'))
        assert '"dtype":"U8"' in chunk and f'"shape":[{size}]' in chunk
    (repo / "lonely.onnx.data").unlink()
    git(repo, "checkout", "--", "lonely.onnx.data")
    assert (repo / "lonely.onnx.data").read_bytes() == blob


def test_theta_format_forces_onnx_for_other_names(onnx_repo: Path) -> None:
    """Without the .onnx name the sniff says no (protobuf has no magic); the attribute forces the format."""
    repo = onnx_repo
    with (repo / ".gitattributes").open("a") as attributes:
        attributes.write("*.pb filter=theta diff=theta merge=theta theta-format=onnx\n")
        attributes.write("*.weights filter=theta diff=theta merge=theta theta-format=onnx-data\n")
    onnx.save_model(_model(_weights(5, 4)), str(repo / "net.pb"))
    (repo / "net.weights").write_bytes(bytes(range(256)))
    originals = {name: (repo / name).read_bytes() for name in ("net.pb", "net.weights")}
    git(repo, "add", "net.pb", "net.weights")
    assert '"format":"onnx"' in git(repo, "show", ":net.pb").stdout
    assert '"format":"onnx-data"' in git(repo, "show", ":net.weights").stdout
    for name, data in originals.items():
        (repo / name).unlink()
        git(repo, "checkout", "--", name)
        assert (repo / name).read_bytes() == data, name


def _padded_external(folder: Path, data_size: int | None = None) -> bytes:
    """model.onnx whose two external tensors sit at 4096-aligned offsets of model.data (padding between them),
    as the onnx loader accepts; returns the data bytes (cut to `data_size` if given: a file shorter than declared)."""
    a, b = np.arange(10, dtype=np.float32), np.arange(6, dtype=np.int64)
    data = a.tobytes() + bytes(4096 - a.nbytes) + b.tobytes() + bytes(7)  # 7 trailing bytes no tensor claims
    tensors = [numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b")]
    for tensor, offset in zip(tensors, (0, 4096)):
        external_data_helper.set_external_data(tensor, "model.data", offset, len(tensor.raw_data))
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10])],
        tensors,
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx"))
    data = data[:data_size] if data_size is not None else data
    (folder / "model.data").write_bytes(data)
    return data


def _clean_and_smudge(store: ObjectStore, path: Path) -> tuple[Metadata, bytes]:
    sink = StoringSink(store, [])
    section = OnnxDataFormat().read(io.BytesIO(path.read_bytes()), str(path), sink)
    meta = Metadata("onnx-data", section, sink.finish())
    out = io.BytesIO()
    smudge(store, path.name, meta.serialize(), out)
    return meta, out.getvalue()


def test_data_file_gaps_go_to_the_skeleton_and_a_short_file_to_a_chunk(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    data = _padded_external(tmp_path)
    loaded = onnx.load(str(tmp_path / "model.onnx"))
    assert numpy_helper.to_array(loaded.graph.initializer[1]).tolist() == list(range(6))  # the layout is onnx's own
    meta, rebuilt = _clean_and_smudge(store, tmp_path / "model.data")
    assert rebuilt == data and meta.file["described"] is True
    layout = [{"tensor": "a", "bytes": 40}, {"raw": 4056}, {"tensor": "b", "bytes": 48}]
    layout.append({"tensor": "bytes@4144", "bytes": 7})
    assert meta.file["layout"] == layout  # padding in the skeleton; bytes after the last tensor: a chunk
    assert (meta.params["a"].dtype, meta.params["a"].shape, meta.params["b"].dtype) == ("F32", (10,), "I64")
    short = _padded_external(tmp_path, data_size=4096 + 20)  # ends inside b
    meta, rebuilt = _clean_and_smudge(store, tmp_path / "model.data")
    assert rebuilt == short and set(meta.params) == {"a", "bytes@4096"} and meta.params["bytes@4096"].shape == (20,)


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_git_merge_of_different_initializers_gives_a_valid_model(onnx_repo: Path, external: bool) -> None:
    """Inline, the merge driver averages inside model.onnx; with external data, inside model.data (the .onnx
    is the same on both branches)."""
    repo, base = onnx_repo, _weights(4, 8)

    def commit(weights: dict[str, np.ndarray[Any, Any]], message: str) -> None:
        if external:
            _save_external(repo, weights)
        else:
            onnx.save_model(_model(weights), str(repo / "model.onnx"))
        git(repo, "add", "model.onnx", *(["model.data"] if external else []))
        git(repo, "commit", "-q", "-m", message)

    commit(base, "base")
    git(repo, "checkout", "-q", "-b", "other")
    theirs = {**base, "B": base["B"] * 3, "then_c": base["then_c"] + 4}
    commit(theirs, "theirs")
    git(repo, "checkout", "-q", "main")
    ours = {**base, "W": base["W"] * 5, "then_c": base["then_c"] + 2}
    commit(ours, "ours")
    git(repo, "config", "theta.merge.strategy", "average")
    git(repo, "merge", "-q", "other", "-m", "merge")
    assert git(repo, "status", "--porcelain").stdout == ""
    merged = _arrays(repo / "model.onnx")  # onnx.checker accepts it
    assert merged["W"].tobytes() == ours["W"].tobytes() and merged["B"].tobytes() == theirs["B"].tobytes()
    np.testing.assert_array_equal(merged["then_c"], base["then_c"] + 3)  # both changed it: averaged
    assert merged["H"].tobytes() == base["H"].tobytes()
    if external:
        assert '"format":"onnx-data"' in git(repo, "show", "HEAD:model.data").stdout


def test_sniff() -> None:
    buffer = io.BytesIO()
    onnx.save_model(_model(_weights(0, 2)), buffer)
    head = buffer.getvalue()[:4096]
    assert OnnxFormat.sniff(head, "m.onnx") and OnnxFormat.sniff(head, "DIR/M.ONNX")
    assert not OnnxFormat.sniff(head, "m.bin")  # protobuf has no magic: the name is needed (or theta-format=onnx)
    assert not OnnxFormat.sniff(b"\x10\x00\x00\x00{}", "m.onnx")  # field 2 as a varint: not a ModelProto
    assert not OnnxFormat.sniff(b"PK\x03\x04" + bytes(30), "m.onnx") and not OnnxFormat.sniff(b"", "m.onnx")
    assert OnnxDataFormat.sniff(b"", "m.onnx.data") and OnnxDataFormat.sniff(b"", "m.onnx_data")
    assert not OnnxDataFormat.sniff(b"", "no-such-dir/m.data")  # a .data file only beside its .onnx


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor_model(dims: list[int], raw: bytes, data_type: int = 1) -> bytes:
    tensor = b"".join(_field(1, d & ((1 << 64) - 1)) for d in dims)  # int64 dims: negative ones as 10-byte varints
    tensor += _field(2, data_type) + _field(8, b"w") + _field(9, raw)
    return _field(1, 8) + _field(7, _field(5, tensor))


def _nested(depth: int) -> bytes:
    graph = b""
    for _ in range(depth):
        graph = _field(1, _field(5, _field(6, graph)))  # node.attribute.g
    return _field(1, 8) + _field(7, graph)


HOSTILE: dict[str, tuple[bytes, str]] = {
    "truncated": (_tensor_model([4], bytes(16))[:-5], "declares 27 bytes, its message has 22 left (truncated?)"),
    "length past the end": (_field(1, 8) + b"\x3a" + _varint(1 << 40) + bytes(10), "declares 1099511627776"),  # graph
    "11-byte varint": (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
    "varint over 64 bits": (b"\x08" + b"\xff" * 9 + b"\x7f", "does not fit 64 bits"),
    "wire type 3 in the graph": (_field(1, 8) + _field(7, b"\x0b"), "wire type 3"),
    "subgraphs too deep": (_nested(MAX_GRAPH_DEPTH + 1), f"nest more than the limit of {MAX_GRAPH_DEPTH}"),
    "huge declared dims": (_tensor_model([1 << 40, 1 << 40], bytes(16)), "exceeds"),
    "negative dim": (_tensor_model([-4], bytes(16)), "invalid shape"),
    "65 dims": (_tensor_model([1] * 65, bytes(4)), "more than 64 dimensions"),
    "raw_data shorter than dims": (_tensor_model([4], bytes(12)), "raw_data has 12 bytes, F32[4] needs 16"),
    "too many tensors": (_field(1, 8) + _field(7, _field(5, b"") * (MAX_TENSORS + 1)), f"of {MAX_TENSORS} tensors"),
}


def test_hostile_models_are_refused_at_add(onnx_repo: Path) -> None:
    repo = onnx_repo
    for case, (data, reason) in HOSTILE.items():
        (repo / "model.onnx").write_bytes(data)
        state = RepoState.capture(repo)
        result = run_bounded(["git", "add", "model.onnx"], cwd=repo, max_rss_mb=300, max_seconds=30)
        line = assert_refused(result, "model.onnx")
        assert "cannot read as onnx" in line and reason in line, f"{case}: {line}"
        state.assert_unchanged(repo)
