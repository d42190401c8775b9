"""median: the element-wise median of the versions (robust to one outlying branch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy


class MedianStrategy(MergeStrategy):
    """merged = medianᵢ θᵢ per entry; with an even number of versions, the mean of the two middle values.

    With `include_base` = 1 the merge base's version votes too.
    """

    name = "median"
    summary = "element-wise median of the versions"
    arguments = (
        Argument("include_base", int, 0, "1: count the merge base's version as one more vote", minimum=0, maximum=1),
    )

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        voters = list(versions)
        if arguments["include_base"]:
            if base is None:
                raise ThetaError(
                    f"merge strategy 'median': include_base=1 but parameter {name!r} has no merge-base version"
                )
            voters.append(base)
        return np.median(np.stack(voters), axis=0)
