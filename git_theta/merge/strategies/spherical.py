"""multislerp, nuslerp: spherical interpolation of N models or of their task vectors (mergekit's methods)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy
from git_theta.merge.strategies.flag import Flag
from git_theta.merge.strategies.task_vectors import per_version
from git_theta.merge.strategies.ties import WEIGHT

# Below this, the weighted mean of the unit vectors is taken as zero (mergekit's eps) and sin θ as colinear.
SPHERE_EPSILON = 1e-8

USE_BASE = Argument(
    "use_base",
    Flag,
    Flag(False),
    "interpolate the task vectors θᵢ − θ_base and add the base back (needs the merge base)",
)


def _unit(vectors: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(unit vectors along the last axis, norms); a zero vector stays zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0), norms


class _Spherical(MergeStrategy):
    def uses_base(self, arguments: Mapping[str, Any]) -> bool:
        return bool(arguments.get("use_base", False))

    def _origin(
        self, base: np.ndarray[Any, Any] | None, arguments: Mapping[str, Any], name: str
    ) -> np.ndarray[Any, Any] | None:
        if not arguments["use_base"]:
            return None
        if base is None:
            raise ThetaError(
                f"merge strategy {self.name!r} with use_base needs the merge base's version of parameter {name!r}"
            )
        return base


class MultislerpStrategy(_Spherical):
    """xᵢ = θᵢ (with `use_base`: θᵢ − θ_base), flattened; wᵢ the weights (divided by Σ wᵢ with
    `normalize_weights`); uᵢ = xᵢ/‖xᵢ‖; m = Σ wᵢuᵢ / ‖Σ wᵢuᵢ‖; tangents vᵢ = uᵢ − ⟨uᵢ, m⟩m; v = Σ wᵢvᵢ;
    merged = (m·cos‖v‖ + v·sin‖v‖/‖v‖) · Σ wᵢ‖xᵢ‖ (plus θ_base with `use_base`).

    Barycentric interpolation on the hypersphere: mergekit's `multislerp` (Goddard,
    goddard.blog/posts/multislerp-wow-what-a-cool-idea), any number of versions. When ‖Σ wᵢuᵢ‖ < 1e-8
    (antipodal inputs) two versions fall back to Σ wᵢxᵢ and more are refused. Differences from mergekit:
    norms are used as they are (mergekit divides by ‖xᵢ‖ + 1e-8 and by ‖v‖ + 1e-8, so a small tensor's
    direction is shortened); ‖v‖ = 0 gives m itself.
    """

    name = "multislerp"
    summary = "spherical (barycentric) interpolation of any number of versions, weights per version"
    arguments = (WEIGHT, Argument("normalize_weights", Flag, Flag(True), "divide the weights by their sum"), USE_BASE)

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        origin = self._origin(base, arguments, name)
        weights = np.array(per_version(arguments["weight"], len(versions), "weight"))
        if arguments["normalize_weights"]:
            if weights.sum() <= 0:
                raise ThetaError(f"merge strategy 'multislerp': the weights of parameter {name!r} sum to 0")
            weights = weights / weights.sum()
        points = np.stack([(version if origin is None else version - origin).ravel() for version in versions])
        if len(versions) == 1:
            return versions[0]
        units, norms = _unit(points)
        mean = weights @ units
        mean_norm = float(np.linalg.norm(mean))
        if mean_norm < SPHERE_EPSILON:
            if len(versions) != 2:
                raise ThetaError(
                    f"merge strategy 'multislerp': the weighted mean direction of parameter {name!r} is zero "
                    "(antipodal versions); use other weights"
                )
            result = weights @ points
        else:
            mean /= mean_norm
            tangent = weights @ (units - (units @ mean)[:, None] * mean)
            length = float(np.linalg.norm(tangent))
            direction = mean if length == 0 else mean * np.cos(length) + tangent * (np.sin(length) / length)
            result = direction * float(weights @ norms[:, 0])
        merged: np.ndarray[Any, Any] = result.reshape(versions[0].shape)
        return merged if origin is None else merged + origin


def nuslerp(
    t: float, first: np.ndarray[Any, Any], second: np.ndarray[Any, Any], row_wise: bool, flatten: bool
) -> np.ndarray[Any, Any]:
    """mergekit's nuslerp: slerp along the last axis (each row), the first axis (`row_wise`) or the whole tensor
    (`flatten`)."""
    shape = first.shape
    if flatten or first.ndim < 2:
        a, b = first.reshape(1, -1), second.reshape(1, -1)
    elif row_wise:
        a, b = np.swapaxes(first, 0, -1), np.swapaxes(second, 0, -1)
    else:
        a, b = first, second
    cosine = np.clip(np.sum(_unit(a)[0] * _unit(b)[0], axis=-1, keepdims=True), -1.0, 1.0)
    theta = np.arccos(cosine)
    sine = np.sin(theta)
    colinear = np.abs(sine) < SPHERE_EPSILON
    safe = np.where(colinear, 1.0, sine)
    result = np.where(colinear, (1 - t) * a + t * b, (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / safe)
    if not flatten and first.ndim >= 2 and row_wise:
        result = np.swapaxes(result, 0, -1)
    return result.reshape(shape)


class NuslerpStrategy(_Spherical):
    """Two versions x₀ = ours, x₁ = theirs (with `use_base`: θᵢ − θ_base); t = w₁ / (w₀ + w₁) (0.5 when
    |w₀ + w₁| < 1e-6); per vector (the whole tensor with `nuslerp_flatten`, else each row along the last
    axis, or along the first axis with `nuslerp_row_wise`): θ = arccos⟨x₀/‖x₀‖, x₁/‖x₁‖⟩,
    merged = (sin((1−t)θ)·x₀ + sin(tθ)·x₁) / sin θ, or (1−t)·x₀ + t·x₁ where |sin θ| < 1e-8 (plus θ_base
    with `use_base`).

    mergekit's `nuslerp`, arguments named as there. A zero vector has a zero direction (θ = π/2).
    Differences from mergekit: norms are used as they are (mergekit clamps them to at least 1e-7).
    """

    name = "nuslerp"
    summary = "slerp of two versions or of their task vectors, per tensor, row or column, weights per version"
    arguments = (
        WEIGHT,
        Argument("nuslerp_flatten", Flag, Flag(True), "interpolate the whole tensor as one vector"),
        Argument(
            "nuslerp_row_wise",
            Flag,
            Flag(False),
            "without flatten: interpolate along the first axis instead of the last",
        ),
        USE_BASE,
    )

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        if len(versions) != 2:
            raise ThetaError(
                f"merge strategy 'nuslerp' merges exactly 2 versions; parameter {name!r} has {len(versions)}"
            )
        origin = self._origin(base, arguments, name)
        w0, w1 = per_version(arguments["weight"], 2, "weight")
        t = 0.5 if abs(w0 + w1) < 1e-6 else w1 / (w0 + w1)
        first, second = versions if origin is None else [version - origin for version in versions]
        result = nuslerp(t, first, second, bool(arguments["nuslerp_row_wise"]), bool(arguments["nuslerp_flatten"]))
        return result if origin is None else result + origin
