"""dora updates: PEFT's DoRA merge formula, in a fixed summation order. Side-loaded from real PEFT adapters in
tests/sideload/peft_merge_test.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from git_theta import objects
from git_theta.errors import StoreError
from git_theta.tensor import Tensor
from git_theta.updates import dora, low_rank


def _parts(rng: np.random.Generator, out: int = 12, inp: int = 10, rank: int = 3) -> list[np.ndarray]:
    return [
        rng.normal(0, 0.3, (out, inp)).astype(np.float32),
        rng.normal(0, 0.2, (rank, inp)).astype(np.float32),
        rng.normal(0, 0.2, (out, rank)).astype(np.float32),
        rng.uniform(0.5, 2.0, (out,)).astype(np.float32),
    ]


def test_apply_matches_peft_dora_merge_formula() -> None:
    w, a, b, m = _parts(np.random.default_rng(0))
    base = Tensor.from_numpy(w)
    bundle = low_rank.make_dora_bundle(base, *(Tensor.from_numpy(x) for x in (a, b, m)), 1.5)
    out = dora.DoraUpdate().apply(bundle, base)
    # PEFT's DoraLinearVariant.merge_unsafe, in torch
    v = torch.from_numpy(w) + (torch.from_numpy(b) @ torch.from_numpy(a)) * 1.5
    reference = (torch.from_numpy(m) / torch.linalg.norm(v, dim=1)).view(-1, 1) * v
    np.testing.assert_allclose(out.numpy(), reference.numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(out.numpy(), v.numpy(), atol=1e-3)  # the magnitude did rescale the rows
    decoded = objects.decode(b"".join(objects.encode(bundle)))
    assert bytes(dora.DoraUpdate().apply(decoded, base).data) == bytes(out.data)


@pytest.mark.parametrize("width", [1, 2, 5, 16, 17, 1000])
def test_row_norms_are_the_l2_norms_of_the_rows(width: int) -> None:
    values = np.random.default_rng(width).normal(0, 1, (7, width)).astype(np.float32)
    found = dora.row_norms(values.copy())
    np.testing.assert_allclose(found, np.linalg.norm(values.astype(np.float64), axis=1), rtol=1e-6)


def test_a_magnitude_vector_that_does_not_fit_is_rejected() -> None:
    w, a, b, m = _parts(np.random.default_rng(1))
    with pytest.raises(StoreError, match=r"magnitude vector \[11\] does not fit a weight of shape \[12, 10\]"):
        low_rank.make_dora_bundle(Tensor.from_numpy(w), *(Tensor.from_numpy(x) for x in (a, b, m[:11])), 1.0)


def test_a_dora_object_for_another_base_is_rejected() -> None:
    w, a, b, m = _parts(np.random.default_rng(2))
    bundle = low_rank.make_dora_bundle(Tensor.from_numpy(w), *(Tensor.from_numpy(x) for x in (a, b, m)), 1.0)
    with pytest.raises(StoreError, match="dora update was made for base tensor"):
        dora.DoraUpdate().apply(bundle, Tensor.from_numpy(w + 1))


def test_object_layout_is_locked() -> None:
    """The layout documented in docs/updates.md: lora_A, lora_B and magnitude as given, base hash and scale."""
    base = Tensor.from_numpy(np.zeros((3, 2), np.float32))
    a, b = Tensor.from_numpy(np.ones((1, 2), np.float16)), Tensor.from_numpy(np.ones((3, 1), np.float32))
    m = Tensor.from_numpy(np.ones((3,), np.float32))
    header, _ = objects.read_header(b"".join(objects.encode(low_rank.make_dora_bundle(base, a, b, m, 0.5))))
    assert (header["kind"], header["fields"]) == ("dora", {"base": base.hash(), "scale": 0.5})
    assert [(x["name"], x["dtype"], x["shape"]) for x in header["buffers"]] == [
        ("lora_A", "F16", [1, 2]),
        ("lora_B", "F32", [3, 1]),
        ("magnitude", "F32", [3]),
    ]
