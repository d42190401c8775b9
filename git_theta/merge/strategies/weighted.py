"""weighted: a convex combination with one weight per branch (SMEAR-style parameter averaging)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy


class Weights(tuple):  # type: ignore[type-arg]
    """Branch weights from "0.7,0.3" (command line, git config) or [0.7, 0.3] (TOML)."""

    display_name = "list of float"

    def __new__(cls, value: str | Iterable[float]) -> Weights:
        items = value.split(",") if isinstance(value, str) else list(value)
        numbers = tuple(float(item) for item in items)
        if not numbers or any(not np.isfinite(n) or n < 0 for n in numbers) or sum(numbers) <= 0:
            raise ValueError("weights must be non-negative numbers with a positive sum")
        return super().__new__(cls, numbers)


class WeightedStrategy(MergeStrategy):
    """merged = Σᵢ wᵢ θᵢ / Σᵢ wᵢ: a convex combination, weights in the order of the versions (ours first).

    For different weights per parameter group, give several policy rules
    (name patterns), each with its own `weights`.
    """

    name = "weighted"
    summary = "convex combination with one weight per branch"
    arguments = (
        Argument(
            "weights",
            Weights,
            None,
            "one non-negative weight per version, ours first, e.g. 0.7,0.3; normalized to sum 1 (default: equal)",
        ),
    )

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        weights = arguments["weights"] or (1.0,) * len(versions)
        if len(weights) != len(versions):
            raise ThetaError(
                f"merge strategy 'weighted': parameter {name!r} has {len(versions)} versions but {len(weights)} "
                "weights were given"
            )
        total = np.zeros_like(versions[0])
        for weight, version in zip(weights, versions):
            total += weight * version
        return total / float(sum(weights))
