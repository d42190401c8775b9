"""The JSON structure tree of a loaded PyTorch checkpoint, and back.

Every node is a one-key object naming its type, so types survive exactly:

    {"dict": [[key, value], ...]}   also "odict" (OrderedDict) and "counter"; pairs keep their order
    {"list": [...]}  {"tuple": [...]}  {"set": [...]} (set members sorted by their JSON, sets have no order)
    {"str": "x"}  {"int": 3}  {"bool": true}  {"none": null}
    {"float": 0.5} for finite floats (JSON round-trips them exactly), {"float_bits": "7ff8..."} otherwise
    {"complex": [re, im]} (each as a float node), {"bytes": base64}, {"bytearray": base64}
    {"size": [2, 3]} (torch.Size)  {"dtype": "float32"}  {"device": "cpu"}
    {"tensor": name, ...}           a tensor; `name` is its parameter group unless "storage" is set:
        "storage", "dtype", "offset", "shape", "stride": a view into parameter group `storage`
        "parameter": true (torch.nn.Parameter), "requires_grad": bool
    {"same": name}                  the very same tensor object as the earlier node `name`

Names are the dotted path of keys and indexes from the root (`model.layer.0.weight`);
a root tensor is named `tensor`; a name already taken gets `#2`, `#3`, ...
The tree, not the name, says where a tensor lives, so any key is safe.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from git_theta.checkpoints.base import LimitError
from git_theta.errors import CheckpointError

# Limits on the loaded object (docs/formats.md, "Checkpoint files"), checked before its tree is built: containers
# inside containers (a state dict nests 2-6 deep), the tree's nodes, and the nodes that copies of shared
# containers add: the tree copies a container the pickle shares to every place it appears, so 20 levels of
# `a = [a, a]` (1.7 KB of pickle) would be 2^21 nodes, 160 s and 1 GB. A state dict shares no containers.
MAX_DEPTH = 32
MAX_NODES = 4_000_000
MAX_COPIED_NODES = 100_000

_DICT_TYPES: dict[type, str] = {dict: "dict", OrderedDict: "odict", Counter: "counter"}
_SEQUENCE_TYPES: dict[type, str] = {list: "list", tuple: "tuple"}
_BUILD: dict[str, Any] = {"dict": dict, "odict": OrderedDict, "counter": Counter, "list": list, "tuple": tuple}


@dataclass
class TensorNode:
    """A tensor found in the tree; `node` is its JSON node, completed once storages are grouped."""

    name: str
    tensor: Any
    node: dict[str, Any]

    def record_view(self, storage: str, dtype: str) -> None:
        self.node.update(
            storage=storage,
            dtype=dtype,
            offset=int(self.tensor.storage_offset()),
            shape=list(self.tensor.shape),
            stride=list(self.tensor.stride()),
        )


class _Encoder:
    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.tensors: list[TensorNode] = []
        self.taken: set[str] = set()
        self.by_id: dict[int, str] = {}

    def value(self, value: Any, path: list[str]) -> Any:
        torch = self.torch
        kind = type(value)
        if isinstance(value, torch.Tensor):
            return self.tensor(value, path)
        if kind in _DICT_TYPES:
            items = [[self.value(k, path + ["<key>"]), self.value(v, path + [_component(k)])] for k, v in value.items()]
            return {_DICT_TYPES[kind]: items}
        if kind in _SEQUENCE_TYPES:
            return {_SEQUENCE_TYPES[kind]: [self.value(v, path + [str(i)]) for i, v in enumerate(value)]}
        if kind is set:
            members = [self.value(v, path + ["<member>"]) for v in value]
            return {"set": sorted(members, key=lambda m: json.dumps(m, sort_keys=True))}
        if kind is torch.Size:
            return {"size": list(value)}
        if kind is torch.dtype:
            return {"dtype": str(value).removeprefix("torch.")}
        if kind is torch.device:
            return {"device": str(value)}
        return _scalar(value, path)

    def tensor(self, tensor: Any, path: list[str]) -> dict[str, Any]:
        torch = self.torch
        where = ".".join(path) or "the root object"
        if id(tensor) in self.by_id:
            return {"same": self.by_id[id(tensor)]}
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            raise CheckpointError(f"{where}: tensor subclass {type(tensor).__name__} is not supported")
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
            raise CheckpointError(
                f"{where}: only dense CPU tensors are supported, not a {tensor.layout} {tensor.dtype} tensor on "
                f"{tensor.device}"
            )
        name = unique_name(".".join(path) or "tensor", self.taken)
        self.by_id[id(tensor)] = name
        node: dict[str, Any] = {"tensor": name}
        if type(tensor) is torch.nn.Parameter:
            node.update(parameter=True, requires_grad=bool(tensor.requires_grad))
        elif tensor.requires_grad:
            node["requires_grad"] = True
        self.tensors.append(TensorNode(name, tensor, node))
        return node


def _component(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name#2`, `name#3`, ... if it is taken; marks the result taken."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}#{count}"
    taken.add(candidate)
    return candidate


def _float(value: float) -> dict[str, Any]:
    if math.isfinite(value):
        return {"float": value}
    return {"float_bits": struct.pack(">d", value).hex()}


def _scalar(value: Any, path: list[str]) -> dict[str, Any]:
    kind = type(value)
    if value is None:
        return {"none": None}
    if kind is bool:
        return {"bool": value}
    if kind is int:
        return {"int": value}
    if kind is float:
        return _float(value)
    if kind is complex:
        return {"complex": [_float(value.real), _float(value.imag)]}
    if kind is str:
        return {"str": value}
    if kind in (bytes, bytearray):
        return {kind.__name__: base64.b64encode(value).decode("ascii")}
    raise CheckpointError(f"{'.'.join(path) or 'the root object'}: values of type {kind.__name__} are not supported")


def _children(value: Any) -> list[Any] | None:
    """The values a container holds, or None for anything the tree holds as one node."""
    kind = type(value)
    if kind in _DICT_TYPES:
        return [*value.keys(), *value.values()]
    if kind in _SEQUENCE_TYPES or kind is set:
        return list(value)
    return None


def check_limits(obj: Any) -> None:
    """LimitError if the tree of `obj` would nest deeper than MAX_DEPTH, have more than MAX_NODES nodes, or
    more than MAX_COPIED_NODES nodes that are copies of shared containers.

    Without recursion and in time linear in the distinct objects: each container's
    expanded node count is computed once (by id) however often the pickle shares it.
    A container that holds itself never finishes its count and runs into MAX_DEPTH.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded node count, nesting height)
    distinct = 0  # nodes of the containers counted so far, each once: the expanded count less the copies
    stack: list[tuple[Any, int, bool]] = [(obj, 1, False)]
    while stack:
        value, depth, counted = stack.pop()
        children = _children(value)
        if children is None or (not counted and id(value) in sizes):
            continue
        if counted:
            below = [sizes[id(child)] for child in children if _children(child) is not None]
            total = 1 + len(children) - len(below) + sum(count for count, _ in below)
            distinct += 1 + len(children) - len(below)
            if total > MAX_NODES:
                raise LimitError(f"the pickled object has more than {MAX_NODES} structure nodes")
            if total - distinct > MAX_COPIED_NODES:
                raise LimitError(
                    "the pickled object shares containers so often that copying them adds more than "
                    f"{MAX_COPIED_NODES} structure nodes"
                )
            sizes[id(value)] = (total, 1 + max((height for _, height in below), default=0))
            continue
        if depth > MAX_DEPTH:
            break
        stack.append((value, depth, True))
        stack.extend(
            (child, depth + 1, False) for child in children if _children(child) is not None and id(child) not in sizes
        )
    if stack or sizes.get(id(obj), (0, 0))[1] > MAX_DEPTH:
        raise LimitError(f"the pickled object nests containers more than {MAX_DEPTH} deep (or holds itself)")


