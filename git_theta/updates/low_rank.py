"""low-rank: LoRA factors on top of a 2-D base weight.

Convention (PEFT's): for a weight W of shape (out, in),

    A = lora_A   shape (r, in)
    B = lora_B   shape (out, r)
    W' = W + scale * (B @ A),   scale = lora_alpha / r   (alpha / sqrt(r) with rsLoRA)

Arithmetic runs in float32 (float64 for F64 weights) and the result is rounded
to W's dtype. B @ A is accumulated one rank at a time (delta += B[:, k] x A[k, :]
for k = 0..r-1) with elementwise numpy operations, never BLAS, so every machine
rebuilds the same bits: the stored parameter hash stays valid everywhere.

Object layout (kind "low-rank"):
  buffers "lora_A" (r, in) and "lora_B" (out, r), any float dtype (as trained).
  fields  "base"   hash of the tensor the factors apply to;
          "scale"  the multiplier, a JSON number (rounded to the compute dtype when applied).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from git_theta import dtypes
from git_theta.errors import StoreError, ThetaError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates.base import SideLoad, UpdateType, as_float, cast_to, compute_dtype, require_float

NAME = "low-rank"
DORA = "dora"  # the update type a PEFT DoRA adapter's modules become (git_theta.updates.dora applies it)


def check_factors(weight_shape: tuple[int, ...], a: Tensor, b: Tensor) -> int:
    """The rank, after checking A (r, in) and B (out, r) fit a weight of `weight_shape`."""
    if len(weight_shape) != 2:
        raise StoreError(f"low-rank updates need a 2-D weight, this one is {list(weight_shape)}")
    out_features, in_features = weight_shape
    if (
        len(a.shape) != 2
        or len(b.shape) != 2
        or a.shape[1] != in_features
        or b.shape[0] != out_features
        or a.shape[0] != b.shape[1]
        or a.shape[0] < 1
    ):
        raise StoreError(
            f"LoRA factors A{list(a.shape)} and B{list(b.shape)} do not fit a weight of shape {list(weight_shape)}; "
            f"expected A (r, {in_features}) and B ({out_features}, r)"
        )
    require_float(NAME, "lora_A", a)
    require_float(NAME, "lora_B", b)
    return a.shape[0]


def product(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """B @ A accumulated rank by rank in a fixed order (deterministic, unlike BLAS)."""
    delta = np.zeros((b.shape[0], a.shape[1]), dtype=a.dtype)
    term = np.empty_like(delta)
    for k in range(a.shape[0]):
        np.multiply(b[:, k : k + 1], a[k : k + 1, :], out=term)
        delta += term
    return delta


def check_magnitude(weight_shape: tuple[int, ...], magnitude: Tensor) -> None:
    """A DoRA magnitude vector has one value per output channel (row) of the weight."""
    if magnitude.shape != weight_shape[:1]:
        raise StoreError(
            f"a DoRA magnitude vector {list(magnitude.shape)} does not fit a weight of shape {list(weight_shape)}; "
            f"expected [{weight_shape[0]}]"
        )
    require_float(DORA, "the magnitude vector", magnitude)


def make_dora_bundle(base: Tensor, a: Tensor, b: Tensor, magnitude: Tensor, scale: float) -> Bundle:
    check_factors(base.shape, a, b)
    check_magnitude(base.shape, magnitude)
    fields = {"base": base.hash(), "scale": float(scale)}
    return Bundle(DORA, {"lora_A": a, "lora_B": b, "magnitude": magnitude}, fields)


def _transposed(tensor: Tensor) -> Tensor:
    if len(tensor.shape) != 2:
        raise ThetaError(f"LoRA factors are 2-D, not {list(tensor.shape)}")
    return Tensor.from_numpy(np.ascontiguousarray(tensor.numpy().T), tensor.dtype)


def make_bundle(base: Tensor, a: Tensor, b: Tensor, scale: float) -> Bundle:
    check_factors(base.shape, a, b)
    return Bundle(NAME, {"lora_A": a, "lora_B": b}, {"base": base.hash(), "scale": float(scale)})


class LowRankUpdate(UpdateType):
    name = NAME
    side_load_suffixes = {
        ".lora_A.weight": "lora_A",
        ".lora_B.weight": "lora_B",
        ".lora_A": "lora_A",
        ".lora_B": "lora_B",
        # DoRA (PEFT's use_dora): the magnitude of each output channel; makes the update a "dora" object.
        ".lora_magnitude_vector.weight": "magnitude",
        ".lora_magnitude_vector": "magnitude",
    }
    side_load_optional_roles = frozenset({"magnitude"})

    def side_load(self, param: str, base: Tensor, roles: Mapping[str, Tensor], context: SideLoad) -> dict[str, Bundle]:
        from git_theta.sideload import lora_config  # the adapter config's meaning: only when side-loading

        if not dtypes.is_float(base.dtype):
            raise ThetaError(f"{NAME} updates need a float parameter, not {base.dtype}")
        a, b = roles["lora_A"], roles["lora_B"]
        if lora_config.fan_in_fan_out(context.adapter):
            # The weight is (in, out) and PEFT adds (B @ A)^T = A^T @ B^T: the same products, factors swapped.
            a, b = _transposed(b), _transposed(a)
        rank = check_factors(base.shape, a, b)
        # PEFT's module name: the weight's path without `.weight` (what rank_pattern/alpha_pattern keys match).
        scale = lora_config.module_scale(context.adapter, param.removesuffix(".weight"), context.alpha, rank)
        if lora_config.uses_dora(context.adapter, "magnitude" in roles):
            return {param: make_dora_bundle(base, a, b, roles["magnitude"], scale)}
        return {param: make_bundle(base, a, b, scale)}

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        base = self.checked_base(bundle, base)
        require_float(NAME, "the base weight", base)
        a, b = self.buffer(bundle, "lora_A"), self.buffer(bundle, "lora_B")
        check_factors(base.shape, a, b)
        scale = bundle.fields.get("scale")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise StoreError(f"low-rank object has an invalid scale {scale!r}")
        work = compute_dtype(base.dtype)
        delta = product(as_float(a, work), as_float(b, work))
        delta *= work.type(scale)
        delta += as_float(base, work)
        return cast_to(delta, base.dtype, base.shape)
