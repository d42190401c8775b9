"""nearswap: take their value where it is within t of ours, else move ours by t toward theirs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy


class NearswapStrategy(MergeStrategy):
    """a = ours, b = theirs; w = min(1, t / |a − b|) per entry; merged = w·b + (1 − w)·a, that is
    b where |a − b| ≤ t and a + t·sign(b − a) elsewhere.

    mergekit's `nearswap` (alchemonaut, QuartetAnemoi-70B-t0.0001), with ours in the role of mergekit's
    base model and theirs the other model: exactly two versions. Where |a − b| ≤ t the result is b itself
    (not a + (b − a), which can round differently). Differences from mergekit: |a − b| is used as is
    (mergekit clamps it to at least 1e-6, which for t < 1e-6 moves even entries closer than t only part way).
    """

    name = "nearswap"
    summary = "take their value where it is within t of ours, else move ours by t toward it"
    arguments = (
        Argument(
            "t",
            float,
            0.0001,
            "distance below which their value is taken whole; beyond it ours moves by t toward theirs",
            minimum=0.0,
        ),
    )

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        if len(versions) != 2:
            raise ThetaError(
                f"merge strategy 'nearswap' merges exactly 2 versions; parameter {name!r} has {len(versions)}"
            )
        ours, theirs = versions
        t = float(arguments["t"])
        difference = theirs - ours
        return np.where(np.abs(difference) <= t, theirs, ours + t * np.sign(difference))
