"""slerp: spherical linear interpolation between exactly two versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy

# Below this sin(Ω) the two directions are (anti)parallel and slerp is ill-conditioned: use lerp.
PARALLEL_EPSILON = 1e-8


class SlerpStrategy(MergeStrategy):
    """Ω = arccos(⟨θ₀/‖θ₀‖, θ₁/‖θ₁‖⟩) over the flattened tensors; merged = sin((1−t)Ω)/sin Ω · θ₀ + sin(tΩ)/sin Ω · θ₁.

    Falls back to linear interpolation (1−t)·θ₀ + t·θ₁ when a version is all
    zeros or sin Ω < 1e-8. t=0 gives ours, t=1 theirs.
    """

    name = "slerp"
    summary = "spherical interpolation between two versions"
    arguments = (Argument("t", float, 0.5, "interpolation position: 0 = ours, 1 = theirs", minimum=0.0, maximum=1.0),)

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        if len(versions) != 2:
            raise ThetaError(
                f"merge strategy 'slerp' merges exactly 2 versions; parameter {name!r} has {len(versions)}"
            )
        t = float(arguments["t"])
        first, second = versions
        norms = float(np.linalg.norm(first)) * float(np.linalg.norm(second))
        if norms == 0.0:
            return (1 - t) * first + t * second
        cosine = float(np.clip(np.vdot(first, second) / norms, -1.0, 1.0))
        omega = float(np.arccos(cosine))
        sine = float(np.sin(omega))
        if sine < PARALLEL_EPSILON:
            return (1 - t) * first + t * second
        return (np.float64(np.sin((1 - t) * omega)) / sine) * first + (np.float64(np.sin(t * omega)) / sine) * second
