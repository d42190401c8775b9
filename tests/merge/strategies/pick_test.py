"""ours / theirs / base pick a version without computing."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.pick import BaseStrategy, OursStrategy, TheirsStrategy

OURS, THEIRS, BASE = np.array([1.0, -0.0]), np.array([2.0, 3.0]), np.array([0.0, 0.0])


@pytest.mark.parametrize(
    ("strategy", "index", "expected"), [(OursStrategy, 0, OURS), (TheirsStrategy, 1, THEIRS), (BaseStrategy, -1, BASE)]
)
def test_pick_index_and_value(strategy: type, index: int, expected: np.ndarray) -> None:
    plugin = strategy()
    assert plugin.pick({}) == index
    assert plugin.merge([OURS, THEIRS], BASE, {}, "w") is (expected)


def test_pick_of_missing_version_is_an_error() -> None:
    with pytest.raises(ThetaError, match="has no such version"):
        BaseStrategy().merge([OURS, THEIRS], None, {}, "w")
