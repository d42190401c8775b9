"""ties: TIES-merging (trim, elect sign, disjoint merge) of the task vectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Alias, Argument
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy

WEIGHT = Argument(
    "weight",
    float,
    1.0,
    "weight wᵢ of each version's task vector; one value, or one per version",
    minimum=0.0,
    per_model=True,
)


class TiesStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; τ̂ᵢ keeps the ⌈kᵢ·n⌉ largest-magnitude entries of τᵢ (the rest 0; equal magnitudes:
    the lowest index is kept first); γ = sign(Σᵢ wᵢτ̂ᵢ) per entry; τ_m = Σ wᵢτ̂ᵢ / Σ wᵢ over the versions whose
    wᵢτ̂ᵢ has the sign γ (0 where none has; an entry whose sum is exactly 0 elects no sign and gets 0);
    merged = θ_base + λ · τ_m.

    k is the share of each task vector KEPT; `density` is another name for it (mergekit's): density = k.
    With every wᵢ = 1, τ_m is the mean of the agreeing τ̂ᵢ (the paper's disjoint mean). Trimming, election
    and the mean are per tensor.
    """

    name = "ties"
    summary = "TIES-merging: trim to top-k magnitude, elect sign, disjoint mean"
    arguments = (
        Argument(
            "k",
            float,
            0.2,
            "share of each task vector's entries kept (largest magnitude); one value, or one per version",
            minimum=0.0,
            maximum=1.0,
            per_model=True,
        ),
        Argument("lambda", float, 1.0, "scale λ of the merged task vector", minimum=0.0),
        WEIGHT,
    )
    aliases = (
        Alias(
            Argument(
                "density",
                float,
                0.2,
                "mergekit's name for k: share of each task vector's entries KEPT; give density or k; "
                "one value, or one per version",
                minimum=0.0,
                maximum=1.0,
                per_model=True,
            ),
            "k",
        ),
    )

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(
            scale=arguments["lambda"], density=arguments["k"], elect_sign=True, weight=arguments.get("weight", 1.0)
        )
