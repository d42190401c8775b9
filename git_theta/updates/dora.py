"""dora: DoRA (weight-decomposed LoRA) on top of a 2-D base weight, as PEFT's merge computes it.

For a weight W of shape (out, in), LoRA factors A (r, in), B (out, r), a scale and a magnitude vector m (out,)
(PEFT's DoraLinearVariant.merge_unsafe):

    V  = W + scale * (B @ A)
    W' = (m / ||V||) [:, None] * V        ||V|| the L2 norm of each row of V (each output channel)

Arithmetic runs in float32 (float64 for F64 weights); B @ A is low-rank's fixed-order product, and each row's sum
of squares is folded in a fixed order (halves added elementwise), never BLAS, so every machine rebuilds the same
bits. The result is rounded to W's dtype.

Object layout (kind "dora"):
  buffers "lora_A" (r, in), "lora_B" (out, r), "magnitude" (out,), any float dtype (as trained).
  fields  "base"   hash of the tensor the update applies to;
          "scale"  the LoRA multiplier, a JSON number (rounded to the compute dtype when applied).
Made only by side-loading a PEFT LoRA adapter saved with use_dora (`--update-type low-rank`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from git_theta.errors import StoreError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates import low_rank
from git_theta.updates.base import UpdateType, as_float, cast_to, compute_dtype, require_float

NAME = low_rank.DORA


def row_norms(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The L2 norm of each row, summed in a fixed order: the upper part of the columns folded onto the lower."""
    squares = values * values
    width = squares.shape[1]
    while width > 1:
        half = width // 2
        squares[:, :half] += squares[:, width - half : width]
        width -= half
    norms: np.ndarray[Any, Any] = np.sqrt(squares[:, 0])
    return norms


class DoraUpdate(UpdateType):
    name = NAME

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        base = self.checked_base(bundle, base)
        require_float(NAME, "the base weight", base)
        a, b = self.buffer(bundle, "lora_A"), self.buffer(bundle, "lora_B")
        magnitude = self.buffer(bundle, "magnitude")
        low_rank.check_factors(base.shape, a, b)
        low_rank.check_magnitude(base.shape, magnitude)
        scale = bundle.fields.get("scale")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise StoreError(f"dora object has an invalid scale {scale!r}")
        work = compute_dtype(base.dtype)
        merged = low_rank.product(as_float(a, work), as_float(b, work))
        merged *= work.type(scale)
        merged += as_float(base, work)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero row gives NaN, as in PEFT's merge
            factor = as_float(magnitude, work) / row_norms(merged)
        merged *= factor[:, None]
        return cast_to(merged, base.dtype, base.shape)
