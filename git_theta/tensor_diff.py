"""Numbers describing how one tensor changed into another of the same dtype and shape.

Computed in float64 over fixed-size chunks, so the extra memory is a few
chunks whatever the tensor's size. "Changed" compares raw bits, the same
equality the rest of git-theta uses (so -0.0 -> +0.0 or a NaN payload counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from git_theta import dtypes
from git_theta.tensor import Tensor

CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class ChangeStats:
    """`relative` = norm / ||old||; `cosine` of old and new; None where a norm is zero."""

    norm: float
    relative: float | None
    changed: float
    changed_count: int
    max_abs: float
    cosine: float | None

    def to_json(self) -> dict[str, Any]:
        # JSON has no NaN or infinity; such values (NaN weights) become null.
        return {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in asdict(self).items()
        }


def compare(old: Tensor, new: Tensor) -> ChangeStats:
    if (old.dtype, old.shape) != (new.dtype, new.shape):
        raise ValueError(f"cannot compare {old.dtype}{list(old.shape)} with {new.dtype}{list(new.shape)}")
    bits = np.dtype(f"<u{dtypes.itemsize(old.dtype)}")
    old_bits = np.frombuffer(old.data, dtype=bits)
    new_bits = np.frombuffer(new.data, dtype=bits)
    old_values = old.numpy().reshape(-1)
    new_values = new.numpy().reshape(-1)
    delta_sq = old_sq = new_sq = dot = 0.0
    max_abs = 0.0
    changed = 0
    for start in range(0, old_values.size, CHUNK_ELEMENTS):
        end = start + CHUNK_ELEMENTS
        a = old_values[start:end].astype(np.float64)
        b = new_values[start:end].astype(np.float64)
        same = old_bits[start:end] == new_bits[start:end]
        # Unchanged entries contribute exactly 0, even where they hold inf (inf - inf would be NaN,
        # computed and then dropped by np.where: no warning for it).
        with np.errstate(invalid="ignore"):
            delta = np.where(same, 0.0, b - a)
        delta_sq += float(delta @ delta)
        old_sq += float(a @ a)
        new_sq += float(b @ b)
        dot += float(a @ b)
        if delta.size:
            largest = float(np.max(np.abs(delta)))
            if largest > max_abs or math.isnan(largest):  # a NaN stays NaN
                max_abs = largest
        changed += int(same.size - np.count_nonzero(same))
    return _stats(delta_sq, old_sq, new_sq, dot, max_abs, changed, int(old_values.size))


def _stats(
    delta_sq: float, old_sq: float, new_sq: float, dot: float, max_abs: float, changed: int, size: int
) -> ChangeStats:
    norm = math.sqrt(delta_sq)
    old_norm, new_norm = math.sqrt(old_sq), math.sqrt(new_sq)
    return ChangeStats(
        norm=norm,
        relative=norm / old_norm if old_norm else None,
        changed=changed / size if size else 0.0,
        changed_count=changed,
        max_abs=max_abs,
        cosine=_clamp(dot / (old_norm * new_norm)) if old_norm and new_norm else None,
    )


# compare_many computes pairs of at most this many elements together, at most this many elements at a time.
SMALL_ELEMENTS = 1 << 16
GROUP_ELEMENTS = 1 << 20


def compare_many(pairs: Sequence[tuple[Tensor, Tensor]]) -> list[ChangeStats]:
    """compare() of each pair, in order. Small pairs of one dtype and size are computed as the rows of one
    array: ~10 numpy calls per pair cost ~20 us, more than a 4 KB tensor's arithmetic, and a version of 10^5
    small tensors may change 10^4 of them. Sums are then taken per row in another order than compare's, so a
    result may differ from compare's in its last bits."""
    found: dict[int, ChangeStats] = {}
    groups: dict[tuple[str, int], list[int]] = {}
    for index, (old, new) in enumerate(pairs):
        elements = math.prod(old.shape)
        if (old.dtype, old.shape) != (new.dtype, new.shape) or not 0 < elements <= SMALL_ELEMENTS:
            found[index] = compare(old, new)  # refuses a mismatch as compare does
        else:
            groups.setdefault((old.dtype, elements), []).append(index)
    for (dtype, elements), indices in groups.items():
        rows = max(1, GROUP_ELEMENTS // elements)
        for start in range(0, len(indices), rows):
            part = indices[start : start + rows]
            for index, stats in zip(part, _compare_rows(dtype, elements, [pairs[i] for i in part])):
                found[index] = stats
    return [found[index] for index in range(len(pairs))]


def _compare_rows(dtype: str, elements: int, pairs: list[tuple[Tensor, Tensor]]) -> list[ChangeStats]:
    """compare() of pairs of one dtype and `elements` elements, each pair a row."""
    bits = np.dtype(f"<u{dtypes.itemsize(dtype)}")
    old_bits = np.stack([np.frombuffer(old.data, dtype=bits) for old, _ in pairs])
    new_bits = np.stack([np.frombuffer(new.data, dtype=bits) for _, new in pairs])
    values = dtypes.numpy_dtype(dtype)
    a = old_bits.view(values).astype(np.float64)
    b = new_bits.view(values).astype(np.float64)
    same = old_bits == new_bits
    with np.errstate(invalid="ignore"):
        delta = np.where(same, 0.0, b - a)
    delta_sq = np.einsum("ij,ij->i", delta, delta)
    old_sq = np.einsum("ij,ij->i", a, a)
    new_sq = np.einsum("ij,ij->i", b, b)
    dot = np.einsum("ij,ij->i", a, b)
    max_abs = np.max(np.abs(delta), axis=1)
    changed = elements - np.count_nonzero(same, axis=1)
    return [
        _stats(
            float(delta_sq[i]),
            float(old_sq[i]),
            float(new_sq[i]),
            float(dot[i]),
            float(max_abs[i]),
            int(changed[i]),
            elements,
        )
        for i in range(len(pairs))
    ]


def _clamp(cosine: float) -> float:
    """Rounding can push a cosine just past +-1; NaN passes through."""
    return cosine if math.isnan(cosine) else max(-1.0, min(1.0, cosine))
