"""ia3: a learned scaling vector multiplied into the base, per channel.

Convention (PEFT's IA3, as `merge` applies it): the vector `l` has the weight's
number of dimensions and broadcasts against it (numpy rules: each dimension is
the weight's or 1). For a Linear weight W (out, in):

    l shape (out, 1): scales output channels (rows),  W'[i, j] = W[i, j] * l[i, 0]
    l shape (1, in):  scales input channels (columns; PEFT's feed-forward layers), W'[i, j] = W[i, j] * l[0, j]

(for the bias of an output-scaled layer, `git theta add` applies the same vector
reshaped to (out,)). Arithmetic runs in float32 (float64 for F64 weights) and the
product is rounded to the weight's dtype; elementwise, so it is the same bits everywhere.

Object layout (kind "ia3"):
  buffers "scale" any float dtype, a shape broadcastable to the base as above.
  fields  "base"  hash of the tensor the vector applies to.
"""

from __future__ import annotations

from collections.abc import Mapping

from git_theta import dtypes
from git_theta.errors import StoreError, ThetaError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates.base import SideLoad, UpdateType, as_float, cast_to, compute_dtype, require_float

NAME = "ia3"


def check_scale(weight_shape: tuple[int, ...], scale: Tensor) -> None:
    fits = len(scale.shape) == len(weight_shape) and all(s in (1, w) for s, w in zip(scale.shape, weight_shape))
    if not fits:
        raise StoreError(
            f"IA3 vector of shape {list(scale.shape)} does not broadcast onto a weight of shape {list(weight_shape)} "
            "(same rank, each dimension equal or 1)"
        )
    require_float(NAME, "the scaling vector", scale)


def make_bundle(base: Tensor, scale: Tensor) -> Bundle:
    check_scale(base.shape, scale)
    return Bundle(NAME, {"scale": scale}, {"base": base.hash()})


class Ia3Update(UpdateType):
    name = NAME
    side_load_suffixes = {".ia3_l.weight": "ia3_l", ".ia3_l": "ia3_l"}
    side_load_weight_first = True  # `<module>.ia3_l` scales `<module>.weight`

    def side_load(self, param: str, base: Tensor, roles: Mapping[str, Tensor], context: SideLoad) -> dict[str, Bundle]:
        """The weight's update, plus the bias's when the vector scales output channels (PEFT merges both)."""
        if not dtypes.is_float(base.dtype):
            raise ThetaError(f"{NAME} updates need a float parameter, not {base.dtype}")
        scale = roles["ia3_l"]
        found = {param: make_bundle(base, scale)}
        bias_name = param.removesuffix(".weight") + ".bias"
        bias = context.checkpoint.get(bias_name)
        scales_outputs = (
            len(base.shape) >= 2 and scale.shape[0] == base.shape[0] and all(n == 1 for n in scale.shape[1:])
        )
        if (
            param.endswith(".weight")
            and bias is not None
            and scales_outputs
            and bias.shape == (base.shape[0],)
            and dtypes.is_float(bias.dtype)
        ):
            found[bias_name] = make_bundle(bias, Tensor(scale.dtype, bias.shape, scale.data))
        return found

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        base = self.checked_base(bundle, base)
        require_float(NAME, "the base weight", base)
        scale = self.buffer(bundle, "scale")
        check_scale(base.shape, scale)
        work = compute_dtype(base.dtype)
        return cast_to(as_float(base, work) * as_float(scale, work), base.dtype, base.shape)
