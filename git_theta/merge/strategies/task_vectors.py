"""The task-vector merge shared by task-arithmetic, TIES and DARE.

Each method is a configuration of `merge_task_vectors`, not a copy: a task
vector is τᵢ = θᵢ − θ_base; optionally drop (DARE), optionally trim (TIES),
then combine by sum or by sign-elected disjoint mean (TIES), then scale.
"""

from __future__ import annotations

import hashlib
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import MergeStrategy

# Tolerates float error in density·n (0.3·10 = 3.0000000000000004 must keep 3).
_COUNT_EPSILON = 1e-9


@dataclass(frozen=True)
class TaskVectorConfig:
    scale: float = 1.0  # λ
    density: float = 1.0  # TIES: fraction k of entries kept per task vector (1 = keep all)
    drop: float = 0.0  # DARE: probability p of dropping an entry (0 = keep all)
    seed: int = 0  # DARE: with the parameter name, seeds the drop masks
    elect_sign: bool = False  # TIES: sign election and disjoint mean instead of a sum


def seed_for(seed: int, name: str) -> int:
    """The RNG seed for one parameter: the same merge always draws the same masks."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def drop_and_rescale(vector: np.ndarray[Any, Any], drop: float, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """DARE: zero each entry with probability `drop`, scale the survivors by 1/(1−drop)."""
    keep = rng.random(vector.shape) >= drop
    return np.where(keep, vector / (1.0 - drop), 0.0)


def trim(vector: np.ndarray[Any, Any], density: float) -> np.ndarray[Any, Any]:
    """TIES: keep the ⌈density·n⌉ entries of largest magnitude (ties: lowest index first), zero the rest."""
    size = vector.size
    count = min(size, max(0, math.ceil(density * size - _COUNT_EPSILON)))
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


def disjoint_mean(vectors: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """TIES: elect each entry's sign by the sign of Σᵢ τᵢ, average only the τᵢ that agree with it."""
    total = np.zeros_like(vectors[0])
    for vector in vectors:
        total += vector
    elected = np.sign(total, out=total)
    summed = np.zeros_like(total)
    count = np.zeros(total.shape, dtype=np.int32)
    agrees = np.empty(total.shape, dtype=bool)
    for vector in vectors:
        # τᵢ·γ > 0 exactly when τᵢ is non-zero and has the elected sign
        np.greater(vector * elected, 0, out=agrees)
        np.add(summed, vector, out=summed, where=agrees)
        count += agrees
    return np.divide(summed, count, out=np.zeros_like(summed), where=count > 0)


def merge_task_vectors(base: np.ndarray[Any, Any], versions: Sequence[np.ndarray[Any, Any]], config: TaskVectorConfig, name: str) -> np.ndarray[Any, Any]:
    """θ_base + λ · combine(trim(drop(θᵢ − θ_base)))."""
    vectors = [version - base for version in versions]
    if config.drop > 0:
        rng = np.random.default_rng(seed_for(config.seed, name))
        vectors = [drop_and_rescale(vector, config.drop, rng) for vector in vectors]
    if config.density < 1:
        vectors = [trim(vector, config.density) for vector in vectors]
    if config.elect_sign:
        delta = disjoint_mean(vectors)
    else:
        delta = np.zeros_like(base)
        for vector in vectors:
            delta += vector
    return base + config.scale * delta


class TaskVectorStrategy(MergeStrategy):
    """Base of the task-vector methods: subclasses map their arguments to a TaskVectorConfig."""

    needs_base = True

    @abstractmethod
    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        """This method's configuration of the shared task-vector merge."""

    def merge(self, versions: Sequence[np.ndarray[Any, Any]], base: np.ndarray[Any, Any] | None, arguments: Mapping[str, Any], name: str) -> np.ndarray[Any, Any]:
        if base is None:
            raise ThetaError(f"merge strategy {self.name!r} needs the merge base's version of parameter {name!r}")
        return merge_task_vectors(base, versions, self.config(arguments), name)
