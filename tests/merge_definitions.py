"""The published merge definitions, written out element by element in float64 (test oracles, not fast)."""

from __future__ import annotations

import hashlib
import math

import numpy as np


def draws(seed: int, name: str) -> np.random.Generator:
    """The documented generator: PCG64 seeded with the little-endian 8-byte BLAKE2b digest of "<seed>\\0<name>"."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def largest_first(tau: np.ndarray) -> list[int]:
    flat = tau.ravel()
    return sorted(range(flat.size), key=lambda i: (-abs(flat[i]), i))


def breadcrumbs(tau: np.ndarray, density: float, gamma: float) -> np.ndarray:
    n = tau.size
    keep = min(n, math.ceil(round(density * n, 9)))
    top = min(n - keep, math.floor(round(gamma * n, 9)))
    kept = set(largest_first(tau)[top : top + keep])
    return np.array([x if i in kept else 0.0 for i, x in enumerate(tau.ravel())]).reshape(tau.shape)


def magprune(tau: np.ndarray, density: float, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    rows = tau.reshape(1, -1) if tau.ndim < 2 else tau.reshape(tau.shape[0], -1)
    uniform = rng.random(rows.shape)
    out = np.zeros_like(rows)
    m = rows.shape[1]
    for r, row in enumerate(rows):
        order = sorted(range(m), key=lambda j: (abs(row[j]), j))  # smallest first, lower index first
        for rank, j in enumerate(order):
            keep = density - epsilon + 2 * epsilon * (rank / (m - 1) if m > 1 else 0.5)
            if uniform[r, j] >= 1 - keep:
                out[r, j] = row[j] / keep
    return out.reshape(tau.shape)


def elect(taus: list[np.ndarray], weights: list[float], normalize: bool) -> np.ndarray:
    """TIES sign election over weighted task vectors; an entry summing to exactly 0 elects nothing."""
    shape = taus[0].shape
    flat = [t.ravel() for t in taus]
    out = []
    for i in range(flat[0].size):
        sign = np.sign(sum(w * t[i] for w, t in zip(weights, flat)))
        agreeing = [(w, t[i]) for w, t in zip(weights, flat) if sign != 0 and w * t[i] * sign > 0]
        total = sum(w * x for w, x in agreeing)
        divisor = sum(w for w, _ in agreeing)
        out.append(total / divisor if normalize and divisor > 0 else total if agreeing else 0.0)
    return np.array(out).reshape(shape)


def weighted_sum(taus: list[np.ndarray], weights: list[float], normalize: bool) -> np.ndarray:
    total = sum(w * t for w, t in zip(weights, taus))
    return total / sum(weights) if normalize and sum(weights) > 0 else total


# Each method's definition as docs/merging.md states it, for the end-to-end merges of a real checkpoint
# (tests/merge/strategies/git_merge_test.py): plain float64 NumPy, one formula after the other.


def trimmed(tau: np.ndarray, k: float) -> np.ndarray:
    """TIES's trim: the ⌈k·n⌉ largest magnitudes kept (equal magnitudes: lowest index first), the rest 0."""
    kept = set(largest_first(tau)[: math.ceil(round(k * tau.size, 9))])
    return np.array([x if i in kept else 0.0 for i, x in enumerate(tau.ravel())]).reshape(tau.shape)


