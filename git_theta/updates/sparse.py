"""sparse: only the entries that changed, as flat indices and their new raw values.

Object layout (kind "sparse"):
  buffers "gaps"   U32 (U64 for tensors of 2**32 elements or more), shape [n]:
                   gaps between consecutive flat row-major indices; the first gap is
                   the first index itself. Gaps keep the index bytes small, so they compress.
          "values" the parameter's own dtype, shape [n]: the new entries' raw bytes.
  fields  "base"   hash of the tensor the update applies to.

Entries are compared and written bitwise (as unsigned integers of the element's
size), so -0.0 vs +0.0 and NaN payloads are changes like any other and survive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from git_theta import chainops, dtypes
from git_theta.errors import StoreError, ThetaError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates.base import SideLoad, UpdateType, bits, from_bits

# numpy loads in the functions that need it: a checkout applies links through git_theta.chainops (~0.1 s saved).
if TYPE_CHECKING:
    import numpy as np

NAME = "sparse"


def gap_dtype(size: int) -> str:
    return "U32" if size < 2**32 else "U64"


def changed_indices(new: Tensor, base: Tensor) -> np.ndarray[Any, Any]:
    """Flat indices where the two tensors' bits differ."""
    import numpy as np

    return np.flatnonzero(bits(new) != bits(base))


def make_bundle(base: Tensor, indices: np.ndarray[Any, Any], values: Tensor) -> Bundle:
    """A sparse object setting `indices` (sorted, unique, flat) of `base` to `values` (base's dtype)."""
    import numpy as np

    size = int(np.prod(base.shape, dtype=np.int64))
    indices = np.asarray(indices, dtype=np.int64)
    gaps = np.diff(indices, prepend=0).astype(dtypes.numpy_dtype(gap_dtype(size)))
    return Bundle(NAME, {"gaps": Tensor.from_numpy(gaps, gap_dtype(size)), "values": values}, {"base": base.hash()})


class SparseUpdate(UpdateType):
    name = NAME
    side_load_suffixes = {".sparse_indices": "indices", ".sparse_values": "values"}

    def side_load(self, param: str, base: Tensor, roles: Mapping[str, Tensor], context: SideLoad) -> dict[str, Bundle]:
        import numpy as np

        indices, values = roles["indices"], roles["values"]
        if base.dtype in dtypes.PACKED:
            why = dtypes.packed_refusal(base.dtype)
            raise ThetaError(f"a sparse update cannot set single values of {base.dtype}: {why}")
        if indices.dtype not in ("I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8"):
            raise ThetaError(f"sparse_indices must be integers, not {indices.dtype}")
        if values.dtype != base.dtype:
            raise ThetaError(
                f"sparse_values are {values.dtype}, the parameter is {base.dtype} (values are stored bit for bit, so "
                "the dtype must match)"
            )
        flat = indices.numpy().reshape(-1).astype(np.int64)
        if values.nbytes // dtypes.itemsize(values.dtype) != len(flat):
            raise ThetaError(
                f"{len(flat)} sparse_indices but {values.nbytes // dtypes.itemsize(values.dtype)} sparse_values"
            )
        size = int(np.prod(base.shape, dtype=np.int64))
        if len(flat) and (flat.min() < 0 or flat.max() >= size):
            raise ThetaError(f"sparse_indices must lie in [0, {size}) (flat, row-major)")
        order = np.argsort(flat, kind="stable")
        if len(flat) > 1 and np.any(np.diff(flat[order]) == 0):
            raise ThetaError("sparse_indices repeat an index")
        raw = np.frombuffer(values.data, dtype=np.uint8).reshape(len(flat), dtypes.itemsize(values.dtype))[order]
        return {param: make_bundle(base, flat[order], Tensor(values.dtype, (len(flat),), raw.tobytes()))}

    def encode(self, new: Tensor, base: Tensor | None) -> Bundle | None:
        # Packed values share bytes, so they have no flat indices: xor is the exact delta for them.
        if base is None or (base.dtype, base.shape) != (new.dtype, new.shape) or new.dtype in dtypes.PACKED:
            return None
        indices = changed_indices(new, base)
        values = from_bits(new.dtype, (len(indices),), bits(new)[indices])
        return make_bundle(base, indices, values)

    fresh_result = True

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        import numpy as np

        base = self.checked_base(bundle, base)
        gaps, values = self._buffers(bundle, base)
        indices = gaps.numpy().astype(np.int64).cumsum()
        size = math.prod(base.shape)
        if len(indices) and (indices[-1] >= size or (len(indices) > 1 and gaps.numpy()[1:].min() == 0)):
            raise StoreError(_out_of_range(size))
        out = bits(base).copy()
        out[indices] = bits(values)
        return from_bits(base.dtype, base.shape, out)

    def apply_in_place(self, bundle: Bundle, base: Tensor) -> Tensor:
        gaps, values = self._buffers(bundle, base)
        try:  # checks every index before writing any
            chainops.scatter_into(
                base.data, gaps.data, dtypes.itemsize(gaps.dtype), values.data, dtypes.itemsize(base.dtype)
            )
        except ValueError:
            raise StoreError(_out_of_range(math.prod(base.shape))) from None
        return base

    def _buffers(self, bundle: Bundle, base: Tensor) -> tuple[Tensor, Tensor]:
        """The object's gaps and values, checked to fit `base` (indices aside)."""
        gaps, values = self.buffer(bundle, "gaps"), self.buffer(bundle, "values")
        packed = base.dtype in dtypes.PACKED
        if (
            values.dtype != base.dtype
            or packed
            or len(values.shape) != 1
            or gaps.shape != values.shape
            or gaps.dtype not in ("U32", "U64")
        ):
            raise StoreError(
                f"sparse object holds {gaps.shape[0] if len(gaps.shape) == 1 else gaps.shape} gaps and "
                f"{values.dtype}{list(values.shape)} values for a {base.dtype} tensor"
            )
        return gaps, values


def _out_of_range(size: int) -> str:
    return f"sparse object indices are out of range or repeated for a tensor of {size} entries"
