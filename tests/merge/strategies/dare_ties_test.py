"""dare-ties: DARE's seeded drop and rescale, then TIES sign election."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from merge_definitions import draws, elect

from git_theta.merge.strategies.dare import DareStrategy
from git_theta.merge.strategies.dare_ties import DareTiesStrategy


def merge(versions: list[np.ndarray], base: np.ndarray, name: str = "w", **given: object) -> np.ndarray:
    return DareTiesStrategy().merge(versions, base, {**DareTiesStrategy.parse_arguments({}), **given}, name)


def definition(
    base: np.ndarray,
    versions: list[np.ndarray],
    densities: list[float],
    weights: list[float],
    lam: float,
    normalize: bool,
    seed: int,
    name: str,
) -> np.ndarray:
    rng = draws(seed, name)
    taus = []
    for version, density in zip(versions, densities):
        p = 1 - density
        keep = rng.random(base.shape) >= p
        taus.append(np.where(keep, (version - base) / (1 - p), 0.0))
    return base + lam * elect(taus, weights, normalize)


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_definition(count: int, normalize: bool) -> None:
    rng = np.random.default_rng(30 + count)
    base = rng.normal(size=(5, 3))
    versions = [base + rng.normal(size=base.shape) for _ in range(count)]
    densities, weights = (0.5, 0.8, 0.3)[:count], (1.0, 0.5, 2.0)[:count]
    merged = merge(
        versions, base, "enc.w", density=densities, weight=weights, normalize=normalize, seed=5, **{"lambda": 0.9}
    )
    expected = definition(base, versions, list(densities), list(weights), 0.9, normalize, 5, "enc.w")
    np.testing.assert_allclose(merged, expected, rtol=1e-13, atol=1e-15)


def test_same_masks_as_dare() -> None:
    # one-version dare-ties keeps exactly the entries dare keeps (the same draws), sign election changes nothing
    base, version = np.zeros(50), np.arange(1.0, 51.0)
    ours = merge([version], base, density=0.6, seed=2)
    dare = DareStrategy().merge([version], base, {"p": 0.4, "lambda": 1.0, "seed": 2, "weight": 1.0}, "w")
    np.testing.assert_allclose(ours, dare, rtol=1e-15)


def test_zero_sign_and_all_equal() -> None:
    base = np.zeros(3)
    versions = [np.array([1.0, 2.0, 0.0]), np.array([-1.0, 2.0, 0.0])]
    np.testing.assert_array_equal(merge(versions, base, density=1.0), [0.0, 4.0, 0.0])  # 1 − 1 elects no sign
    np.testing.assert_array_equal(merge(versions, base, density=1.0, normalize=True), [0.0, 2.0, 0.0])
    same = [np.full(4, 0.5)] * 3
    np.testing.assert_array_equal(merge(same, np.full(4, 0.5), density=0.5), np.full(4, 0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_parameters(dtype: type) -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=30).astype(dtype).astype(np.float64)
    versions = [(base + rng.normal(size=30)).astype(dtype).astype(np.float64) for _ in range(3)]
    expected = definition(base, versions, [0.5] * 3, [1.0] * 3, 1.0, False, 0, "w")
    np.testing.assert_allclose(merge(versions, base), expected, rtol=1e-13, atol=1e-15)


def test_golden_value_for_a_fixed_seed() -> None:
    merged = merge([np.arange(1.0, 9.0), -np.arange(8.0, 0.0, -1.0) / 2], np.zeros(8), name="encoder.w", seed=42)
    assert merged.tolist() == GOLDEN


# merge([1..8, -(8..1)/2], zeros, "encoder.w", density 0.5, seed 42): the bytes every machine must produce
GOLDEN = [0.0, -7.0, 6.0, -5.0, 0.0, 0.0, 14.0, 0.0]
