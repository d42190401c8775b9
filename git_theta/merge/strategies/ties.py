"""ties: TIES-merging (trim, elect sign, disjoint merge) of the task vectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy


class TiesStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; τ̂ᵢ keeps the ⌈k·n⌉ largest-magnitude entries of τᵢ (the rest 0);
    γ = sign(Σᵢ τ̂ᵢ) per entry; τ_m = mean of the τ̂ᵢ whose sign equals γ (0 where none);
    merged = θ_base + λ · τ_m.
    """

    name = "ties"
    summary = "TIES-merging: trim to top-k magnitude, elect sign, disjoint mean"
    arguments = (
        Argument("k", float, 0.2, "fraction of each task vector's entries kept (largest magnitude)", minimum=0.0, maximum=1.0),
        Argument("lambda", float, 1.0, "scale λ of the merged task vector", minimum=0.0),
    )

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(scale=arguments["lambda"], density=arguments["k"], elect_sign=True)
