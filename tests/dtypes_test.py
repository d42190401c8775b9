"""The one dtype table: every safetensors dtype name maps to torch and back, wherever torch has the type."""

from __future__ import annotations

from pathlib import Path

import torch

from git_theta import dtypes
from git_theta.sideload import peft


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
    tensors = {
        ours: torch.zeros(3, dtype=getattr(torch, theirs))
        for ours, theirs in dtypes.TORCH_NAMES.items()
        if hasattr(torch, theirs)
    }
    torch.save(tensors, tmp_path / "update.pt")
    found = peft.read_update_file(tmp_path / "update.pt")
    assert {name: tensor.dtype for name, tensor in found.items()} == {name: name for name in tensors}
    assert {"U16", "U32", "U64"} <= set(found)


def test_sizes_come_from_bits_and_packed_types_have_no_numeric_view() -> None:
    import pytest

    from git_theta.errors import ThetaError

    cases = (("F4", (3, 2)), ("F6_E2M3", (4,)), ("C64", (2,)), ("F32", ()))
    sizes = [dtypes.nbytes(name, shape) for name, shape in cases]
    assert sizes == [3, 3, 16, 4]
    with pytest.raises(ThetaError, match="3 elements of F4 .4 bits each. do not fill whole bytes"):
        dtypes.nbytes("F4", (3,))
    for name in ("F4", "F6_E2M3", "F6_E3M2"):
        with pytest.raises(ThetaError, match=f"{name} is packed"):
            dtypes.numpy_dtype(name)
        assert not dtypes.is_float(name) and f"{name} is packed" in str(dtypes.arithmetic_refusal(name))
    assert dtypes.arithmetic_refusal("C64") is not None and dtypes.arithmetic_refusal("F8_E8M0") is None
    # every other dtype has an exact numpy view of its element size, and maps back to its name
    for name in set(dtypes.BITS) - dtypes.PACKED:
        assert dtypes.numpy_dtype(name).itemsize * 8 == dtypes.BITS[name]
        assert dtypes.from_numpy(dtypes.numpy_dtype(name)) == name
