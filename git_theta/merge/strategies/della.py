"""della, della-linear: DELLA-Merging's MagPrune (drop probabilities ranked by magnitude), then TIES or a sum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.dare import SEED
from git_theta.merge.strategies.dare_ties import LAMBDA
from git_theta.merge.strategies.flag import Flag
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy
from git_theta.merge.strategies.ties import WEIGHT

DENSITY = Argument(
    "density",
    float,
    0.5,
    "mean share of each task vector's entries KEPT; one value, or one per version",
    minimum=0.0,
    maximum=1.0,
    per_model=True,
)
EPSILON = Argument(
    "epsilon",
    float,
    0.15,
    "keep probabilities span density ± epsilon, from the smallest magnitude of a row to the largest; one value, or "
    "one per version",
    minimum=0.0,
    maximum=0.5,
    per_model=True,
)


class DellaStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; MagPrune per row (the first axis; a 1-D tensor is one row) of m entries: rank |τ|
    from r = 0 (smallest) to m−1 (equal magnitudes: lower index, lower rank), keep probability
    k = density − ε + 2ε·r/(m−1) (density when m = 1), drop probability p = 1 − k; an entry is kept when
    U ≥ p (U ~ Uniform[0, 1) per entry, drawn in version order, row-major, from the generator `dare` uses,
    seeded the same way) and rescaled by 1/(1−p); then γ = sign(Σᵢ wᵢτ̃ᵢ), τ_m = Σ_agree wᵢτ̃ᵢ / Σ_agree wᵢ
    (without `normalize`: not divided); merged = θ_base + λ · τ_m. density − ε must be > 0 and density + ε ≤ 1.

    Deep, Bhardwaj et al. 2024, "DELLA-Merging: Reducing Interference in Model Merging through
    Magnitude-Based Sampling" (arXiv:2406.11617): drop, elect, fuse. The probabilities span density ± ε by
    rank within a row as mergekit's `della_magprune` does. Differences from mergekit: the survivors are
    rescaled by the paper's 1/(1−pᵢ) (mergekit rescales the pruned vector to the original's L1 norm), a
    tensor of more than 2 dimensions is ranked over each row of its first axis (mergekit ranks along axis
    1), equal magnitudes rank by index, an entry summing to exactly 0 elects no sign, the draws are seeded.
    """

    name = "della"
    summary = "DELLA: drop with probabilities ranked by magnitude, rescale, then TIES sign election"
    arguments = (
        DENSITY,
        EPSILON,
        LAMBDA,
        WEIGHT,
        Argument("normalize", Flag, Flag(True), "divide by the sum of the agreeing weights"),
        SEED,
    )
    elect_sign = True

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(
            scale=arguments["lambda"],
            density=arguments["density"],
            epsilon=arguments["epsilon"],
            seed=arguments["seed"],
            elect_sign=self.elect_sign,
            weight=arguments["weight"],
            normalize=bool(arguments["normalize"]),
        )


class DellaLinearStrategy(DellaStrategy):
    """τ̃ᵢ as in `della` (MagPrune, rescale by 1/(1−pᵢ)); merged = θ_base + λ · Σᵢ wᵢτ̃ᵢ (divided by Σᵢ wᵢ
    with `normalize`). No sign election; mergekit's `della_linear`, with the differences listed for `della`.
    """

    name = "della-linear"
    summary = "DELLA's MagPrune and rescale, then a weighted sum of the task vectors"
    arguments = (
        DENSITY,
        EPSILON,
        LAMBDA,
        WEIGHT,
        Argument("normalize", Flag, Flag(False), "divide the weighted sum by the sum of the weights"),
        SEED,
    )
    elect_sign = False
