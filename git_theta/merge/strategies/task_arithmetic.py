"""task-arithmetic: add the scaled sum of the task vectors to the base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.flag import Flag
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy
from git_theta.merge.strategies.ties import WEIGHT

NORMALIZE = Argument("normalize", Flag, Flag(False), "divide the weighted sum by the sum of the weights")


class TaskArithmeticStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; merged = θ_base + λ · Σᵢ wᵢτᵢ (divided by Σᵢ wᵢ with `normalize`)."""

    name = "task-arithmetic"
    summary = "base plus the scaled sum of the task vectors"
    arguments = (Argument("lambda", float, 1.0, "scale λ of the summed task vectors", minimum=0.0), WEIGHT, NORMALIZE)

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(
            scale=arguments["lambda"],
            weight=arguments.get("weight", 1.0),
            normalize=bool(arguments.get("normalize", False)) or None,
        )
