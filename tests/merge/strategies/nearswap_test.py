"""nearswap: b within t of a, else a moved by t toward b (mergekit's w·b + (1−w)·a, w = min(1, t/|a−b|))."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.nearswap import NearswapStrategy


def merge(versions: list[np.ndarray], t: float) -> np.ndarray:
    return NearswapStrategy().merge(versions, None, NearswapStrategy.parse_arguments({"t": t}), "w")


def definition(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    out = []
    for x, y in zip(a.ravel(), b.ravel()):
        w = 1.0 if abs(x - y) == 0 else min(1.0, t / abs(x - y))
        out.append(y if w == 1.0 else w * y + (1 - w) * x)
    return np.array(out).reshape(a.shape)


def test_hand_checked() -> None:
    ours = np.array([1.0, 1.0, 1.0, -2.0, 0.0])
    theirs = np.array([1.05, 1.5, 0.0, -2.0, -0.1])
    np.testing.assert_allclose(merge([ours, theirs], 0.1), [1.05, 1.1, 0.9, -2.0, -0.1], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ml_dtypes.bfloat16])
def test_matches_definition(dtype: type) -> None:
    rng = np.random.default_rng(60)
    a = rng.normal(size=(5, 5)).astype(dtype).astype(np.float64)
    b = (a + rng.normal(scale=0.01, size=a.shape)).astype(dtype).astype(np.float64)
    np.testing.assert_allclose(merge([a, b], 0.005), definition(a, b, 0.005), rtol=1e-14, atol=1e-16)


def test_within_t_is_their_value_bit_for_bit_and_t_zero_is_ours() -> None:
    a, b = np.array([0.1, 0.3]), np.array([0.2, 0.30000000000000004])
    assert merge([a, b], 1.0).tobytes() == b.tobytes()
    np.testing.assert_array_equal(merge([a, b], 0.0), a)
    np.testing.assert_array_equal(merge([a, a], 0.5), a)  # all equal


def test_exactly_two_versions() -> None:
    with pytest.raises(ThetaError, match="exactly 2 versions"):
        merge([np.ones(2)] * 3, 0.1)