def encode_tree(obj: Any, torch: Any) -> tuple[Any, list[TensorNode]]:
    """The tree for a loaded object, and its tensors in order (their nodes are completed by the caller)."""
    check_limits(obj)
    encoder = _Encoder(torch)
    return encoder.value(obj, []), encoder.tensors


def decode_tree(tree: Any, params: dict[str, Any], torch: Any) -> Any:
    """The object a tree describes; `params` maps parameter group names to torch tensors."""
    seen: dict[str, Any] = {}

    def value(node: Any) -> Any:
        if not isinstance(node, dict) or len(node) < 1:
            raise CheckpointError(f"malformed structure node {node!r}")
        if "tensor" in node:
            seen[node["tensor"]] = tensor = _tensor(node, params, torch)
            return tensor
        ((kind, body),) = node.items()
        if kind in ("dict", "odict", "counter"):
            pairs = dict((value(k), value(v)) for k, v in body)
            return pairs if kind == "dict" else _BUILD[kind](pairs)  # Counter(pairs) would count the pairs
        if kind in ("list", "tuple", "set"):
            return (set if kind == "set" else _BUILD[kind])(value(v) for v in body)
        if kind == "same":
            return seen[body]
        return _decode_scalar(kind, body, torch)

    return value(tree)


def _decode_scalar(kind: str, body: Any, torch: Any) -> Any:
    if kind in ("str", "int", "bool", "none", "float"):
        return float(body) if kind == "float" else body
    if kind == "float_bits":
        return struct.unpack(">d", bytes.fromhex(body))[0]
    if kind == "complex":
        nodes = (next(iter(part.items())) for part in body)
        return complex(*(_decode_scalar(key, inner, torch) for key, inner in nodes))
    if kind in ("bytes", "bytearray"):
        raw = base64.b64decode(body)
        return raw if kind == "bytes" else bytearray(raw)
    if kind == "size":
        return torch.Size(body)
    if kind == "dtype":
        return getattr(torch, body)
    if kind == "device":
        return torch.device(body)
    raise CheckpointError(f"unknown structure node type {kind!r}")


def _tensor(node: dict[str, Any], params: dict[str, Any], torch: Any) -> Any:
    if "storage" in node:
        base = params[node["storage"]]
        tensor = torch.empty(0, dtype=getattr(torch, node["dtype"])).set_(
            base.untyped_storage(), node["offset"], tuple(node["shape"]), tuple(node["stride"])
        )
    else:
        tensor = params[node["tensor"]]
    if node.get("parameter"):
        return torch.nn.Parameter(tensor, requires_grad=node["requires_grad"])
    if node.get("requires_grad"):
        tensor.requires_grad_(True)
    return tensor
