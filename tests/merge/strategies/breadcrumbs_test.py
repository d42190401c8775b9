"""breadcrumbs, breadcrumbs-ties: drop the largest outliers and the smallest entries, then sum or TIES."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from merge_definitions import breadcrumbs, elect, weighted_sum

from git_theta.merge.strategies.breadcrumbs import BreadcrumbsStrategy, BreadcrumbsTiesStrategy
from git_theta.merge.strategies.sparsify import breadcrumbs as breadcrumbs_mask


def args(strategy: type[BreadcrumbsStrategy], **given: object) -> dict[str, object]:
    return {**strategy.parse_arguments({}), **given}


def test_mask_hand_checked() -> None:
    tau = np.array([0.1, -9.0, 3.0, -3.0, 0.5, 2.0, 0.0, 1.0, -4.0, 0.2])
    # by magnitude: -9 (1), -4 (8), 3 (2), -3 (3: tie, higher index), 2, 1, 0.5, 0.2, 0.1, 0
    np.testing.assert_array_equal(
        breadcrumbs_mask(tau, 0.3, 0.1), [0, 0, 3.0, -3.0, 0, 0, 0, 0, -4.0, 0]
    )  # -9 is the outlier
    np.testing.assert_array_equal(
        breadcrumbs_mask(tau, 0.3, 0.0), [0, -9.0, 3.0, 0, 0, 0, 0, 0, -4.0, 0]
    )  # no outlier dropped
    np.testing.assert_array_equal(
        breadcrumbs_mask(tau, 0.85, 0.3), [0.1, 0, 3.0, -3.0, 0.5, 2.0, 0.0, 1.0, -4.0, 0.2]
    )  # 9 kept: 1 outlier


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_definition(count: int, normalize: bool) -> None:
    rng = np.random.default_rng(20 + count)
    base = rng.normal(size=(4, 6))
    versions = [base + rng.normal(size=base.shape) for _ in range(count)]
    densities, gammas, weights = (0.5, 0.3, 0.8)[:count], (0.1, 0.05, 0.2)[:count], (1.0, 0.5, 2.0)[:count]
    taus = [breadcrumbs(v - base, d, g) for v, d, g in zip(versions, densities, gammas)]
    given = {"density": densities, "gamma": gammas, "weight": weights, "normalize": normalize, "lambda": 0.7}
    plain = BreadcrumbsStrategy().merge(versions, base, args(BreadcrumbsStrategy, **given), "w")
    np.testing.assert_allclose(plain, base + 0.7 * weighted_sum(taus, list(weights), normalize), rtol=1e-13, atol=1e-15)
    ties = BreadcrumbsTiesStrategy().merge(versions, base, args(BreadcrumbsTiesStrategy, **given), "w")
    np.testing.assert_allclose(ties, base + 0.7 * elect(taus, list(weights), normalize), rtol=1e-13, atol=1e-15)


def test_zero_signs_and_all_equal_inputs() -> None:
    base = np.zeros(4)
    versions = [np.array([1.0, -2.0, 0.0, 5.0]), np.array([-1.0, -2.0, 0.0, 5.0])]
    given = {"density": 1.0, "gamma": 0.0, "normalize": True}
    # entry 0 sums to 0: no sign elected, 0; entry 2 is 0 everywhere
    np.testing.assert_array_equal(
        BreadcrumbsTiesStrategy().merge(versions, base, args(BreadcrumbsTiesStrategy, **given), "w"),
        [0.0, -2.0, 0.0, 5.0],
    )
    same = [np.full(6, 2.5)] * 3
    assert BreadcrumbsStrategy().merge(same, np.full(6, 2.5), args(BreadcrumbsStrategy), "w").tolist() == [2.5] * 6


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_parameters_converted_by_the_caller(dtype: type) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=40).astype(dtype).astype(np.float64)
    versions = [(base + rng.normal(size=40)).astype(dtype).astype(np.float64) for _ in range(2)]
    taus = [breadcrumbs(v - base, 0.5, 0.05) for v in versions]
    merged = BreadcrumbsStrategy().merge(versions, base, args(BreadcrumbsStrategy, density=0.5, gamma=0.05), "w")
    np.testing.assert_array_equal(merged, base + weighted_sum(taus, [1.0, 1.0], False))


def test_is_deterministic_without_a_seed() -> None:
    assert "seed" not in BreadcrumbsStrategy.parse_arguments({})
