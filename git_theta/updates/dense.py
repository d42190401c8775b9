"""dense: the whole tensor, as is."""

from __future__ import annotations

from git_theta.errors import StoreError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.updates.base import UpdateType


class DenseUpdate(UpdateType):
    name = "dense"
    needs_base = False
    fresh_result = True  # the value buffer of an object decoded for this rebuild alone

    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        if "value" not in bundle.buffers:
            raise StoreError("dense object has no 'value' buffer")
        return bundle.buffers["value"]

    def encode(self, new: Tensor, base: Tensor | None) -> Bundle:
        return Bundle(self.name, {"value": new})
