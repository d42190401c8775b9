"""dare: drop and rescale each task vector (DARE), then add their scaled sum to the base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy


class DareStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; mᵢ ~ Bernoulli(1−p) per entry; merged = θ_base + λ · Σᵢ mᵢ ⊙ τᵢ / (1−p).

    The masks are drawn in version order from numpy's default generator seeded
    with the first 8 bytes (little-endian) of BLAKE2b("<seed>\\0<parameter name>"),
    so the same merge gives the same bytes.
    """

    name = "dare"
    summary = "DARE: random drop with rate p and rescale by 1/(1-p), then task arithmetic"
    arguments = (
        Argument("p", float, 0.5, "drop rate: probability of zeroing an entry of a task vector", minimum=0.0, maximum=0.999),
        Argument("lambda", float, 1.0, "scale λ of the summed task vectors", minimum=0.0),
        Argument("seed", int, 0, "seed of the drop masks (combined with the parameter name)", minimum=0),
    )

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(scale=arguments["lambda"], drop=arguments["p"], seed=arguments["seed"])
