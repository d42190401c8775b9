"""The PyTorch structure tree on its own: every value type it names survives a JSON round trip exactly."""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict
from typing import Any

import pytest
import torch

from git_theta.checkpoints.pytorch.tree import decode_tree, encode_tree
from git_theta.errors import CheckpointError


def _round_trip(obj: Any) -> tuple[Any, Any]:
    tree, tensors = encode_tree(obj, torch)
    tree = json.loads(json.dumps(tree))  # what the metadata file holds
    return tree, decode_tree(tree, {node.name: node.tensor for node in tensors}, torch)


def test_values_and_container_types_survive() -> None:
    obj = OrderedDict(
        [
            ("z", Counter({"b": 2, "a": 1})),
            (3, {(1, "x"): [None, True, 1 << 70, -0.0, math.inf, 1e-300]}),
            (2.5, {"set": {3, 1, 2}, "complex": complex(1.5, -0.0), "bytes": b"\x00\xff", "ba": bytearray(b"xy")}),
            ("torch", [torch.Size([2, 3]), torch.bfloat16, torch.device("cpu")]),
        ]
    )
    _, back = _round_trip(obj)
    assert type(back) is OrderedDict and list(back) == ["z", 3, 2.5, "torch"]
    assert type(back["z"]) is Counter and list(back["z"].items()) == [("b", 2), ("a", 1)]
    assert repr(back[3]) == repr(obj[3])
    assert back[2.5] == obj[2.5] and type(back[2.5]["ba"]) is bytearray
    assert math.copysign(1, back[2.5]["complex"].imag) == -1
    assert back["torch"] == obj["torch"] and type(back["torch"][0]) is torch.Size


def test_nan_payload_of_a_python_float_survives() -> None:
    payload = 0x7FF8000000000123
    import struct

    nan = struct.unpack(">d", payload.to_bytes(8, "big"))[0]
    tree, back = _round_trip([nan])
    assert tree == {"list": [{"float_bits": "7ff8000000000123"}]}
    assert struct.pack(">d", back[0]) == payload.to_bytes(8, "big")


def test_names_are_dotted_paths_and_unique() -> None:
    t = torch.ones(1)
    obj = {"a.b": t, "a": {"b": torch.zeros(1)}, 0: [torch.ones(2)], "0": {"x": torch.ones(3)}, "same": t}
    tree, tensors = encode_tree(obj, torch)
    assert [node.name for node in tensors] == ["a.b", "a.b#2", "0.0", "0.x"]
    assert tree["dict"][-1] == [{"str": "same"}, {"same": "a.b"}]
    _, root = encode_tree(torch.ones(2), torch)
    assert [node.name for node in root] == ["tensor"]


def test_unsupported_values_name_their_path() -> None:
    with pytest.raises(CheckpointError, match=r"^model\.x: values of type object are not supported"):
        encode_tree({"model": {"x": object()}}, torch)
