"""task_vectors: the one task-vector merge that task-arithmetic, TIES and DARE configure."""

from __future__ import annotations

from hashlib import blake2b
from pathlib import Path

import numpy as np
import pytest

from git_theta.errors import ThetaError
from git_theta.merge.strategies.dare import DareStrategy
from git_theta.merge.strategies.task_arithmetic import TaskArithmeticStrategy
from git_theta.merge.strategies.task_vectors import (
    TaskVectorConfig,
    disjoint_mean,
    drop_and_rescale,
    merge_task_vectors,
    per_version,
    seed_for,
    trim,
)
from git_theta.merge.strategies.ties import TiesStrategy


def test_methods_are_configurations() -> None:
    assert TiesStrategy().config({"k": 0.3, "lambda": 0.5}) == TaskVectorConfig(scale=0.5, density=0.3, elect_sign=True)
    assert DareStrategy().config({"p": 0.4, "lambda": 2.0, "seed": 7}) == TaskVectorConfig(scale=2.0, drop=0.4, seed=7)
    assert TaskArithmeticStrategy().config({"lambda": 0.9}) == TaskVectorConfig(scale=0.9)


def test_drop_then_trim_then_elect_compose_in_that_order() -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(size=(8, 8))
    versions = [base + rng.normal(size=base.shape) for _ in range(3)]
    config = TaskVectorConfig(scale=0.7, density=0.5, drop=0.3, seed=4, elect_sign=True)
    draws = np.random.default_rng(seed_for(4, "w"))
    vectors = [trim(drop_and_rescale(v - base, 0.3, draws), 0.5) for v in versions]
    np.testing.assert_array_equal(merge_task_vectors(base, versions, config, "w"), base + 0.7 * disjoint_mean(vectors))


def test_inputs_are_not_modified() -> None:
    base, versions = np.zeros(4), [np.array([1.0, -2.0, 3.0, 0.5]), np.array([-1.0, 2.0, 1.0, 0.0])]
    copies = [v.copy() for v in versions]
    merge_task_vectors(base, versions, TaskVectorConfig(density=0.5, drop=0.5, elect_sign=True), "w")
    for version, copy in zip(versions, copies):
        np.testing.assert_array_equal(version, copy)


def test_documented_seed_formula_is_the_code() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "merging.md").read_text(encoding="utf-8")
    formula = doc.split("seeded with `", 1)[1].split("`", 1)[0]
    assert formula.startswith("int.from_bytes(blake2b(")
    for seed, name in ((0, "w"), (7, "encoder.layer.0.attention.self.query.weight"), (12345, "é")):
        assert eval(formula, {"blake2b": blake2b, "seed": seed, "name": name}) == seed_for(seed, name)
    # a digest of size 8 is not the first 8 bytes of the default 64-byte digest
    assert blake2b(b"0\0w", digest_size=8).digest() != blake2b(b"0\0w").digest()[:8]


def test_per_version() -> None:
    assert per_version(0.5, 3) == (0.5, 0.5, 0.5)
    assert per_version((1, 2), 2) == (1.0, 2.0)
    with pytest.raises(ThetaError, match="weight: 3 values were given"):
        per_version((1.0, 2.0, 3.0), 2, "weight")
