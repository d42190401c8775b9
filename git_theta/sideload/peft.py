"""Reading side-loaded update files and matching their entries to parameters.

An update file is safetensors or a torch file (loaded with weights_only=True)
holding a flat name -> tensor mapping. Names follow PEFT, with the
`base_model.model.` prefix PEFT adds stripped first. Each update type declares
its names (UpdateType.side_load_suffixes); the built-ins':

  low-rank  `<module>.lora_A.weight` / `<module>.lora_B.weight`  -> parameter `<module>.weight`
            `<P>.lora_A` / `<P>.lora_B`                          -> parameter `<P>` (or `<P>.weight`)
            `<module>.lora_magnitude_vector` (DoRA, optional)    -> parameter `<module>.weight`
            `<P>` of a module in the config's modules_to_save    -> parameter `<P>`, replaced
  ia3       `<module>.ia3_l`                                     -> parameter `<module>.weight`
            (also `<P>.ia3_l` for a parameter `<P>`)
  sparse    `<P>.sparse_indices` (integers: flat row-major indices, unique)
            `<P>.sparse_values`  (the parameter's dtype: the new values, bit for bit)

A `.weight`-suffixed form first looks for `<module>.weight`, a plain form first
for `<P>` itself, each falling back to the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from git_theta import dtypes, files
from git_theta.checkpoints.base import SNIFF_BYTES
from git_theta.checkpoints.safetensors import SafetensorsFormat
from git_theta.errors import ThetaError
from git_theta.tensor import Tensor
from git_theta.updates.base import AdapterConfig, UpdateType

PEFT_PREFIX = "base_model.model."
# PEFT writes a few hundred bytes; the file sits next to an adapter someone else may have made.
MAX_ADAPTER_CONFIG_BYTES = 1 << 20


class _Collect:
    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def add(self, name: str, tensor: Tensor) -> None:
        self.tensors[name] = Tensor(tensor.dtype, tensor.shape, bytes(tensor.data))  # the reader may reuse its buffer

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return {}


def read_update_file(path: Path) -> dict[str, Tensor]:
    """name -> tensor from a safetensors or torch update file."""
    try:
        with files.open_regular(path) as stream:
            if SafetensorsFormat.sniff(stream.read(SNIFF_BYTES), str(path)):
                stream.seek(0)
                return _read_safetensors(stream, path)
    except OSError as error:
        raise ThetaError(f"cannot read update file {path}: {error.strerror}") from None
    return _read_torch(path)


def _read_safetensors(stream: BinaryIO, path: Path) -> dict[str, Tensor]:
    sink = _Collect()
    try:
        SafetensorsFormat().read(stream, str(path), sink)
    except ThetaError as error:
        raise ThetaError(f"update file {path}: {error}") from None
    return sink.tensors


def _read_torch(path: Path) -> dict[str, Tensor]:
    import torch  # only when a torch update file is actually given

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ThetaError(
            f"update file {path} is neither safetensors nor a torch file it can load safely: {error}"
        ) from None
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ThetaError(f"update file {path} must hold a flat mapping of names to tensors")
    found = {}
    for name, value in loaded.items():
        dtype = dtypes.FROM_TORCH.get(str(value.dtype).removeprefix("torch."))
        if dtype is None:
            raise ThetaError(f"update file {path}: tensor {name!r} has unsupported dtype {value.dtype}")
        raw = value.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        found[str(name)] = Tensor(dtype, tuple(value.shape), raw)
    return found


@dataclass
class Grouped:
    """An update file's entries, by the parameter they are for."""

    roles: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # parameter -> {role: tensor}
    entries: dict[str, str] = field(default_factory=dict)  # parameter -> the file's entry names for it (messages)
    # parameter -> (entry name, its new value): a module the adapter saved whole (modules_to_save)
    replaced: dict[str, tuple[str, Tensor]] = field(default_factory=dict)


