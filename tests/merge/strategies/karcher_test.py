"""karcher: the Riemannian mean of the versions' directions, scaled by their mean norm."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from git_theta.merge.strategies.karcher import KarcherStrategy


def merge(versions: list[np.ndarray], **given: object) -> np.ndarray:
    return KarcherStrategy().merge(versions, None, KarcherStrategy.parse_arguments(given), "w")


def on_circle(angle: float, norm: float, extra: int = 0) -> np.ndarray:
    """A vector in the plane of the first two axes (padded with zeros): on a great circle the Karcher mean is the mean
    angle."""
    return np.array([norm * math.cos(angle), norm * math.sin(angle)] + [0.0] * extra)


@pytest.mark.parametrize("angles", [(0.0, 1.0), (0.0, 0.3, 1.0), (-0.5, 0.2, 0.4, 1.2)])
def test_mean_angle_on_a_great_circle(angles: tuple[float, ...]) -> None:
    norms = [1.0, 2.0, 3.0, 4.0][: len(angles)]
    merged = merge([on_circle(a, n, extra=3) for a, n in zip(angles, norms)], max_iter=50, tol=1e-12)
    expected = on_circle(sum(angles) / len(angles), sum(norms) / len(norms), extra=3)
    np.testing.assert_allclose(merged, expected, rtol=1e-10, atol=1e-12)


def test_orthogonal_unit_vectors_and_all_equal() -> None:
    np.testing.assert_allclose(merge([np.array([1.0, 0.0]), np.array([0.0, 1.0])]), [2**-0.5, 2**-0.5], rtol=1e-15)
    same = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(merge([same] * 3), same, rtol=1e-15)


def test_zero_versions_count_in_the_norm_but_not_the_direction() -> None:
    # the zero vector has no direction; its norm 0 still counts in the mean norm (as mergekit does)
    np.testing.assert_allclose(
        merge([np.array([3.0, 0.0]), np.zeros(2), np.array([0.0, 3.0])]), np.array([2**-0.5, 2**-0.5]) * 2.0, rtol=1e-15
    )
    np.testing.assert_array_equal(merge([np.zeros(3), np.zeros(3)]), np.zeros(3))


def test_first_order_condition_in_three_dimensions() -> None:
    rng = np.random.default_rng(70)
    versions = [rng.normal(size=(2, 3)) + 2.0 for _ in range(3)]
    merged = merge(versions, max_iter=100, tol=1e-13).ravel()
    mean = merged / np.linalg.norm(merged)
    # Σ log_m(uᵢ) = 0 at the Karcher mean
    total = np.zeros(6)
    for version in versions:
        unit = version.ravel() / np.linalg.norm(version)
        theta = math.acos(float(np.clip(unit @ mean, -1, 1)))
        total += theta / math.sin(theta) * (unit - math.cos(theta) * mean)
    assert np.linalg.norm(total) < 1e-10
    np.testing.assert_allclose(np.linalg.norm(merged), np.mean([np.linalg.norm(v) for v in versions]), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_parameters(dtype: type) -> None:
    versions = [on_circle(a, 1.0).astype(dtype).astype(np.float64) for a in (0.0, 0.5)]
    angle = sum(math.atan2(v[1], v[0]) for v in versions) / 2
    norm = sum(np.linalg.norm(v) for v in versions) / 2
    np.testing.assert_allclose(merge(versions, max_iter=50, tol=1e-12), on_circle(angle, norm), rtol=1e-10, atol=1e-12)
