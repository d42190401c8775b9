"""task-arithmetic: add the scaled sum of the task vectors to the base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy


class TaskArithmeticStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; merged = θ_base + λ · Σᵢ τᵢ."""

    name = "task-arithmetic"
    summary = "base plus the scaled sum of the task vectors"
    arguments = (Argument("lambda", float, 1.0, "scale λ of the summed task vectors", minimum=0.0),)

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(scale=arguments["lambda"])
