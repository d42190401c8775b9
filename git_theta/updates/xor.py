"""xor: the bitwise XOR of the new tensor's raw bytes against its base.

Where little changed, the XOR is mostly zero bytes, and where values moved by a
few ulps only the low mantissa bytes are non-zero; the byte-grouped zstd of the
object encoding squeezes both. Exact for every dtype.

Object layout (kind "xor"):
  buffers "xor"  U8/U16/U32/U64 (the element size of the parameter), the parameter's shape; for a packed
                 dtype (F4, F6_*: several values per byte) U8 of shape [byte count].
  fields  "base" hash of the tensor the update applies to.
"""

from __future__ import annotations

from git_theta import chainops, dtypes
from git_theta.errors import StoreError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates.base import BITS_DTYPE, UpdateType, bits, from_bits

NAME = "xor"


class XorUpdate(UpdateType):
    name = NAME
    fresh_result = True

    def encode(self, new: Tensor, base: Tensor | None) -> Bundle | None:
        if base is None or (base.dtype, base.shape) != (new.dtype, new.shape):
            return None
        import numpy as np  # here, not at the top: a checkout applies xor links through git_theta.chainops

        delta = np.bitwise_xor(bits(new), bits(base))
        kind = BITS_DTYPE[dtypes.itemsize(new.dtype)]
        return Bundle(NAME, {"xor": from_bits(kind, _xor_shape(new), delta)}, {"base": base.hash()})

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        import numpy as np

        base = self.checked_base(bundle, base)
        return from_bits(base.dtype, base.shape, np.bitwise_xor(bits(base), bits(self._delta(bundle, base))))

    def apply_in_place(self, bundle: Bundle, base: Tensor) -> Tensor:
        delta = self._delta(bundle, base)
        try:
            chainops.xor_into(base.data, delta.data)
        except ValueError as error:  # the shapes matched, so only a malformed buffer gets here
            raise StoreError(f"xor object: {error}") from None
        return base

    def _delta(self, bundle: Bundle, base: Tensor) -> Tensor:
        delta = self.buffer(bundle, "xor")
        if delta.shape != _xor_shape(base) or dtypes.itemsize(delta.dtype) != dtypes.itemsize(base.dtype):
            raise StoreError(
                f"xor object holds {delta.dtype}{list(delta.shape)}, which does not fit a "
                f"{base.dtype}{list(base.shape)} base"
            )
        return delta


def _xor_shape(tensor: Tensor) -> tuple[int, ...]:
    """The xor buffer's shape: the parameter's, or its byte count for a packed dtype (the buffer is whole bytes)."""
    return (tensor.nbytes,) if tensor.dtype in dtypes.PACKED else tensor.shape
