"""ours, theirs, base: take one version as is, without loading any tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import MergeStrategy


class _Pick(MergeStrategy):
    # Index into the versions (ours first); -1 is the merge base.
    index: ClassVar[int]

    def pick(self, arguments: Mapping[str, Any]) -> int | None:
        return self.index

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        chosen = base if self.index < 0 else versions[self.index] if self.index < len(versions) else None
        if chosen is None:
            raise ThetaError(f"merge strategy {self.name!r}: parameter {name!r} has no such version")
        return chosen


class OursStrategy(_Pick):
    """merged = ours (the first version; the current branch in `git merge`), bit for bit."""

    name = "ours"
    summary = "keep our version of the parameter"
    index = 0


class TheirsStrategy(_Pick):
    """merged = theirs (the second version; the branch being merged in), bit for bit."""

    name = "theirs"
    summary = "take their version of the parameter"
    index = 1


class BaseStrategy(_Pick):
    """merged = base (the merge base's version), bit for bit; undoes both sides' changes."""

    name = "base"
    summary = "go back to the merge base's version"
    index = -1
    needs_base = True
