"""Reading side-loaded update files and matching their entries to parameters.

An update file is safetensors or a torch file (loaded with weights_only=True)
holding a flat name -> tensor mapping. Names follow PEFT, with the
`base_model.model.` prefix PEFT adds stripped first. Each update type declares
its names (UpdateType.side_load_suffixes); the built-ins':

  low-rank  `<module>.lora_A.weight` / `<module>.lora_B.weight`  -> parameter `<module>.weight`
            `<P>.lora_A` / `<P>.lora_B`                          -> parameter `<P>` (or `<P>.weight`)
  ia3       `<module>.ia3_l`                                     -> parameter `<module>.weight`
            (also `<P>.ia3_l` for a parameter `<P>`)
  sparse    `<P>.sparse_indices` (integers: flat row-major indices, unique)
            `<P>.sparse_values`  (the parameter's dtype: the new values, bit for bit)

A `.weight`-suffixed form first looks for `<module>.weight`, a plain form first
for `<P>` itself, each falling back to the other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from git_theta import dtypes, files
from git_theta.checkpoints.base import SNIFF_BYTES
from git_theta.checkpoints.safetensors import SafetensorsFormat
from git_theta.errors import ThetaError
from git_theta.tensor import Tensor
from git_theta.updates.base import UpdateType

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


def group_by_param(
    update: type[UpdateType],
    tensors: Mapping[str, Tensor],
    params: Mapping[str, tuple[str, tuple[int, ...]]],
    source: str,
) -> tuple[dict[str, dict[str, Tensor]], dict[str, str]]:
    """parameter name -> {role: tensor}, every role of the update type present; errors name the entry. Also
    parameter name -> the file's entry names for it (for messages).

    Two entries for one role of one parameter (e.g. `fc.lora_A.weight` and `base_model.model.fc.lora_A.weight`)
    are refused naming both: keeping either would silently drop the other."""
    update_type, suffixes, roles_needed = update.name, update.side_load_suffixes, update.side_load_roles()
    grouped: dict[str, dict[str, Tensor]] = {}
    keys: dict[tuple[str, str], str] = {}
    for key in sorted(tensors):
        name = key.removeprefix(PEFT_PREFIX)
        suffix = next((s for s in suffixes if name.endswith(s)), None)
        if suffix is None:
            raise ThetaError(
                f"{source}: entry {key!r} is not a {update_type} entry (names end in {', '.join(suffixes)})"
            )
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
        roles = grouped.setdefault(param, {})
        role = suffixes[suffix]
        if role in roles:
            raise ThetaError(
                f"{source}: parameter {param!r} has two {role} entries, {keys[param, role]!r} and {key!r}; keep one"
            )
        roles[role] = tensors[key]
        keys[param, role] = key
    for param, roles in grouped.items():
        missing = [role for role in roles_needed if role not in roles]
        if missing:
            raise ThetaError(f"{source}: parameter {param!r} has no {missing[0]} entry")
    named = {param: " and ".join(repr(keys[param, role]) for role in roles_needed) for param in grouped}
    return grouped, named


def lora_scale(update_file: Path, alpha: float | None, rank: int) -> float:
    """alpha / r (alpha / sqrt(r) for rsLoRA); alpha from --lora-alpha, else adapter_config.json beside the file, else
    r."""
    config_path = update_file.parent / "adapter_config.json"
    config = _read_adapter_config(config_path) if config_path.is_file() else {}
    if config.get("alpha_pattern"):
        raise ThetaError(f"{config_path}: per-module alpha_pattern is not supported; merge those modules separately")
    source = "--lora-alpha"
    if alpha is None:
        alpha, source = config.get("lora_alpha", rank), f"{config_path}: lora_alpha"
    # A NaN or infinite scale would commit a checkpoint of NaNs "exactly"; a bool is not a number here.
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ThetaError(f"{source} must be a finite number, not {str(alpha)[:40]!r}")
    if config.get("use_rslora"):
        return float(alpha / rank**0.5)
    return float(alpha / rank)


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
