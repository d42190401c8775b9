"""breadcrumbs, breadcrumbs-ties: drop each task vector's largest outliers and its smallest entries (Model
Breadcrumbs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Argument
from git_theta.merge.strategies.dare_ties import LAMBDA
from git_theta.merge.strategies.task_arithmetic import NORMALIZE
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy
from git_theta.merge.strategies.ties import WEIGHT

ARGUMENTS = (
    Argument(
        "density",
        float,
        0.9,
        "share of each task vector's entries KEPT (below the dropped outliers); one value, or one per version",
        minimum=0.0,
        maximum=1.0,
        per_model=True,
    ),
    Argument(
        "gamma",
        float,
        0.01,
        "share of each task vector's largest-magnitude entries dropped as outliers; one value, or one per version",
        minimum=0.0,
        maximum=1.0,
        per_model=True,
    ),
    LAMBDA,
    WEIGHT,
    NORMALIZE,
)


class BreadcrumbsStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; rank τᵢ's entries by decreasing magnitude (equal magnitudes: lowest index first);
    τ̂ᵢ drops the first ⌊γᵢ·n⌋ (the outliers), keeps the next ⌈densityᵢ·n⌉ and zeroes the rest;
    merged = θ_base + λ · Σᵢ wᵢτ̂ᵢ (divided by Σᵢ wᵢ with `normalize`).

    Davari & Belilovsky 2023, "Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks"
    (arXiv:2312.06795). Deterministic: no random draws. When ⌊γn⌋ + ⌈density·n⌉ > n the kept count wins
    and fewer outliers are dropped (as mergekit does). Differences from mergekit: counts round as TIES's do
    (mergekit keeps ⌊density·n⌋), ties are broken by index (mergekit's sort order is unspecified), and
    ⌊γn⌋ = 0 drops no outlier (mergekit's `indices[n_bot:-0]` then keeps nothing at all).
    """

    name = "breadcrumbs"
    summary = "Model Breadcrumbs: drop the largest outliers and the smallest entries, then task arithmetic"
    arguments = ARGUMENTS
    elect_sign = False

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(
            scale=arguments["lambda"],
            density=arguments["density"],
            gamma=arguments["gamma"],
            elect_sign=self.elect_sign,
            weight=arguments["weight"],
            normalize=bool(arguments["normalize"]),
        )


class BreadcrumbsTiesStrategy(BreadcrumbsStrategy):
    """τ̂ᵢ as in `breadcrumbs`; γ = sign(Σᵢ wᵢτ̂ᵢ) per entry; τ_m = Σ_agree wᵢτ̂ᵢ over the versions whose wᵢτ̂ᵢ
    has the sign γ (an entry summing to exactly 0 elects no sign), divided by Σ_agree wᵢ with `normalize`;
    merged = θ_base + λ · τ_m.

    Model Breadcrumbs' masks with TIES-merging's sign election (Yadav et al. 2023, arXiv:2306.01708), as
    mergekit's `breadcrumbs_ties` (normalize off by default, as there; mergekit elects + for a zero sum).
    """

    name = "breadcrumbs-ties"
    summary = "Model Breadcrumbs masks, then TIES sign election and disjoint merge"
    elect_sign = True
