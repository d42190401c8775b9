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
