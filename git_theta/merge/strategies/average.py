"""average: the element-wise mean of all versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.merge.strategies.base import MergeStrategy


class AverageStrategy(MergeStrategy):
    """merged = (1/n) · Σᵢ θᵢ over the n versions."""

    name = "average"
    summary = "element-wise mean of the versions (equal weights)"

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        total = np.zeros_like(versions[0])
        for version in versions:
            total += version
        return total / len(versions)
