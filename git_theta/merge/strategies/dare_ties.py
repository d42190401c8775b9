"""dare-ties: DARE's random drop and rescale of each task vector, then TIES's sign election and disjoint merge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.dare import SEED
from git_theta.merge.strategies.task_arithmetic import NORMALIZE
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy
from git_theta.merge.strategies.ties import WEIGHT

DENSITY = Argument(
    "density",
    float,
    0.5,
    "share of each task vector's entries KEPT; one value, or one per version",
    minimum=0.001,
    maximum=1.0,
    per_model=True,
)
LAMBDA = Argument("lambda", float, 1.0, "scale λ of the merged task vector", minimum=0.0)


class DareTiesStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; pᵢ = 1 − densityᵢ; τ̃ᵢ = mᵢ ⊙ τᵢ / (1−pᵢ) with mᵢ DARE's mask (an entry is kept when
    U ≥ pᵢ, U ~ Uniform[0, 1), drawn exactly as `dare` draws them); γ = sign(Σᵢ wᵢτ̃ᵢ) per entry;
    τ_m = Σ_agree wᵢτ̃ᵢ over the versions whose wᵢτ̃ᵢ has the sign γ, divided by Σ_agree wᵢ with `normalize`;
    merged = θ_base + λ · τ_m.

    Yu et al. 2024, "Language Models are Super Mario" (DARE, arXiv:2311.03099), applied before TIES-merging
    (Yadav et al. 2023, arXiv:2306.01708). Defaults as mergekit's `dare_ties` (normalize off: with every
    wᵢ = 1 the agreeing task vectors are summed; set normalize=true for the TIES paper's disjoint mean).
    Differences from mergekit: the rescale is DARE's 1/(1−p) (mergekit rescales each vector to its L1 norm
    before dropping), an entry whose sum is exactly 0 elects no sign (mergekit elects +), and the masks are
    seeded, so a merge repeats bit for bit.
    """

    name = "dare-ties"
    summary = "DARE drop and rescale, then TIES sign election and disjoint merge"
    arguments = (DENSITY, LAMBDA, WEIGHT, NORMALIZE, SEED)

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        density = arguments["density"]
        drop: Any = tuple(1.0 - d for d in density) if isinstance(density, (tuple, list)) else 1.0 - float(density)
        return TaskVectorConfig(
            scale=arguments["lambda"],
            drop=drop,
            seed=arguments["seed"],
            elect_sign=True,
            weight=arguments["weight"],
            normalize=bool(arguments["normalize"]),
        )
