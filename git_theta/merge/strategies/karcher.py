"""karcher: the Riemannian (Karcher) mean of the versions' directions on the unit sphere, scaled by their mean norm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.merge.strategies.base import Argument, MergeStrategy


def karcher_mean(points: Sequence[np.ndarray[Any, Any]], max_iter: int, tol: float) -> np.ndarray[Any, Any]:
    """mergekit's karcher_merge_tensors with equal weights αᵢ = 1/n, in float64 (see KarcherStrategy)."""
    alphas = [1.0 / len(points)] * len(points)
    norms = [float(np.linalg.norm(point)) for point in points]
    valid = [i for i, norm in enumerate(norms) if norm > tol]
    if not valid:
        return np.zeros_like(points[0])
    total = sum(alphas[i] for i in valid)
    weights = [alphas[i] / total for i in valid]
    units = [points[i].ravel() / norms[i] for i in valid]
    guess = sum(w * u for w, u in zip(weights, units))
    assert isinstance(guess, np.ndarray)
    guess_norm = float(np.linalg.norm(guess))
    mean = units[0].copy() if guess_norm < tol else guess / guess_norm
    for _ in range(max_iter):
        tangent = np.zeros_like(mean)
        for weight, unit in zip(weights, units):
            dot = float(np.clip(mean @ unit, -1.0, 1.0))
            theta = float(np.arccos(dot))
            if theta >= tol:
                tangent += weight * (theta / np.sin(theta)) * (unit - dot * mean)
        step = float(np.linalg.norm(tangent))
        if step < tol:
            break
        mean = np.cos(step) * mean + np.sin(step) * (tangent / step)
        length = float(np.linalg.norm(mean))
        if length > tol:
            mean = mean / length
    scale = sum(alpha * norm for alpha, norm in zip(alphas, norms))
    return (scale * mean).reshape(points[0].shape)


class KarcherStrategy(MergeStrategy):
    """nᵢ = ‖θᵢ‖, uᵢ = θᵢ/nᵢ over the flattened tensors, for the versions with nᵢ > tol (all equal weights);
    start from m = Σuᵢ/‖Σuᵢ‖ (u₁ when that norm < tol); repeat at most max_iter times: θᵢ = arccos⟨m, uᵢ⟩,
    T = (1/n')Σ_{θᵢ ≥ tol} θᵢ/sin θᵢ · (uᵢ − cos θᵢ·m), stop when ‖T‖ < tol, else
    m ← normalize(cos‖T‖·m + sin‖T‖·T/‖T‖); merged = (1/n)Σᵢ nᵢ · m (0 when no version is longer than tol).

    The Karcher (Riemannian / Fréchet) mean on the hypersphere, as mergekit's `karcher`: its algorithm
    step by step, in float64 (mergekit iterates in the parameter's dtype), any number of versions, no base.
    """

    name = "karcher"
    summary = "Riemannian (Karcher) mean of the versions' directions, scaled by their mean norm"
    arguments = (
        Argument("max_iter", int, 10, "most iterations of the mean's fixed-point update", minimum=1, maximum=1000),
        Argument(
            "tol", float, 1e-5, "convergence tolerance (and the smallest norm / angle taken into account)", minimum=0.0
        ),
    )

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        if len(versions) == 1:
            return versions[0]
        return karcher_mean(versions, int(arguments["max_iter"]), float(arguments["tol"]))
