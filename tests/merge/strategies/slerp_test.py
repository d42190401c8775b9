"""slerp: spherical interpolation between two versions."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.slerp import SlerpStrategy


def merge(first: np.ndarray, second: np.ndarray, t: float) -> np.ndarray:
    return SlerpStrategy().merge([first, second], None, {"t": t}, "w")


def test_orthogonal_unit_vectors_hand_checked() -> None:
    # Ω = π/2; t = 0.5 -> sin(π/4) / sin(π/2) = √2/2 on each
    merged = merge(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5)
    np.testing.assert_allclose(merged, [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-15)


def test_matches_formula_on_random_matrices() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    omega = np.arccos(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    expected = np.sin(0.3 * omega) / np.sin(omega) * a + np.sin(0.7 * omega) / np.sin(omega) * b
    np.testing.assert_allclose(merge(a, b, 0.7), expected, rtol=1e-12)


def test_endpoints_and_parallel_fallback() -> None:
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_allclose(merge(a, b, 0.0), a, rtol=1e-15)
    np.testing.assert_allclose(merge(a, b, 1.0), b, rtol=1e-15)
    np.testing.assert_array_equal(merge(a, 2 * a, 0.5), 1.5 * a)  # parallel: lerp
    np.testing.assert_array_equal(merge(np.zeros(2), b, 0.25), 0.25 * b)  # zero vector: lerp


def test_exactly_two_versions() -> None:
    with pytest.raises(ThetaError, match="exactly 2 versions"):
        SlerpStrategy().merge([np.ones(2)] * 3, None, {"t": 0.5}, "w")
