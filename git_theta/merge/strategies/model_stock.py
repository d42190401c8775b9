"""model-stock: interpolate between the average of the fine-tunes and the base, by the angle between their deltas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy
from git_theta.merge.strategies.flag import Flag


def mean_pairwise_cosine(offsets: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Mean over pairs i < j of cos(τᵢ, τⱼ) along the last axis; a pair with a zero vector counts as cos = 0."""
    norms = np.linalg.norm(offsets, axis=-1)
    total = np.zeros(offsets.shape[1:-1])
    pairs = 0
    for i in range(len(offsets)):
        for j in range(i + 1, len(offsets)):
            product = norms[i] * norms[j]
            dot = np.sum(offsets[i] * offsets[j], axis=-1)
            total += np.clip(np.divide(dot, product, out=np.zeros_like(total), where=product > 0), -1.0, 1.0)
            pairs += 1
    return total / pairs


class ModelStockStrategy(MergeStrategy):
    """τᵢ = θᵢ − θ_base for the k ≥ 2 versions; cos θ = the mean over pairs i < j of ⟨τᵢ, τⱼ⟩ / (‖τᵢ‖‖τⱼ‖)
    over the flattened tensor (with `filter_wise`: over each row, the last axis, one t per row);
    t = k·cos θ / (1 + (k−1)·cos θ); merged = t · (1/k)Σᵢ θᵢ + (1 − t) · θ_base.

    Jang, Yun & Han 2024, "Model Stock: All we need is just a few fine-tuned models" (arXiv:2403.19522),
    per tensor as mergekit's `model_stock` does (mergekit also takes the mean of the pairwise angles
    for k > 2). A pair with a zero τ counts as cos θ = 0 (so t = 0, the base, when one side did not move);
    where 1 + (k−1)·cos θ = 0 (the unit τᵢ sum to zero) t = 0. Differences from mergekit: the norms'
    product is used as is (mergekit clamps it to at least 1e-6, which shrinks cos θ of small deltas,
    e.g. of a bias, towards 0).
    """

    name = "model-stock"
    summary = "Model Stock: interpolate from the base toward the average by the angle between the fine-tunes"
    arguments = (
        Argument(
            "filter_wise",
            Flag,
            Flag(False),
            "one interpolation ratio per row (the last axis) instead of one per tensor",
        ),
    )
    needs_base = True

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        if base is None:
            raise ThetaError(f"merge strategy 'model-stock' needs the merge base's version of parameter {name!r}")
        if len(versions) < 2:
            raise ThetaError(f"merge strategy 'model-stock' needs at least 2 fine-tuned versions of parameter {name!r}")
        count = len(versions)
        # one row per ratio: the whole tensor, or (filter_wise) each vector along the last axis
        rows = base if arguments["filter_wise"] and base.ndim >= 2 else base.reshape(1, -1)
        offsets = np.stack([version.reshape(rows.shape) - rows for version in versions])
        cosine = mean_pairwise_cosine(offsets)
        denominator = 1 + (count - 1) * cosine
        ratio = np.divide(count * cosine, denominator, out=np.zeros_like(cosine), where=denominator != 0)[..., None]
        average = np.zeros_like(rows)
        for version in versions:
            average += version.reshape(rows.shape)
        average /= count
        merged: np.ndarray[Any, Any] = (ratio * average + (1 - ratio) * rows).reshape(base.shape)
        return merged
