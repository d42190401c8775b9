"""The task-vector merge shared by task-arithmetic, TIES, DARE, DARE-TIES, DELLA and Model Breadcrumbs.

Each method is a configuration of `merge_task_vectors`, not a copy: a task
vector is τᵢ = θᵢ − θ_base; optionally drop (DARE), sparsify (TIES's trim,
Breadcrumbs, DELLA's MagPrune), weight by wᵢ, then combine by sum or by
sign-elected disjoint mean (TIES), then scale by λ.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import MergeStrategy
from git_theta.merge.strategies.sparsify import breadcrumbs, drop_and_rescale, magprune, trim

__all__ = [
    "TaskVectorConfig",
    "TaskVectorStrategy",
    "disjoint_mean",
    "drop_and_rescale",
    "merge_task_vectors",
    "per_version",
    "seed_for",
    "trim",
]

# A per-model argument: one value for every version, or one per version (ours first).
PerModel = float | tuple[float, ...]


def per_version(value: PerModel, count: int, argument: str = "argument") -> tuple[float, ...]:
    """`value` as one float per version: a scalar applies to all, a sequence must have one entry per version."""
    if isinstance(value, (tuple, list)):
        if len(value) != count:
            raise ThetaError(
                f"{argument}: {len(value)} values were given (one per version, ours first), but there are {count} "
                "versions"
            )
        return tuple(float(item) for item in value)
    return (float(value),) * count


@dataclass(frozen=True)
class TaskVectorConfig:
    scale: float = 1.0  # λ
    density: PerModel = (
        1.0  # TIES: fraction k of entries kept per task vector (1 = keep all); Breadcrumbs, DELLA: their keep share
    )
    drop: PerModel = 0.0  # DARE: probability p of dropping an entry (0 = keep all)
    seed: int = 0  # DARE, DELLA: with the parameter name, seeds the drop masks
    elect_sign: bool = False  # TIES: sign election and disjoint mean instead of a sum
    weight: PerModel = 1.0  # wᵢ: each task vector is multiplied by its weight before combining
    # Divide by the weights' sum (over the agreeing versions with elect_sign): None means the method's own rule,
    # TIES's disjoint mean with elect_sign, a plain sum without.
    normalize: bool | None = None
    gamma: PerModel | None = None  # Breadcrumbs: share of largest magnitudes dropped (density is kept below them)
    epsilon: PerModel | None = None  # DELLA: keep probabilities span density ± epsilon by magnitude rank


def seed_for(seed: int, name: str) -> int:
    """The RNG seed for one parameter: the same merge always draws the same masks.

    BLAKE2b with an 8-byte digest (digest_size=8, not a longer digest cut to 8 bytes) of
    "<seed>\\0<name>" in UTF-8, read as a little-endian unsigned integer.
    """
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def disjoint_mean(
    vectors: Sequence[np.ndarray[Any, Any]], weights: Sequence[float] | None = None, normalize: bool = True
) -> np.ndarray[Any, Any]:
    """TIES: elect each entry's sign by the sign of Σᵢ τᵢ, combine only the τᵢ that agree with it.

    `vectors` are already weighted (wᵢτᵢ); the result is Σ_agree wᵢτᵢ / Σ_agree wᵢ (0 where none agrees),
    or Σ_agree wᵢτᵢ without `normalize`. An entry whose sum is exactly 0 elects no sign: nothing agrees.
    """
    weights = weights if weights is not None else (1.0,) * len(vectors)
    total = np.zeros_like(vectors[0])
    for vector in vectors:
        total += vector
    elected = np.sign(total, out=total)
    summed = np.zeros_like(total)
    divisor = np.zeros_like(total)
    agrees = np.empty(total.shape, dtype=bool)
    for vector, weight in zip(vectors, weights):
        # τᵢ·γ > 0 exactly when τᵢ is non-zero and has the elected sign
        np.greater(vector * elected, 0, out=agrees)
        np.add(summed, vector, out=summed, where=agrees)
        np.add(divisor, weight, out=divisor, where=agrees)
    if not normalize:
        return summed
    return np.divide(summed, divisor, out=np.zeros_like(summed), where=divisor > 0)


def _sparsify(vectors: list[np.ndarray[Any, Any]], config: TaskVectorConfig, name: str) -> list[np.ndarray[Any, Any]]:
    """Drop (DARE), then Breadcrumbs, MagPrune or trim each task vector; the draws come in version order."""
    count = len(vectors)
    drops = per_version(config.drop, count, "drop")
    densities = per_version(config.density, count, "density")
    rng = np.random.default_rng(seed_for(config.seed, name)) if any(drops) or config.epsilon is not None else None
    if any(drops):
        # every version draws its mask (p = 0 keeps all), so one version's draws never depend on another's p
        assert rng is not None
        vectors = [drop_and_rescale(vector, drop, rng) for vector, drop in zip(vectors, drops)]
    if config.epsilon is not None:
        assert rng is not None
        epsilons = per_version(config.epsilon, count, "epsilon")
        return [
            magprune(vector, density, epsilon, rng) for vector, density, epsilon in zip(vectors, densities, epsilons)
        ]
    if config.gamma is not None:
        gammas = per_version(config.gamma, count, "gamma")
        return [breadcrumbs(vector, density, gamma) for vector, density, gamma in zip(vectors, densities, gammas)]
    return [trim(vector, density) if density < 1 else vector for vector, density in zip(vectors, densities)]


def merge_task_vectors(
    base: np.ndarray[Any, Any], versions: Sequence[np.ndarray[Any, Any]], config: TaskVectorConfig, name: str
) -> np.ndarray[Any, Any]:
    """θ_base + λ · combine(wᵢ · sparsify(drop(θᵢ − θ_base)))."""
    weights = per_version(config.weight, len(versions), "weight")
    vectors = _sparsify([version - base for version in versions], config, name)
    vectors = [vector if weight == 1.0 else weight * vector for vector, weight in zip(vectors, weights)]
    if config.elect_sign:
        delta = disjoint_mean(vectors, weights, config.normalize is not False)
    else:
        delta = np.zeros_like(base)
        for vector in vectors:
            delta += vector
        if config.normalize and sum(weights) > 0:
            delta /= sum(weights)
    return base + config.scale * delta


class TaskVectorStrategy(MergeStrategy):
    """Base of the task-vector methods: subclasses map their arguments to a TaskVectorConfig."""

    needs_base = True

    @abstractmethod
    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        """This method's configuration of the shared task-vector merge."""

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        if base is None:
            raise ThetaError(f"merge strategy {self.name!r} needs the merge base's version of parameter {name!r}")
        try:
            return merge_task_vectors(base, versions, self.config(arguments), name)
        except ThetaError as error:
            raise ThetaError(f"merge strategy {self.name!r}, parameter {name!r}: {error}") from None
