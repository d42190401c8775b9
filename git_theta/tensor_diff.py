"""Numbers describing how one tensor changed into another of the same dtype and shape.

Computed in float64 over fixed-size chunks, so the extra memory is a few
chunks whatever the tensor's size. "Changed" compares raw bits, the same
equality the rest of git-theta uses (so -0.0 -> +0.0 or a NaN payload counts).
"""

from __future__ import annotations

import math
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
    norm = math.sqrt(delta_sq)
    old_norm, new_norm = math.sqrt(old_sq), math.sqrt(new_sq)
    return ChangeStats(
        norm=norm,
        relative=norm / old_norm if old_norm else None,
        changed=changed / old_values.size if old_values.size else 0.0,
        changed_count=changed,
        max_abs=max_abs,
        cosine=_clamp(dot / (old_norm * new_norm)) if old_norm and new_norm else None,
    )


def _clamp(cosine: float) -> float:
    """Rounding can push a cosine just past +-1; NaN passes through."""
    return cosine if math.isnan(cosine) else max(-1.0, min(1.0, cosine))
