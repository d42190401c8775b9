"""An example git-theta update type plugin: `rescale`, a parameter stored as its previous value times one factor.

A decoupled weight-decay step on a parameter with no gradient (a frozen or unused
row set, an embedding no batch touched) multiplies it by one float: `w * (1 - lr * wd)`.
git-theta would store that as a dense or XOR copy; `rescale` stores 8 bytes.

Object layout (kind "rescale"):
  buffers "factor" F64, shape [1]: the factor, exact bits.
  fields  "base"   hash of the tensor the factor applies to.

Applying it: `base * factor`, computed in float32 (float64 for F64 parameters;
the factor rounded to that first) and rounded to the parameter's dtype, the same
arithmetic git-theta's built-in ia3 uses, so the bits are the same everywhere.

Two ways in, both through the UpdateType interface only:
  - `encode`: on `git add`, git-theta asks every update type for an exact
    representation and keeps the smallest (it checks `apply` rebuilds the bits);
  - `side_load`: `git theta add PATH --update-type rescale --update-data FILE`, the
    file holding `<parameter>.rescale` entries of one float each.

Only git_theta.updates.base, git_theta.objects, git_theta.tensor, git_theta.dtypes
and git_theta.errors are used: the public surface an update type plugin needs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from git_theta import dtypes
from git_theta.errors import StoreError, ThetaError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates.base import SideLoad, UpdateType, as_float, cast_to, compute_dtype

__all__ = ["ScaleUpdate", "make_bundle"]

NAME = "rescale"


def make_bundle(base: Tensor, factor: float) -> Bundle:
    """The object multiplying `base` by `factor`."""
    return Bundle(
        NAME, {"factor": Tensor.from_numpy(np.array([factor], dtype=np.float64), "F64")}, {"base": base.hash()}
    )


class ScaleUpdate(UpdateType):
    name = NAME
    side_load_suffixes = {".rescale": "factor"}

    def encode(self, new: Tensor, base: Tensor | None) -> Bundle | None:
        """The factor new / base, taken at the base's largest finite element; None unless it rebuilds `new` exactly."""
        if (
            base is None
            or (base.dtype, base.shape) != (new.dtype, new.shape)
            or not dtypes.is_float(base.dtype)
            or base.nbytes == 0
        ):
            return None
        work = compute_dtype(base.dtype)
        old, now = as_float(base, work).reshape(-1), as_float(new, work).reshape(-1)
        finite = np.isfinite(old) & (old != 0)
        if not finite.any():
            return None
        at = int(np.argmax(np.where(finite, np.abs(old), 0)))
        with np.errstate(all="ignore"):
            factor = float(np.float64(now[at]) / np.float64(old[at]))
        if not np.isfinite(factor):
            return None
        bundle = make_bundle(base, factor)
        return bundle if bytes(self.apply(bundle, base).data) == bytes(new.data) else None

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        base = self.checked_base(bundle, base)
        if not dtypes.is_float(base.dtype):
            raise StoreError(f"{NAME}: the base must be a float tensor, not {base.dtype}")
        factor = self.buffer(bundle, "factor")
        if factor.dtype != "F64" or factor.shape != (1,):
            raise StoreError(f"{NAME} object's factor is {factor.dtype}{list(factor.shape)}, not F64[1]")
        work = compute_dtype(base.dtype)
        with np.errstate(all="ignore"):  # inf * 0 is NaN in numpy as anywhere; the bits are what they are
            product = as_float(base, work) * factor.numpy().astype(work)[0]
        return cast_to(product, base.dtype, base.shape)

    def side_load(self, param: str, base: Tensor, roles: Mapping[str, Tensor], context: SideLoad) -> dict[str, Bundle]:
        entry = roles["factor"]
        if not dtypes.is_float(base.dtype):
            raise ThetaError(f"{NAME} updates need a float parameter, not {base.dtype}")
        if not dtypes.is_float(entry.dtype) or entry.nbytes != dtypes.itemsize(entry.dtype):
            raise ThetaError(f"a .rescale entry holds one float factor, not {entry.dtype}{list(entry.shape)}")
        factor = float(entry.numpy().reshape(-1)[0])
        if not np.isfinite(factor):
            raise ThetaError(f"the factor must be finite, not {factor}")
        return {param: make_bundle(base, factor)}
