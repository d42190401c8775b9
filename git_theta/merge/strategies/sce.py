"""sce: Select (high-variance entries), Calculate (weights from squared magnitudes), Erase (minority signs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument, MergeStrategy
from git_theta.merge.strategies.sparsify import kept_count, largest_first


def select(vectors: list[np.ndarray[Any, Any]], topk: float) -> list[np.ndarray[Any, Any]]:
    """Keep, in every task vector, the ⌈topk·z⌉ entries whose variance across the vectors is largest.

    z counts the entries of non-zero variance; equal variances: lowest index first.
    """
    if topk >= 1:
        return vectors
    variance = np.var(np.stack(vectors), axis=0)
    count = kept_count(topk, int(np.count_nonzero(variance)))
    mask = np.zeros(variance.size, dtype=bool)
    mask[largest_first(variance)[:count]] = True
    mask = mask.reshape(variance.shape)
    return [np.where(mask, vector, 0.0) for vector in vectors]


class SceStrategy(MergeStrategy):
    """τᵢ = θᵢ − θ_base; Select: with select_topk < 1, keep in every τᵢ only the ⌈select_topk·z⌉ entries of
    largest variance Var_i(τᵢ) (population variance across the versions; z = the entries of non-zero
    variance; equal variances: lowest index first); Calculate: wᵢ = mean(τᵢ²) / Σⱼ mean(τⱼ²) (equal
    weights when every τ is 0); Erase: γ = sign(Σᵢ τᵢ) per entry, τ_m = Σ_agree wᵢτᵢ / Σ_agree wᵢ over
    the τᵢ with the sign γ (0 where none; a sum of exactly 0 elects no sign); merged = θ_base + τ_m.

    Wan et al. 2024, "FuseChat: Knowledge Fusion of Chat Models" (arXiv:2408.07990), as mergekit's `sce`.
    Differences from mergekit: ⌈select_topk·z⌉ entries are kept (mergekit ⌊·⌋) with ties by index, the
    weights fall back to equal only when Σ mean(τ²) is exactly 0 (mergekit: below 1e-6, which is every
    fine-tune whose deltas are around 1e-3), the divisor is used as is (mergekit clamps it to 1e-6), and a
    zero sum elects no sign (mergekit elects +).
    """

    name = "sce"
    summary = "SCE: select high-variance entries, weight by squared magnitude, erase minority signs"
    arguments = (
        Argument(
            "select_topk",
            float,
            1.0,
            "share of the entries kept, by variance across the task vectors",
            minimum=0.0,
            maximum=1.0,
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
            raise ThetaError(f"merge strategy 'sce' needs the merge base's version of parameter {name!r}")
        vectors = select([version - base for version in versions], float(arguments["select_topk"]))
        energies = [float(np.mean(vector * vector)) for vector in vectors]
        total = sum(energies)
        weights = [energy / total for energy in energies] if total > 0 else [1.0 / len(vectors)] * len(vectors)
        summed = np.zeros_like(base)
        for vector in vectors:
            summed += vector
        elected = np.sign(summed)
        numerator = np.zeros_like(base)
        divisor = np.zeros_like(base)
        for vector, weight in zip(vectors, weights):
            agrees = vector * elected > 0
            np.add(numerator, weight * vector, out=numerator, where=agrees)
            np.add(divisor, weight, out=divisor, where=agrees)
        return base + np.divide(numerator, divisor, out=np.zeros_like(base), where=divisor > 0)
