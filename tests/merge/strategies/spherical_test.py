"""multislerp (barycentric slerp of N versions) and nuslerp (two-version slerp per tensor, row or column)."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.slerp import SlerpStrategy
from git_theta.merge.strategies.spherical import MultislerpStrategy, NuslerpStrategy


def multislerp(versions: list[np.ndarray], base: np.ndarray | None = None, **given: object) -> np.ndarray:
    return MultislerpStrategy().merge(versions, base, {**MultislerpStrategy.parse_arguments({}), **given}, "w")


def nuslerp(versions: list[np.ndarray], base: np.ndarray | None = None, **given: object) -> np.ndarray:
    return NuslerpStrategy().merge(versions, base, {**NuslerpStrategy.parse_arguments({}), **given}, "w")


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return SlerpStrategy().merge([a, b], None, {"t": t}, "w")


def planar_multislerp(angles: list[float], norms: list[float], weights: list[float]) -> np.ndarray:
    """The tangent-space barycenter in closed form on a circle: angle φ_m + Σ wᵢ sin(φᵢ − φ_m), norm Σ wᵢnᵢ."""
    w = [x / sum(weights) for x in weights]
    mean = math.atan2(sum(x * math.sin(a) for x, a in zip(w, angles)), sum(x * math.cos(a) for x, a in zip(w, angles)))
    angle = mean + sum(x * math.sin(a - mean) for x, a in zip(w, angles))
    norm = sum(x * n for x, n in zip(w, norms))
    return np.array([norm * math.cos(angle), norm * math.sin(angle), 0.0])


@pytest.mark.parametrize(
    ("angles", "weights"),
    [([0.0, 1.0], [1.0, 1.0]), ([0.0, 0.4, 1.1], [1.0, 2.0, 0.5]), ([0.2, -0.3, 0.9, 1.4], [1.0, 1.0, 1.0, 3.0])],
)
def test_multislerp_matches_the_planar_closed_form(angles: list[float], weights: list[float]) -> None:
    norms = [1.0, 2.0, 0.5, 3.0][: len(angles)]
    versions = [np.array([n * math.cos(a), n * math.sin(a), 0.0]) for a, n in zip(angles, norms)]
    merged = multislerp(versions, weight=tuple(weights))
    np.testing.assert_allclose(merged, planar_multislerp(angles, norms, weights), rtol=1e-12, atol=1e-14)


def test_multislerp_of_two_equal_norm_versions_is_slerp_midpoint() -> None:
    rng = np.random.default_rng(80)
    a = rng.normal(size=(3, 4))
    b = rng.normal(size=(3, 4))
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    np.testing.assert_allclose(multislerp([a, b]), slerp(a, b, 0.5), rtol=1e-12, atol=1e-14)


def test_multislerp_task_vectors_and_edge_cases() -> None:
    base = np.array([1.0, 1.0, 1.0])
    versions = [base + np.array([1.0, 0.0, 0.0]), base + np.array([0.0, 1.0, 0.0])]
    np.testing.assert_allclose(
        multislerp(versions, base, use_base=True), base + np.array([2**-0.5, 2**-0.5, 0.0]), rtol=1e-15
    )
    same = np.array([0.5, -2.0])
    np.testing.assert_allclose(multislerp([same] * 3), same, rtol=1e-15)
    # antipodal: two versions fall back to the weighted mean, three are refused
    np.testing.assert_array_equal(multislerp([np.array([1.0, 0.0]), np.array([-1.0, 0.0])]), [0.0, 0.0])
    with pytest.raises(ThetaError, match="weighted mean direction of parameter 'w' is zero"):
        multislerp([np.array([1.0, 0.0]), np.array([-1.0, 0.0]), np.array([0.0, 0.0])])
    with pytest.raises(ThetaError, match="use_base needs the merge base"):
        multislerp(versions, None, use_base=True)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0), (2.0, 0.0)])
def test_nuslerp_flattened_is_slerp_at_the_weight_ratio(weights: tuple[float, float]) -> None:
    rng = np.random.default_rng(81)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    t = weights[1] / sum(weights)
    np.testing.assert_allclose(nuslerp([a, b], weight=weights), slerp(a, b, t), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ml_dtypes.bfloat16])
def test_nuslerp_per_row_and_per_column(dtype: type) -> None:
    rng = np.random.default_rng(82)
    a = rng.normal(size=(3, 5)).astype(dtype).astype(np.float64)
    b = rng.normal(size=(3, 5)).astype(dtype).astype(np.float64)
    rows = nuslerp([a, b], weight=(1.0, 3.0), nuslerp_flatten=False)
    for i in range(3):
        np.testing.assert_allclose(rows[i], slerp(a[i], b[i], 0.75), rtol=1e-12, atol=1e-14)
    columns = nuslerp([a, b], weight=(1.0, 3.0), nuslerp_flatten=False, nuslerp_row_wise=True)
    for j in range(5):
        np.testing.assert_allclose(columns[:, j], slerp(a[:, j], b[:, j], 0.75), rtol=1e-12, atol=1e-14)


def test_nuslerp_task_vectors_colinear_and_count() -> None:
    base = np.full(3, 2.0)
    a, b = base + np.array([1.0, 0.0, 0.0]), base + np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(
        nuslerp([a, b], base, use_base=True), base + np.array([2**-0.5, 2**-0.5, 0.0]), rtol=1e-15
    )
    np.testing.assert_allclose(
        nuslerp([np.array([1.0, 2.0]), np.array([2.0, 4.0])]), [1.5, 3.0], rtol=1e-15
    )  # colinear: lerp
    np.testing.assert_allclose(
        nuslerp([np.array([1.0, 2.0])] * 2, weight=(0.0, 0.0)), [1.0, 2.0], rtol=1e-15
    )  # t = 0.5
    with pytest.raises(ThetaError, match="exactly 2 versions"):
        nuslerp([a, b, a])
    assert NuslerpStrategy().uses_base({"use_base": True}) and not NuslerpStrategy().uses_base(
        NuslerpStrategy.parse_arguments({})
    )
