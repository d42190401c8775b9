"""The one dtype table: every safetensors dtype name maps to torch and back, wherever torch has the type."""

from __future__ import annotations

from pathlib import Path

import torch

from git_theta import dtypes
from git_theta.updates import peft


def test_every_safetensors_dtype_maps_to_torch_and_back() -> None:
    # No safetensors name left out of the table but the packed ones: torch's float4_e2m1fn_x2 counts byte pairs,
    # another shape than safetensors' F4 (see dtypes.TORCH_NAMES).
    assert set(dtypes.TORCH_NAMES) == set(dtypes.BITS) - dtypes.PACKED
    for ours, theirs in dtypes.TORCH_NAMES.items():
        torch_dtype = getattr(torch, theirs, None)
        if torch_dtype is None:  # an older torch without this type: nothing to map
            continue
        assert torch.empty(0, dtype=torch_dtype).element_size() == dtypes.itemsize(ours), ours
        assert dtypes.FROM_TORCH[str(torch_dtype).removeprefix("torch.")] == ours


def test_a_torch_update_file_reads_every_dtype_torch_has(tmp_path: Path) -> None:
    # The side-load reader once had its own table without uint16/32/64: such an update file was refused.
    tensors = {ours: torch.zeros(3, dtype=getattr(torch, theirs)) for ours, theirs in dtypes.TORCH_NAMES.items() if hasattr(torch, theirs)}
    torch.save(tensors, tmp_path / "update.pt")
    found = peft.read_update_file(tmp_path / "update.pt")
    assert {name: tensor.dtype for name, tensor in found.items()} == {name: name for name in tensors}
    assert {"U16", "U32", "U64"} <= set(found)
