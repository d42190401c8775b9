"""Sparsification of one task vector: which entries survive before the vectors are combined.

TIES's `trim` (keep the largest), DARE's `drop_and_rescale` (keep at random), Model Breadcrumbs's
`breadcrumbs` (drop the largest outliers and the smallest) and DELLA's `magprune` (keep at random with a
probability that grows with the magnitude's rank). Counts round as TIES does (⌈share·n⌉ kept); equal
magnitudes rank by position, the lowest index first, so every rule is deterministic given its draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from git_theta.errors import ThetaError

# Tolerates float error in density·n (0.3·10 = 3.0000000000000004 must keep 3).
COUNT_EPSILON = 1e-9


def kept_count(share: float, size: int) -> int:
    """⌈share·size⌉ clipped to [0, size]: the number of entries a keep share leaves."""
    return min(size, max(0, math.ceil(share * size - COUNT_EPSILON)))


def largest_first(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Flat indices by decreasing magnitude; equal magnitudes lowest index first (a stable sort)."""
    return np.argsort(-np.abs(vector).ravel(), kind="stable")


def drop_and_rescale(vector: np.ndarray[Any, Any], drop: float, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """DARE: draw U ~ Uniform[0, 1) per entry, keep the entry when U ≥ drop, scale the survivors by 1/(1−drop)."""
    keep = rng.random(vector.shape) >= drop
    return np.where(keep, vector / (1.0 - drop), 0.0)


def trim(vector: np.ndarray[Any, Any], density: float) -> np.ndarray[Any, Any]:
    """TIES: keep the ⌈density·n⌉ entries of largest magnitude (ties: lowest index first), zero the rest."""
    size = vector.size
    count = kept_count(density, size)
    if count == size:
        return vector
    if count == 0:
        return np.zeros_like(vector)
    magnitude = np.abs(vector).ravel()
    threshold = np.partition(magnitude, size - count)[size - count]
    keep = magnitude > threshold
    tied = np.flatnonzero(magnitude == threshold)[: count - int(keep.sum())]
    keep[tied] = True
    return np.where(keep.reshape(vector.shape), vector, 0.0)


def breadcrumbs(vector: np.ndarray[Any, Any], density: float, gamma: float) -> np.ndarray[Any, Any]:
    """Model Breadcrumbs: drop the ⌊gamma·n⌋ largest magnitudes, keep the next ⌈density·n⌉, zero the rest.

    When the two shares add up to more than the whole, the kept count wins and fewer outliers are dropped
    (as mergekit does): at most n − ⌈density·n⌉ of the largest are removed.
    """
    size = vector.size
    keep = kept_count(density, size)
    top = min(size - keep, math.floor(gamma * size + COUNT_EPSILON))
    if keep == size:
        return vector
    mask = np.zeros(size, dtype=bool)
    mask[largest_first(vector)[top : top + keep]] = True
    return np.where(mask.reshape(vector.shape), vector, 0.0)


def magprune(
    vector: np.ndarray[Any, Any], density: float, epsilon: float, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """DELLA's MagPrune, per row (the first axis; a 0-D or 1-D tensor is one row).

    Within a row of m entries, rᵢ is the rank of |τᵢ| from 0 (smallest) to m−1 (equal magnitudes: lower
    index, lower rank); the keep probability is kᵢ = density − ε + 2ε·rᵢ/(m−1) (kᵢ = density when m = 1),
    the drop probability pᵢ = 1 − kᵢ. Draw U ~ Uniform[0, 1) per entry, keep when U ≥ pᵢ, scale the
    survivors by 1/(1−pᵢ) = 1/kᵢ.
    """
    if density >= 1:
        return vector
    if density - epsilon <= 0 or density + epsilon > 1:
        raise ThetaError(f"density ± epsilon must lie in (0, 1] (density={density}, epsilon={epsilon})")
    rows = vector.reshape(1, -1) if vector.ndim < 2 else vector.reshape(vector.shape[0], -1)
    width = rows.shape[1]
    ranks = np.argsort(np.argsort(np.abs(rows), axis=1, kind="stable"), axis=1, kind="stable")
    position = ranks / (width - 1) if width > 1 else np.full(rows.shape, 0.5)
    keep_probability = (density - epsilon) + 2 * epsilon * position
    keep = rng.random(rows.shape) >= 1.0 - keep_probability
    return np.where(keep, rows / keep_probability, 0.0).reshape(vector.shape)
