"""Numbers of `git theta diff` for one tensor: exact bit comparison, float64 sums, NaN and zero norms."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from git_theta import tensor_diff
from git_theta.tensor import Tensor


def compare(old: np.ndarray, new: np.ndarray) -> tensor_diff.ChangeStats:
    return tensor_diff.compare(Tensor.from_numpy(old), Tensor.from_numpy(new))


def test_matches_numpy_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensor_diff, "CHUNK_ELEMENTS", 7)  # several chunks, the last one short
    rng = np.random.default_rng(1)
    old = rng.normal(size=(5, 9)).astype(np.float32)
    new = old.copy()
    new[::2, 3] += 0.25
    stats = compare(old, new)
    a, b = old.astype(np.float64).ravel(), new.astype(np.float64).ravel()
    assert math.isclose(stats.norm, float(np.linalg.norm(b - a)), rel_tol=1e-12)
    assert math.isclose(stats.relative or 0, float(np.linalg.norm(b - a) / np.linalg.norm(a)), rel_tol=1e-12)
    assert stats.changed_count == 3 and stats.changed == 3 / 45
    assert math.isclose(stats.max_abs, float(np.max(np.abs(b - a))), rel_tol=1e-12)
    assert math.isclose(stats.cosine or 0, float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), rel_tol=1e-12)


def test_bits_not_values_decide_changed() -> None:
    stats = compare(np.array([0.0, 1.0], dtype=np.float32), np.array([-0.0, 1.0], dtype=np.float32))
    assert stats.changed_count == 1 and stats.norm == 0.0 and stats.cosine == 1.0


def test_nan_propagates_and_becomes_null_in_json() -> None:
    stats = compare(np.array([1.0, 2.0], dtype=ml_dtypes.bfloat16), np.array([1.0, np.nan], dtype=ml_dtypes.bfloat16))
    assert math.isnan(stats.norm) and math.isnan(stats.max_abs) and math.isnan(stats.cosine or 0)
    doc = stats.to_json()
    assert doc["norm"] is None and doc["max_abs"] is None and doc["cosine"] is None and doc["changed_count"] == 1


def test_zero_norms_and_integers() -> None:
    zero = compare(np.zeros(3, dtype=np.int64), np.array([0, 3, -4], dtype=np.int64))
    assert zero.relative is None and zero.cosine is None and zero.norm == 5.0 and zero.max_abs == 4.0
    empty = compare(np.zeros((0, 4), dtype=np.float32), np.zeros((0, 4), dtype=np.float32))
    assert (empty.norm, empty.changed, empty.changed_count) == (0.0, 0.0, 0)


def test_layouts_must_match() -> None:
    with pytest.raises(ValueError, match="cannot compare F32"):
        compare(np.zeros(3, dtype=np.float32), np.zeros(4, dtype=np.float32))


def test_unchanged_infinities_do_not_poison_the_change() -> None:
    # An attention-mask style -inf that both versions hold: only the changed entry counts.
    stats = compare(np.array([-np.inf, 1.0, 2.0], dtype=np.float32), np.array([-np.inf, 1.0, 3.0], dtype=np.float32))
    assert stats.norm == 1.0 and stats.max_abs == 1.0 and stats.changed_count == 1
