"""ties: trim to top-k magnitude, elect sign by summed mass, disjoint mean, scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.task_vectors import trim
from git_theta.merge.strategies.ties import TiesStrategy


def reference_ties(base: np.ndarray, versions: list[np.ndarray], k: float, lam: float) -> np.ndarray:
    """TIES straight from the paper's three steps, element by element."""
    taus = [(v - base).ravel() for v in versions]
    trimmed = []
    for tau in taus:
        keep = math.ceil(round(k * tau.size, 9))
        order = sorted(range(tau.size), key=lambda i: (-abs(tau[i]), i))[:keep]
        trimmed.append([tau[i] if i in order else 0.0 for i in range(tau.size)])
    merged = []
    for i in range(base.size):
        column = [t[i] for t in trimmed]
        sign = np.sign(sum(column))
        agreeing = [x for x in column if x != 0 and np.sign(x) == sign]
        merged.append(sum(agreeing) / len(agreeing) if agreeing else 0.0)
    return base + lam * np.array(merged).reshape(base.shape)


def test_sign_conflicts_hand_checked() -> None:
    base = np.zeros(5)
    versions = [
        np.array([3.0, -1.0, 0.5, 2.0, -4.0]),  # trimmed (k=0.4 keeps 2): [3, 0, 0, 0, -4]
        np.array([-2.0, 2.0, 0.1, 1.0, -1.0]),  # tie |2| = |-2| keeps indices 0, 1: [-2, 2, 0, 0, 0]
        np.array([-2.0, 0.0, 0.0, 0.0, 1.0]),  # [-2, 0, 0, 0, 1]
    ]
    # summed mass [-1, 2, 0, 0, -3] elects signs [-, +, 0, 0, -];
    # entry 0: mean(-2, -2) = -2 (the +3 disagrees); entry 4: -4 (the +1 disagrees)
    merged = TiesStrategy().merge(versions, base, TiesStrategy.parse_arguments({"k": 0.4}), "w")
    np.testing.assert_array_equal(merged, [-2.0, 2.0, 0.0, 0.0, -4.0])
    np.testing.assert_array_equal(merged, reference_ties(base, versions, 0.4, 1.0))


def test_lambda_scales_the_merged_task_vector() -> None:
    base = np.array([1.0, 1.0])
    versions = [np.array([3.0, 1.0]), np.array([5.0, 0.0])]  # τ = [2, 0], [4, -1]
    merged = TiesStrategy().merge(versions, base, {"k": 1.0, "lambda": 0.5}, "w")
    np.testing.assert_array_equal(merged, [1.0 + 0.5 * 3.0, 1.0 + 0.5 * -1.0])


def test_defaults_are_k_20_percent_lambda_1() -> None:
    assert TiesStrategy.parse_arguments({}) == {"k": 0.2, "lambda": 1.0, "weight": 1.0}


@pytest.mark.parametrize("k", [0.2, 0.3, 0.5, 1.0, 0.0])
def test_random_tensors_match_reference(k: float) -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(size=(4, 5))
    versions = [base + rng.normal(size=base.shape) for _ in range(3)]
    merged = TiesStrategy().merge(versions, base, {"k": k, "lambda": 1.0}, "w")
    np.testing.assert_allclose(merged, reference_ties(base, versions, k, 1.0), rtol=1e-13, atol=1e-15)


