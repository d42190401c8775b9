"""della, della-linear: MagPrune (keep probability by magnitude rank within a row), rescale, then TIES or a sum."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from merge_definitions import draws, elect, magprune, weighted_sum

from git_theta.errors import ThetaError
from git_theta.merge.strategies.della import DellaLinearStrategy, DellaStrategy


def merge(
    strategy: type[DellaStrategy], versions: list[np.ndarray], base: np.ndarray, name: str = "w", **given: object
) -> np.ndarray:
    return strategy().merge(versions, base, {**strategy.parse_arguments({}), **given}, name)


def definition(
    base: np.ndarray, versions: list[np.ndarray], densities: list[float], epsilons: list[float], seed: int, name: str
) -> list[np.ndarray]:
    rng = draws(seed, name)
    return [magprune(v - base, d, e, rng) for v, d, e in zip(versions, densities, epsilons)]


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("shape", [(4, 5), (7,), (2, 3, 2)])
def test_matches_definition(count: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(40 + count)
    base = rng.normal(size=shape)
    versions = [base + rng.normal(size=shape) for _ in range(count)]
    densities, epsilons, weights = (0.5, 0.4, 0.7)[:count], (0.1, 0.2, 0.25)[:count], (1.0, 0.5, 2.0)[:count]
    given = {"density": densities, "epsilon": epsilons, "weight": weights, "seed": 9, "lambda": 0.8}
    taus = definition(base, versions, list(densities), list(epsilons), 9, "layer.w")
    ties = merge(DellaStrategy, versions, base, "layer.w", **given)
    np.testing.assert_allclose(ties, base + 0.8 * elect(taus, list(weights), True), rtol=1e-13, atol=1e-15)
    linear = merge(DellaLinearStrategy, versions, base, "layer.w", **given)
    np.testing.assert_allclose(linear, base + 0.8 * weighted_sum(taus, list(weights), False), rtol=1e-13, atol=1e-15)


def test_keep_probabilities_by_rank_hand_checked() -> None:
    # one row of 3: ranks 2, 0, 1 -> keep probabilities 0.6, 0.4, 0.5 (density 0.5 ± 0.1); survivors scaled by 1/k
    tau = np.array([-3.0, 1.0, 2.0])
    uniform = draws(0, "w").random(3)
    kept = merge(DellaLinearStrategy, [tau], np.zeros(3), density=0.5, epsilon=0.1)
    expected = [
        (-3.0 / 0.6 if uniform[0] >= 0.4 else 0.0),
        (1.0 / 0.4 if uniform[1] >= 0.6 else 0.0),
        (2.0 / 0.5 if uniform[2] >= 0.5 else 0.0),
    ]
    np.testing.assert_allclose(kept, expected, rtol=1e-15)


def test_large_entries_survive_more_often() -> None:
    tau = np.tile(np.arange(1.0, 101.0), (200, 1))  # 200 rows, magnitudes 1..100
    kept = merge(DellaLinearStrategy, [tau], np.zeros_like(tau), density=0.5, epsilon=0.4) != 0
    assert kept[:, :10].mean() < 0.2 and kept[:, -10:].mean() > 0.8


def test_zero_sign_all_equal_and_same_bytes() -> None:
    base = np.zeros((1, 2))
    versions = [np.array([[1.0, 2.0]]), np.array([[-1.0, 2.0]])]
    merged = merge(DellaStrategy, versions, base, density=0.9, epsilon=0.1)  # keep probabilities 0.8 and 1.0
    assert merged[0, 0] in (0.0, 1.0 / 0.8, -1.0 / 0.8)  # if both survive, 1 − 1 elects no sign: 0
    same = [np.full(5, 1.5)] * 3
    np.testing.assert_array_equal(merge(DellaStrategy, same, np.full(5, 1.5)), np.full(5, 1.5))
    first = merge(DellaStrategy, versions, base, "a.w", seed=3)
    assert first.tobytes() == merge(DellaStrategy, versions, base, "a.w", seed=3).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_parameters(dtype: type) -> None:
    rng = np.random.default_rng(8)
    base = rng.normal(size=(3, 8)).astype(dtype).astype(np.float64)
    versions = [(base + rng.normal(size=base.shape)).astype(dtype).astype(np.float64) for _ in range(2)]
    taus = definition(base, versions, [0.5, 0.5], [0.15, 0.15], 0, "w")
    np.testing.assert_allclose(
        merge(DellaStrategy, versions, base), base + elect(taus, [1.0, 1.0], True), rtol=1e-13, atol=1e-15
    )


def test_golden_value_for_a_fixed_seed() -> None:
    merged = merge(
        DellaStrategy,
        [np.arange(1.0, 9.0).reshape(2, 4), -np.arange(8.0, 0.0, -1.0).reshape(2, 4) / 2],
        np.zeros((2, 4)),
        "encoder.w",
        seed=42,
    )
    assert merged.ravel().tolist() == GOLDEN


def test_density_minus_epsilon_must_stay_positive() -> None:
    with pytest.raises(
        ThetaError, match=r"merge strategy 'della', parameter 'w': density ± epsilon must lie in \(0, 1\]"
    ):
        merge(DellaStrategy, [np.ones(3), -np.ones(3)], np.zeros(3), density=0.1, epsilon=0.2)


# della of [[1..4], [5..8]] and -[[8..5], [4..1]]/2 over zeros, "encoder.w", density 0.5, epsilon 0.15, seed 42
GOLDEN = [
    -6.153846153846155,
    -6.363636363636364,
    5.454545454545455,
    -7.142857142857143,
    0.0,
    0.0,
    12.727272727272728,
    0.0,
]
