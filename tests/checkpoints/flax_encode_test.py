"""The Flax msgpack encoder: its plan is what the reader finds in the file flax writes."""

from __future__ import annotations

import io
from typing import Any

import flax.serialization
import numpy as np
import pytest

from git_theta.checkpoints import flax_encode
from git_theta.checkpoints.flax_msgpack import FlaxMsgpackFormat
from git_theta.errors import CheckpointError
from git_theta.tensor import Tensor


class _Sink:
    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.blobs: list[bytes] = []

    def add(self, name: str, tensor: Tensor) -> None:
        self.tensors[name] = tensor

    def put_blob(self, data: bytes) -> dict[str, Any]:
        self.blobs.append(data)
        return {"object": "0" * 64, "size": len(data)}


def test_plan_is_what_the_reader_finds_in_flax_s_own_file() -> None:
    state = {
        "params": {"b": {"x": np.zeros((200, 3), np.float16)}, "a": np.arange(5, dtype=np.uint8)},
        "z": np.ones(()),
    }
    data = flax.serialization.to_bytes(state)  # insertion order, not sorted
    sink = _Sink()
    section = FlaxMsgpackFormat().read(io.BytesIO(data), "m.msgpack", sink)  # type: ignore[arg-type]
    order = [segment["array"] for segment in section["layout"] if "array" in segment]
    assert order == ["params/b/x", "params/a", "z"]
    assert flax_encode.plan(sink.tensors, order) == (sink.blobs[0], section["layout"])


def test_plan_refuses_what_it_cannot_write_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    leaves = {"w": Tensor.from_numpy(np.zeros(8, np.float32))}
    monkeypatch.setattr(flax_encode, "FLAX_CHUNK_BYTES", 16)
    with pytest.raises(CheckpointError, match="larger than flax writes unchunked"):
        flax_encode.plan(leaves, ["w"])
    with pytest.raises(CheckpointError, match="also the parent of others"):
        flax_encode.nested({"a/b": leaves["w"], "a": leaves["w"]}, ["a/b", "a"])
