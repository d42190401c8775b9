"""The interface an update type plugin implements.

A parameter group is stored as a chain of links (see git_theta.metadata):
the first link needs no base (e.g. `dense`), each later link is an update
applied to the value the links before it produce. A link's object is a
Bundle: named buffers plus small JSON fields. An update that builds on a
base records the base tensor's hash in its fields, so the chain is tied to
content, never to a commit or a path.

Register an update type in your package's setup.py:

    entry_points={"git_theta.updates": ["myupdate = mypkg.module:MyUpdate"]}

Side-loading (`git theta add PATH --update-type NAME --update-data FILE`) goes
through two class members, so a plugin can be side-loaded like the built-ins:
`side_load_suffixes` says how the update file's entries are named (entry
`<parameter><suffix>` -> role), and `side_load` turns one parameter's roles
into update objects. A type that sets no suffixes cannot be side-loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from git_theta import dtypes
from git_theta.errors import StoreError
from git_theta.objects import Bundle
from git_theta.tensor import Tensor

# numpy is imported inside the helpers below: a checkout of dense links never loads it (~0.1 s).
if TYPE_CHECKING:
    import numpy as np

# Unsigned dtype of each element size: tensors are compared and XORed as these bits.
BITS_DTYPE = {1: "U8", 2: "U16", 4: "U32", 8: "U64"}


@dataclass(frozen=True)
class AdapterConfig:
    """The adapter_config.json beside the update file (what PEFT's save_pretrained writes), read within limits by
    git_theta.sideload: path None and no values when there is none."""

    path: Path | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SideLoad:
    """What `side_load` may read besides one parameter's entries."""

    # Every tensor of the checkpoint being updated, by name (read only; e.g. IA3 also scales a layer's bias).
    checkpoint: Mapping[str, Tensor]
    # The update file given with --update-data (e.g. LoRA reads adapter_config.json beside it).
    update_file: Path
    # --lora-alpha, or None when not given (`git theta add` allows it only with --update-type low-rank).
    alpha: float | None
    # The adapter's config, read once per command (LoRA reads its scale, per-module alphas and variants there).
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


class UpdateType(ABC):
    """How one stored link turns into (or onto) a tensor."""

    name: ClassVar[str]
    # False: the link stands alone (starts a chain); True: it applies to a base.
    needs_base: ClassVar[bool] = True
    # Side-loading: update-file entry suffix -> role, e.g. {".lora_A.weight": "lora_A", ".lora_A": "lora_A"}.
    # Longer suffixes first (the first that matches wins); PEFT's `base_model.model.` prefix is stripped before
    # matching. An entry `<stem><suffix>` belongs to parameter `<stem>` (else `<stem>.weight`); a suffix ending in
    # ".weight", or a type with side_load_weight_first, tries `<stem>.weight` first. Every role must be present
    # for each parameter. Empty: the type cannot be side-loaded.
    side_load_suffixes: ClassVar[Mapping[str, str]] = {}
    # Roles a parameter may go without (e.g. low-rank's "magnitude": only DoRA adapters have it).
    side_load_optional_roles: ClassVar[frozenset[str]] = frozenset()
    side_load_weight_first: ClassVar[bool] = False
    # True: `apply` and `apply_in_place` return a tensor over a buffer nobody else holds (a fresh one, the base they
    # were given, or the object's own buffer, decoded for this rebuild alone), so the next link may overwrite it.
    fresh_result: ClassVar[bool] = False

    @abstractmethod
    def apply(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        """The tensor this link produces, given the value of the chain before it."""

    def apply_in_place(self, bundle: Bundle, base: Tensor) -> Tensor:
        """`apply`, allowed to overwrite `base` (a writable buffer the caller owns) and to skip the base-hash check.

        smudge.rebuild calls it for the links after the first when the value so far is its own: the rebuilt tensor's
        hash is checked against the metadata at the end, and on a mismatch the chain runs again through `apply`,
        whose checks name the link at fault. So a chain of k links is hashed once, not k times, and not copied
        per link. Bounds checks stay: an object must never write outside `base`. The default is `apply`.
        """
        return self.apply(bundle, base)

    def encode(self, new: Tensor, base: Tensor | None) -> Bundle | None:
        """An exact representation of `new` (on top of `base`), or None if this type cannot express it.

        Used by automatic update selection; types that only come from
        side-loaded data (e.g. LoRA factors) keep the default None.
        """
        return None

    def side_load(self, param: str, base: Tensor, roles: Mapping[str, Tensor], context: SideLoad) -> dict[str, Bundle]:
        """Update objects (parameter -> Bundle) from one parameter's side-loaded entries (role -> tensor).

        Usually {param: bundle for base}; may add other parameters (IA3 scales the layer's bias too). Each Bundle
        must give, through `apply` on its parameter's current value, the value to commit; its fields carry "base"
        (the hash of that value). Raise a ThetaError saying what is wrong with the entries (the caller names the
        file and the parameter). Types that set `side_load_suffixes` override this.
        """
        raise NotImplementedError(f"update type {self.name!r} sets side_load_suffixes but does not define side_load")

    @classmethod
    def side_load_roles(cls) -> tuple[str, ...]:
        """The roles every side-loaded parameter needs, in the order of `side_load_suffixes`."""
        return tuple(r for r in dict.fromkeys(cls.side_load_suffixes.values()) if r not in cls.side_load_optional_roles)

    def checked_base(self, bundle: Bundle, base: Tensor | None) -> Tensor:
        """`base`, after checking it is the tensor this link was made for (its "base" hash field)."""
        if base is None:
            raise StoreError(f"{self.name} update has no base to apply to")
        expected = bundle.fields.get("base")
        if not isinstance(expected, str):
            raise StoreError(f"{self.name} object lacks the hash of its base tensor")
        actual = base.hash()
        if actual != expected:
            raise StoreError(
                f"{self.name} update was made for base tensor {expected}, but the chain before it gives {actual}"
            )
        return base

    def buffer(self, bundle: Bundle, name: str) -> Tensor:
        """A named buffer of the object, or a clear StoreError."""
        if name not in bundle.buffers:
            raise StoreError(
                f"{self.name} object has no {name!r} buffer (it has: {', '.join(sorted(bundle.buffers)) or 'none'})"
            )
        return bundle.buffers[name]


def bits(tensor: Tensor) -> np.ndarray[Any, Any]:
    """The tensor's elements as unsigned integers of the same size, flat: exact bitwise compare and XOR."""
    import numpy as np

    return np.frombuffer(tensor.data, dtype=dtypes.numpy_dtype(BITS_DTYPE[dtypes.itemsize(tensor.dtype)]))


def from_bits(dtype: str, shape: tuple[int, ...], values: np.ndarray[Any, Any]) -> Tensor:
    """A tensor of `dtype` whose raw bytes are those of the unsigned array `values`."""
    import numpy as np

    return Tensor(dtype, shape, memoryview(np.ascontiguousarray(values).reshape(-1).view(np.uint8)))  # type: ignore[arg-type]


def compute_dtype(dtype: str) -> np.dtype[Any]:
    """Float arithmetic of update types runs in float32 (float64 for F64 parameters, so they keep their precision)."""
    import numpy as np

    return np.dtype(np.float64) if dtype == "F64" else np.dtype(np.float32)


def as_float(tensor: Tensor, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    return tensor.numpy().astype(dtype)


def cast_to(array: np.ndarray[Any, Any], dtype: str, shape: tuple[int, ...]) -> Tensor:
    """Round float results to the parameter's dtype (round to nearest even, as numpy/ml_dtypes do)."""
    return Tensor.from_numpy(array.astype(dtypes.numpy_dtype(dtype)).reshape(shape), dtype)


def require_float(kind: str, what: str, tensor: Tensor) -> None:
    if not dtypes.is_float(tensor.dtype):
        raise StoreError(f"{kind}: {what} must be a float tensor, not {tensor.dtype}")
