"""dare: drop and rescale each task vector (DARE), then add their scaled sum to the base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.merge.strategies.base import Alias, Argument
from git_theta.merge.strategies.task_vectors import TaskVectorConfig, TaskVectorStrategy
from git_theta.merge.strategies.ties import WEIGHT

DROP = Argument(
    "p",
    float,
    0.5,
    "drop rate: probability of zeroing an entry of a task vector; one value, or one per version",
    minimum=0.0,
    maximum=0.999,
    per_model=True,
)
SEED = Argument("seed", int, 0, "seed of the drop masks (combined with the parameter name)", minimum=0)


class DareStrategy(TaskVectorStrategy):
    """τᵢ = θᵢ − θ_base; mᵢ keeps an entry when U ≥ pᵢ, U ~ Uniform[0, 1) drawn per entry;
    merged = θ_base + λ · Σᵢ wᵢ · mᵢ ⊙ τᵢ / (1−pᵢ).

    p is the share DROPPED; `density` (mergekit's name) is the share KEPT, so density = 0.3 is p = 0.7: give
    one of them. The masks are
    drawn in version order (one U per entry of each τᵢ, row-major) by numpy's default generator
    (PCG64) seeded with the integer read little-endian from the 8-byte BLAKE2b digest
    (`hashlib.blake2b(..., digest_size=8)`) of "<seed>\\0<parameter name>" in UTF-8, so the same merge
    gives the same bytes on every run and machine.
    """

    name = "dare"
    summary = "DARE: random drop with rate p and rescale by 1/(1-p), then task arithmetic"
    arguments = (
        DROP,
        Argument("lambda", float, 1.0, "scale λ of the summed task vectors", minimum=0.0),
        SEED,
        WEIGHT,
    )
    aliases = (
        Alias(
            Argument(
                "density",
                float,
                0.5,
                "mergekit's name: share of each task vector's entries KEPT; give density or p; "
                "one value, or one per version",
                minimum=0.001,
                maximum=1.0,
                per_model=True,
            ),
            "p",
            complement=True,
        ),
    )

    def config(self, arguments: Mapping[str, Any]) -> TaskVectorConfig:
        return TaskVectorConfig(
            scale=arguments["lambda"], drop=arguments["p"], seed=arguments["seed"], weight=arguments.get("weight", 1.0)
        )
