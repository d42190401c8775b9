"""model-stock: t = k·cos / (1 + (k−1)·cos) from the mean pairwise angle of the deltas; t·average + (1−t)·base."""

from __future__ import annotations

import itertools
import math

import ml_dtypes
import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.model_stock import ModelStockStrategy


def merge(versions: list[np.ndarray], base: np.ndarray, **given: object) -> np.ndarray:
    return ModelStockStrategy().merge(versions, base, {**ModelStockStrategy.parse_arguments({}), **given}, "w")


def definition(base: np.ndarray, versions: list[np.ndarray]) -> np.ndarray:
    """The paper's ratio over flattened tensors, k fine-tunes, mean of the pairwise cosines (as mergekit)."""
    taus = [(v - base).ravel().tolist() for v in versions]
    cosines = []
    for a, b in itertools.combinations(taus, 2):
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
        cosines.append(sum(x * y for x, y in zip(a, b)) / (na * nb) if na * nb else 0.0)
    cos = sum(cosines) / len(cosines)
    k = len(versions)
    t = k * cos / (1 + (k - 1) * cos)
    return t * (sum(versions) / k) + (1 - t) * base


def test_hand_checked() -> None:
    base = np.zeros(2)
    # τ = [1, 1], [1, 0]: cos = 1/√2, t = 2c/(1+c) = 0.8284...; average [1, 0.5]
    merged = merge([np.array([1.0, 1.0]), np.array([1.0, 0.0])], base)
    t = 2 * (2**-0.5) / (1 + 2**-0.5)
    np.testing.assert_allclose(merged, [t, 0.5 * t], rtol=1e-15)
    # orthogonal deltas: t = 0, the base
    np.testing.assert_array_equal(merge([np.array([1.0, 0.0]), np.array([0.0, 1.0])], np.ones(2) * 0), [0.0, 0.0])
    # identical deltas: cos = 1, t = 1, the average
    np.testing.assert_allclose(merge([np.array([2.0, 3.0])] * 3, np.ones(2)), [2.0, 3.0], rtol=1e-15)


@pytest.mark.parametrize("count", [2, 3, 4])
def test_matches_definition(count: int) -> None:
    rng = np.random.default_rng(50 + count)
    base = rng.normal(size=(3, 4))
    shared = rng.normal(size=base.shape)
    versions = [base + shared + 0.5 * rng.normal(size=base.shape) for _ in range(count)]
    np.testing.assert_allclose(merge(versions, base), definition(base, versions), rtol=1e-13)


def test_filter_wise_is_one_ratio_per_row() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(4, 6))
    versions = [base + rng.normal(size=base.shape) for _ in range(3)]
    merged = merge(versions, base, filter_wise=True)
    for row in range(4):
        expected = definition(base[row], [v[row] for v in versions])
        np.testing.assert_allclose(merged[row], expected, rtol=1e-12)
    bias = merge([v[0] for v in versions], base[0], filter_wise=True)  # a 1-D tensor is one row
    np.testing.assert_allclose(bias, definition(base[0], [v[0] for v in versions]), rtol=1e-13)


def test_zero_delta_and_all_equal() -> None:
    base = np.array([1.0, 2.0])
    np.testing.assert_array_equal(merge([base.copy(), np.array([3.0, 3.0])], base), base)  # one side unchanged: cos 0
    np.testing.assert_array_equal(merge([base.copy()] * 3, base), base)
    # antiparallel deltas (k = 2, cos = -1): 1 + cos = 0, t = 0
    np.testing.assert_array_equal(merge([base + 1, base - 1], base), base)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_parameters(dtype: type) -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(size=50).astype(dtype).astype(np.float64)
    versions = [(base + rng.normal(size=50) * 0.1 + 0.1).astype(dtype).astype(np.float64) for _ in range(3)]
    np.testing.assert_allclose(merge(versions, base), definition(base, versions), rtol=1e-12)


def test_needs_two_versions_and_a_base() -> None:
    with pytest.raises(ThetaError, match="at least 2 fine-tuned versions"):
        merge([np.ones(2)], np.zeros(2))
    with pytest.raises(ThetaError, match="needs the merge base"):
        ModelStockStrategy().merge([np.ones(2)] * 2, None, {"filter_wise": False}, "w")