def group_by_param(
    update: type[UpdateType],
    tensors: Mapping[str, Tensor],
    params: Mapping[str, tuple[str, tuple[int, ...]]],
    source: str,
    adapter: AdapterConfig | None = None,
) -> Grouped:
    """The file's entries by parameter, every role of the update type present; errors name the entry.

    An entry named exactly as a parameter (after the prefix) whose module the adapter config lists in
    modules_to_save is that parameter's new value. Two entries for one role of one parameter (e.g.
    `fc.lora_A.weight` and `base_model.model.fc.lora_A.weight`) are refused naming both: keeping either would
    silently drop the other."""
    adapter = adapter or AdapterConfig()
    suffixes, roles_needed = update.side_load_suffixes, update.side_load_roles()
    found = Grouped()
    keys: dict[tuple[str, str], str] = {}
    for key in sorted(tensors):
        name = key.removeprefix(PEFT_PREFIX)
        suffix = next((s for s in suffixes if name.endswith(s)), None)
        if suffix is None:
            _add_replacement(found, update, key, name, tensors[key], params, source, adapter)
            continue
        stem = name[: -len(suffix)]
        candidates = (
            [stem + ".weight", stem]
            if suffix.endswith(".weight") or update.side_load_weight_first
            else [stem, stem + ".weight"]
        )
        param = next((c for c in candidates if c in params), None)
        if param is None:
            raise ThetaError(
                f"{source}: entry {key!r} is for parameter {candidates[0]!r}, which the checkpoint does not have"
            )
        roles = found.roles.setdefault(param, {})
        role = suffixes[suffix]
        if role in roles:
            raise ThetaError(
                f"{source}: parameter {param!r} has two {role} entries, {keys[param, role]!r} and {key!r}; keep one"
            )
        roles[role] = tensors[key]
        keys[param, role] = key
    for param, roles in found.roles.items():
        missing = [role for role in roles_needed if role not in roles]
        if missing:
            raise ThetaError(f"{source}: parameter {param!r} has no {missing[0]} entry")
    found.entries = {param: " and ".join(repr(keys[param, role]) for role in roles_needed) for param in found.roles}
    return found


def _add_replacement(
    found: Grouped,
    update: type[UpdateType],
    key: str,
    name: str,
    tensor: Tensor,
    params: Mapping[str, tuple[str, tuple[int, ...]]],
    source: str,
    adapter: AdapterConfig,
) -> None:
    """Record entry `key` as a saved module's parameter, or refuse it as not an entry of the update type."""
    if name not in params or not saved_module(adapter, name):
        hint = ""
        if name in params:
            hint = (
                "; a whole parameter is taken only when adapter_config.json beside the file lists its module in "
                "modules_to_save"
            )
        raise ThetaError(
            f"{source}: entry {key!r} is not a {update.name} entry (names end in "
            f"{', '.join(update.side_load_suffixes)}){hint}"
        )
    if name in found.replaced:
        raise ThetaError(f"{source}: parameter {name!r} has two saved values, {found.replaced[name][0]!r} and {key!r}")
    found.replaced[name] = (key, tensor)


def read_adapter_config(update_file: Path) -> AdapterConfig:
    """The adapter_config.json beside `update_file` (what PEFT's save_pretrained writes), or an empty one."""
    config_path = update_file.parent / "adapter_config.json"
    if not config_path.is_file():
        return AdapterConfig()
    return AdapterConfig(config_path, _read_adapter_config(config_path))


def saved_module(adapter: AdapterConfig, param: str) -> bool:
    """True when `param` belongs to a module the adapter saved whole (PEFT's modules_to_save: its module name ends
    with one of the listed names, as PEFT's _set_trainable matches them)."""
    listed = adapter.values.get("modules_to_save") or []
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise ThetaError(f"{adapter.path}: modules_to_save must be a list of module names")
    module = param.rpartition(".")[0]
    return bool(module) and any(module.endswith(name) for name in listed)


def _read_adapter_config(config_path: Path) -> dict[str, Any]:
    """PEFT's adapter_config.json (a few hundred bytes): bounded, and a JSON object or an error naming the file."""
    try:
        with files.open_regular(config_path) as stream:
            data = stream.read(MAX_ADAPTER_CONFIG_BYTES + 1)
    except OSError as error:
        raise ThetaError(f"{config_path}: cannot read: {error.strerror}") from None
    if len(data) > MAX_ADAPTER_CONFIG_BYTES:
        raise ThetaError(f"{config_path}: larger than the {MAX_ADAPTER_CONFIG_BYTES} bytes an adapter config may have")
    try:
        config = json.loads(data)
    except ValueError as error:  # also not UTF-8
        raise ThetaError(f"{config_path} is not valid JSON: {error}") from None
    except RecursionError:
        raise ThetaError(f"{config_path}: JSON nested too deeply") from None
    if not isinstance(config, dict):
        raise ThetaError(
            f"{config_path}: must hold a JSON object (PEFT's adapter config), not a {type(config).__name__}"
        )
    return config
