"""sce: variance-based selection, weights from mean squares, sign erase."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from git_theta.merge.strategies.sce import SceStrategy


def merge(versions: list[np.ndarray], base: np.ndarray, topk: float) -> np.ndarray:
    return SceStrategy().merge(versions, base, SceStrategy.parse_arguments({"select_topk": topk}), "w")


def definition(base: np.ndarray, versions: list[np.ndarray], topk: float) -> np.ndarray:
    taus = [(v - base).ravel().tolist() for v in versions]
    n, size = len(taus), len(taus[0])
    if topk < 1:
        variance = [sum((t[i] - sum(u[i] for u in taus) / n) ** 2 for t in taus) / n for i in range(size)]
        nonzero = sum(1 for v in variance if v != 0)
        kept = set(sorted(range(size), key=lambda i: (-variance[i], i))[: math.ceil(round(topk * nonzero, 9))])
        taus = [[x if i in kept else 0.0 for i, x in enumerate(t)] for t in taus]
    energy = [sum(x * x for x in t) / size for t in taus]
    weights = [e / sum(energy) for e in energy] if sum(energy) else [1 / n] * n
    out = []
    for i in range(size):
        sign = np.sign(sum(t[i] for t in taus))
        agreeing = [(w, t[i]) for w, t in zip(weights, taus) if sign != 0 and t[i] * sign > 0]
        out.append(sum(w * x for w, x in agreeing) / sum(w for w, _ in agreeing) if agreeing else 0.0)
    return base + np.array(out).reshape(base.shape)


def test_hand_checked() -> None:
    base = np.zeros(3)
    versions = [np.array([2.0, 0.0, 0.0]), np.array([0.0, 1.0, -1.0])]
    # energies 4/3 and 2/3: w = 2/3, 1/3; nothing conflicts, each entry is its only agreeing value
    np.testing.assert_allclose(merge(versions, base, 1.0), [2.0, 1.0, -1.0], rtol=1e-15)
    # variances [1, 0.25, 0.25]: topk 0.34 keeps ⌈1.02⌉ = 2 entries: 0 and 1 (tie at 0.25: lower index)
    np.testing.assert_allclose(merge(versions, base, 0.34), [2.0, 1.0, 0.0], rtol=1e-15)


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("topk", [1.0, 0.5, 0.2])
def test_matches_definition(count: int, topk: float) -> None:
    rng = np.random.default_rng(90 + count)
    base = rng.normal(size=(4, 4))
    versions = [base + rng.normal(scale=0.5 + i, size=base.shape) for i in range(count)]
    np.testing.assert_allclose(merge(versions, base, topk), definition(base, versions, topk), rtol=1e-12, atol=1e-14)


def test_zero_sign_and_all_equal() -> None:
    base = np.zeros(2)
    np.testing.assert_array_equal(merge([np.array([1.0, 1.0]), np.array([-1.0, 1.0])], base, 1.0), [0.0, 1.0])
    same = [np.full(3, 4.0)] * 3
    np.testing.assert_array_equal(merge(same, np.full(3, 4.0), 0.5), np.full(3, 4.0))  # every τ is 0: equal weights


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_parameters(dtype: type) -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(size=20).astype(dtype).astype(np.float64)
    versions = [(base + rng.normal(scale=0.001, size=20)).astype(dtype).astype(np.float64) for _ in range(3)]
    np.testing.assert_allclose(merge(versions, base, 0.5), definition(base, versions, 0.5), rtol=1e-12, atol=1e-14)