def dare_drop(taus: list[np.ndarray], ps: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """DARE: keep an entry when U ≥ p (one U per entry, version after version, row-major), rescale by 1/(1−p)."""
    return [np.where(rng.random(tau.shape) >= p, tau / (1 - p), 0.0) for tau, p in zip(taus, ps)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = math.sqrt(float(np.sum(a * a))), math.sqrt(float(np.sum(b * b)))
    return float(np.sum(a * b)) / (na * nb) if na * nb else 0.0


def model_stock(base: np.ndarray, versions: list[np.ndarray]) -> np.ndarray:
    taus = [(v - base).ravel() for v in versions]
    k = len(versions)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    cos = sum(cosine(taus[i], taus[j]) for i, j in pairs) / len(pairs)
    t = k * cos / (1 + (k - 1) * cos)
    return t * (sum(versions) / k) + (1 - t) * base


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    omega = math.acos(max(-1.0, min(1.0, cosine(a.ravel(), b.ravel()))))
    if math.sin(omega) < 1e-8:
        return (1 - t) * a + t * b
    return math.sin((1 - t) * omega) / math.sin(omega) * a + math.sin(t * omega) / math.sin(omega) * b


def nuslerp_rows(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """nuslerp without flatten: each row along the last axis slerped on its own."""
    rows = [slerp(x, y, t) for x, y in zip(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))]
    return np.array(rows).reshape(a.shape)


def multislerp(xs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    w = [x / sum(weights) for x in weights]
    flat = [x.ravel() for x in xs]
    norms = [math.sqrt(float(np.sum(x * x))) for x in flat]
    units = [x / n for x, n in zip(flat, norms)]
    mean = sum(wi * u for wi, u in zip(w, units))
    mean = mean / math.sqrt(float(np.sum(mean * mean)))
    v = sum(wi * (u - float(np.sum(u * mean)) * mean) for wi, u in zip(w, units))
    length = math.sqrt(float(np.sum(v * v)))
    direction = mean * math.cos(length) + v * math.sin(length) / length if length else mean
    return (direction * sum(wi * n for wi, n in zip(w, norms))).reshape(xs[0].shape)


def karcher(xs: list[np.ndarray], max_iter: int, tol: float) -> np.ndarray:
    norms = [math.sqrt(float(np.sum(x * x))) for x in xs]
    units = [x.ravel() / n for x, n in zip(xs, norms) if n > tol]
    start = sum(units)
    mean = start / math.sqrt(float(np.sum(start * start)))
    for _ in range(max_iter):
        tangent = np.zeros_like(mean)
        for u in units:
            angle = math.acos(max(-1.0, min(1.0, float(np.sum(mean * u)))))
            if angle >= tol:
                tangent = tangent + (1 / len(units)) * angle / math.sin(angle) * (u - math.cos(angle) * mean)
        step = math.sqrt(float(np.sum(tangent * tangent)))
        if step < tol:
            break
        mean = math.cos(step) * mean + math.sin(step) * tangent / step
        mean = mean / math.sqrt(float(np.sum(mean * mean)))
    return (sum(norms) / len(xs) * mean).reshape(xs[0].shape)


def nearswap(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    distance = np.abs(a - b)
    return np.where(distance <= t, b, a + t * np.sign(b - a))


def sce(base: np.ndarray, versions: list[np.ndarray], topk: float) -> np.ndarray:
    taus = [(v - base).ravel() for v in versions]
    n, size = len(taus), taus[0].size
    if topk < 1:
        mean = sum(taus) / n
        variance = sum((t - mean) ** 2 for t in taus) / n
        nonzero = int(np.count_nonzero(variance))
        order = sorted(range(size), key=lambda i: (-variance[i], i))[: math.ceil(round(topk * nonzero, 9))]
        mask = np.zeros(size, dtype=bool)
        mask[order] = True
        taus = [np.where(mask, t, 0.0) for t in taus]
    energy = [float(np.mean(t * t)) for t in taus]
    weights = [e / sum(energy) for e in energy] if sum(energy) else [1 / n] * n
    sign = np.sign(sum(taus))  # elected by the unweighted sum (TIES's election weighs it)
    agree = [t * sign > 0 for t in taus]
    total = sum(np.where(a, w * t, 0.0) for a, w, t in zip(agree, weights, taus))
    divisor = sum(np.where(a, w, 0.0) for a, w in zip(agree, weights))
    return base + np.divide(total, divisor, out=np.zeros(size), where=divisor > 0).reshape(base.shape)
