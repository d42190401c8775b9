"""Property-based fuzzing of the ONNX readers (git_theta/checkpoints/onnx.py): the model reader returns or raises
CheckpointError and round-trips what it accepts; the external-data reader never fails, whatever the sibling model
says, and always rebuilds the data file exactly. Budget in fuzz_support."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import pytest
from fuzz_support import FUZZ, bounded_parse, mutated
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from git_theta.checkpoints.onnx import OnnxDataFormat, OnnxFormat
from git_theta.errors import CheckpointError, ThetaError
from git_theta.metadata import ParamEntry
from git_theta.tensor import Tensor


class MemorySink:
    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.blobs: list[bytes] = []

    def add(self, name: str, tensor: Tensor) -> None:
        assert name not in self.tensors, f"tensor {name!r} read twice"
        self.tensors[name] = Tensor(tensor.dtype, tensor.shape, bytes(tensor.data))

    def put_blob(self, data: bytes) -> dict[str, Any]:
        self.blobs.append(bytes(data))
        return {"object": len(self.blobs) - 1}

    def tensors_for(self, names: Sequence[str]) -> Iterator[Tensor]:
        return (self.tensors[name] for name in names)

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return self.blobs[ref["object"]]


class MemorySource:
    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        return self.sink.tensors_for(names)

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return self.sink.get_blob(ref)


def _model(external: bool) -> bytes:
    """A small real model: initializers, an If with a subgraph initializer, a Constant, a typed tensor."""
    rng = np.random.default_rng(0)
    then_graph = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["z1"])],
        "then",
        [],
        [helper.make_tensor_value_info("z1", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.arange(3, dtype=np.float32), "c")],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["b"], ["z2"])],
        "else",
        [],
        [helper.make_tensor_value_info("z2", TensorProto.FLOAT, [3])],
    )
    nodes = [
        helper.make_node("If", ["cond"], ["z"], then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([7], dtype=np.int64))),
    ]
    initializers = [
        numpy_helper.from_array(rng.normal(size=(4, 5)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=3).astype(np.float16).astype(np.float32), "b"),
        numpy_helper.from_array(np.array(True), "cond"),
        helper.make_tensor("t", TensorProto.INT32, [2], [1, 2]),
    ]
    output = helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])
    graph = helper.make_graph(nodes, "g", [], [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.external_data_helper.convert_model_to_external_data(model, location="m.data", size_threshold=8)
    return model.SerializeToString()


INLINE = _model(external=False)
EXTERNAL = _model(external=True)


def _read_model(data: bytes) -> None:
    def run() -> tuple[MemorySink, dict[str, Any]]:
        sink = MemorySink()
        return sink, OnnxFormat().read(io.BytesIO(data), "m.onnx", sink)

    outcome = bounded_parse(run, len(data))
    if isinstance(outcome, ThetaError):
        assert isinstance(outcome, CheckpointError) and "\n" not in str(outcome), repr(outcome)
        return
    _assert_round_trip(OnnxFormat(), *outcome, data)


def _assert_round_trip(fmt: OnnxFormat | OnnxDataFormat, sink: MemorySink, file: dict[str, Any], data: bytes) -> None:
    params = {name: ParamEntry(t.dtype, t.shape, "0" * 64, ()) for name, t in sink.tensors.items()}
    out = io.BytesIO()
    fmt.write(file, params, MemorySource(sink), out)
    assert out.getvalue() == data


@FUZZ
@given(st.data())
def test_mutated_models_read_or_checkpoint_error(data: st.DataObject) -> None:
    _read_model(data.draw(mutated(data.draw(st.sampled_from([INLINE, EXTERNAL])))))


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_read_or_checkpoint_error(data: bytes) -> None:
    _read_model(data)


@FUZZ
@given(data=st.data())
def test_a_data_file_never_fails_and_always_round_trips(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Whatever the sibling .onnx declares (mutated offsets, lengths, types) and however long the data file is."""
    folder = tmp_path_factory.mktemp("sibling")
    (folder / "m.onnx").write_bytes(data.draw(mutated(EXTERNAL)))
    payload = data.draw(st.binary(max_size=400))
    sink = MemorySink()
    file = OnnxDataFormat().read(io.BytesIO(payload), str(folder / "m.data"), sink)
    _assert_round_trip(OnnxDataFormat(), sink, file, payload)