def test_trim_keeps_exact_count_even_with_ties() -> None:
    vector = np.array([1.0, -1.0, 1.0, 0.5, -1.0])
    np.testing.assert_array_equal(trim(vector, 0.4), [1.0, -1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(trim(vector, 0.3), [1.0, -1.0, 0.0, 0.0, 0.0])  # ⌈1.5⌉ = 2


def test_needs_a_base() -> None:
    with pytest.raises(ThetaError, match="needs the merge base"):
        TiesStrategy().merge([np.zeros(2), np.ones(2)], None, {"k": 0.2, "lambda": 1.0}, "w")


def test_k_out_of_range() -> None:
    with pytest.raises(ThetaError, match="above the maximum"):
        TiesStrategy.parse_arguments({"k": "1.5"})


def reference_weighted_ties(
    base: np.ndarray, versions: list[np.ndarray], ks: list[float], weights: list[float], lam: float
) -> np.ndarray:
    """Weighted TIES element by element: trim each τᵢ with its own kᵢ, elect by Σ wᵢτ̂ᵢ, Σ_agree wᵢτ̂ᵢ / Σ_agree wᵢ."""
    trimmed = []
    for version, k in zip(versions, ks):
        tau = (version - base).ravel()
        order = sorted(range(tau.size), key=lambda i: (-abs(tau[i]), i))[: math.ceil(round(k * tau.size, 9))]
        trimmed.append([tau[i] if i in order else 0.0 for i in range(tau.size)])
    merged = []
    for i in range(base.size):
        sign = np.sign(sum(w * t[i] for w, t in zip(weights, trimmed)))
        agreeing = [(w, t[i]) for w, t in zip(weights, trimmed) if w * t[i] != 0 and np.sign(t[i]) == sign]
        merged.append(sum(w * x for w, x in agreeing) / sum(w for w, _ in agreeing) if agreeing else 0.0)
    return base + lam * np.array(merged).reshape(base.shape)


def test_per_model_k_and_weight_hand_checked() -> None:
    base = np.zeros(4)
    versions = [np.array([4.0, -1.0, 2.0, 0.0]), np.array([-1.0, 3.0, 1.0, 2.0])]
    # k = (0.5, 1.0): ours keeps [4, 0, 2, 0], theirs all; w = (1, 3): weighted sums [1, 9, 5, 6] elect all +;
    # entry 0: only ours agrees -> 4; entry 2: (1·2 + 3·1) / 4 = 1.25
    merged = TiesStrategy().merge(versions, base, {"k": (0.5, 1.0), "lambda": 1.0, "weight": (1.0, 3.0)}, "w")
    np.testing.assert_array_equal(merged, [4.0, 3.0, 1.25, 2.0])
    np.testing.assert_array_equal(merged, reference_weighted_ties(base, versions, [0.5, 1.0], [1.0, 3.0], 1.0))


@pytest.mark.parametrize("count", [2, 3])
def test_per_model_matches_reference(count: int) -> None:
    rng = np.random.default_rng(12)
    base = rng.normal(size=(3, 5))
    versions = [base + rng.normal(size=base.shape) for _ in range(count)]
    ks, weights = [0.3, 0.6, 1.0][:count], [0.5, 2.0, 1.0][:count]
    merged = TiesStrategy().merge(versions, base, {"k": tuple(ks), "lambda": 0.8, "weight": tuple(weights)}, "w")
    np.testing.assert_allclose(
        merged, reference_weighted_ties(base, versions, ks, weights, 0.8), rtol=1e-13, atol=1e-15
    )


def test_scalar_is_the_same_as_one_value_per_version() -> None:
    rng = np.random.default_rng(13)
    base = rng.normal(size=20)
    versions = [base + rng.normal(size=20) for _ in range(3)]
    scalar = TiesStrategy().merge(versions, base, {"k": 0.4, "lambda": 1.0, "weight": 1.0}, "w")
    tupled = TiesStrategy().merge(versions, base, {"k": (0.4,) * 3, "lambda": 1.0, "weight": (1.0,) * 3}, "w")
    assert scalar.tobytes() == tupled.tobytes()


def test_per_model_count_must_match_the_versions() -> None:
    with pytest.raises(ThetaError, match="2 values were given .* 3 versions"):
        TiesStrategy().merge([np.ones(2)] * 3, np.zeros(2), {"k": (0.5, 0.5), "lambda": 1.0, "weight": 1.0}, "w")
