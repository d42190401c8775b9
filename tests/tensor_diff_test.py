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


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


def test_compare_many_gives_compare_of_each_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensor_diff, "GROUP_ELEMENTS", 64)  # several row groups per dtype and size
    rng = np.random.default_rng(2)
    pairs = []
    for index in range(60):
        dtype = [np.float32, np.float16, ml_dtypes.bfloat16, np.int64, np.bool_, ml_dtypes.float8_e4m3fn][index % 6]
        shape = [(4, 4), (3,), (), (0,), (2, 5)][index % 5]
        old = rng.normal(size=shape).astype(dtype)
        new = old.copy()
        if new.size and index % 3:
            new.reshape(-1)[index % new.size] = rng.normal()
        if index == 7:
            new.reshape(-1)[0] = np.nan
        if index == 13:
            old.reshape(-1)[:] = np.inf
            new = old.copy()
        if index == 19:
            old, new = np.zeros(shape, dtype), -np.zeros(shape, dtype)  # -0.0: the bits differ
        pairs.append((Tensor.from_numpy(old), Tensor.from_numpy(new)))
    pairs.append((Tensor.from_numpy(rng.normal(size=70000).astype(np.float32)),) * 2)  # too big to group
    got = tensor_diff.compare_many(pairs)
    assert len(got) == len(pairs)
    for (old_tensor, new_tensor), stats in zip(pairs, got):
        expected = tensor_diff.compare(old_tensor, new_tensor)
        assert stats.changed_count == expected.changed_count and stats.changed == expected.changed
        for field in ("norm", "relative", "max_abs", "cosine"):
            assert _close(getattr(stats, field), getattr(expected, field)), (field, stats, expected)


def test_compare_many_refuses_a_pair_of_other_layouts() -> None:
    a = Tensor.from_numpy(np.zeros((2, 2), np.float32))
    b = Tensor.from_numpy(np.zeros((4,), np.float32))
    with pytest.raises(ValueError, match="cannot compare"):
        tensor_diff.compare_many([(a, a), (a, b)])
