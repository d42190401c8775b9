"""weighted: convex combination with per-branch weights."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.weighted import WeightedStrategy, Weights


def merge(versions: list[np.ndarray], **given: object) -> np.ndarray:
    strategy = WeightedStrategy()
    return strategy.merge(versions, None, WeightedStrategy.parse_arguments(given), "w")


def test_weights_are_normalized_hand_checked() -> None:
    # 3:1 -> 0.75 * [4, 8] + 0.25 * [0, -4] = [3, 5]
    np.testing.assert_array_equal(merge([np.array([4.0, 8.0]), np.array([0.0, -4.0])], weights="3,1"), [3.0, 5.0])


def test_matches_numpy_average_with_weights() -> None:
    rng = np.random.default_rng(2)
    versions = [rng.normal(size=(5,)) for _ in range(3)]
    expected = np.average(versions, axis=0, weights=[0.2, 0.5, 0.3])
    np.testing.assert_allclose(merge(versions, weights=[0.2, 0.5, 0.3]), expected, rtol=1e-14)


def test_default_is_equal_weights() -> None:
    np.testing.assert_array_equal(merge([np.array([1.0]), np.array([2.0]), np.array([6.0])]), [3.0])


def test_weight_count_must_match_versions() -> None:
    with pytest.raises(ThetaError, match="3 versions but 2 weights"):
        merge([np.array([1.0])] * 3, weights="1,2")


@pytest.mark.parametrize("bad", ["1,-1", "0,0", "a,b", ""])
def test_bad_weights_are_rejected(bad: str) -> None:
    with pytest.raises(ThetaError, match="weights"):
        WeightedStrategy.parse_arguments({"weights": bad})


def test_weights_parse_from_text_and_lists() -> None:
    assert Weights("0.7, 0.3") == (0.7, 0.3) == Weights([0.7, 0.3])
