"""task-arithmetic: base + λ Σ τᵢ."""

from __future__ import annotations

import numpy as np

from git_theta.merge.strategies.task_arithmetic import TaskArithmeticStrategy


def test_hand_checked() -> None:
    base = np.array([1.0, 1.0, 1.0])
    versions = [np.array([2.0, 1.0, 0.0]), np.array([1.0, 3.0, 0.0])]  # τ = [1,0,-1], [0,2,-1]
    args = TaskArithmeticStrategy.parse_arguments({"lambda": "0.5"})
    np.testing.assert_array_equal(TaskArithmeticStrategy().merge(versions, base, args, "w"), [1.5, 2.0, 0.0])


def test_matches_numpy_definition() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(4, 3))
    versions = [base + rng.normal(scale=0.1, size=base.shape) for _ in range(3)]
    expected = base + 0.7 * np.sum([v - base for v in versions], axis=0)
    merged = TaskArithmeticStrategy().merge(versions, base, {"lambda": 0.7}, "w")
    np.testing.assert_allclose(merged, expected, rtol=1e-13)


def test_per_model_weights_and_normalize() -> None:
    base = np.array([1.0, 0.0])
    versions = [np.array([3.0, 1.0]), np.array([1.0, 4.0])]  # τ = [2, 1], [0, 4]
    plain = TaskArithmeticStrategy().merge(
        versions, base, {"lambda": 1.0, "weight": (0.5, 2.0), "normalize": False}, "w"
    )
    np.testing.assert_array_equal(plain, [1.0 + 1.0, 0.5 + 8.0])
    normalized = TaskArithmeticStrategy().merge(
        versions, base, {"lambda": 1.0, "weight": (0.5, 2.0), "normalize": True}, "w"
    )
    np.testing.assert_array_equal(normalized, [1.0 + 1.0 / 2.5, 8.5 / 2.5])


def test_normalize_reads_false_as_false() -> None:
    assert TaskArithmeticStrategy.parse_arguments({"normalize": "false"})["normalize"] == 0
    assert TaskArithmeticStrategy.parse_arguments({"normalize": True})["normalize"] == 1
