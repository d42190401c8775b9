"""average: element-wise mean, checked against NumPy."""

from __future__ import annotations

import numpy as np

from git_theta.merge.strategies.average import AverageStrategy


def test_two_versions_hand_checked() -> None:
    merged = AverageStrategy().merge([np.array([1.0, 2.0, -3.0]), np.array([3.0, 4.0, 5.0])], None, {}, "w")
    np.testing.assert_array_equal(merged, [2.0, 3.0, 1.0])


def test_n_versions_match_numpy_mean() -> None:
    rng = np.random.default_rng(1)
    versions = [rng.normal(size=(3, 4)) for _ in range(4)]
    np.testing.assert_allclose(AverageStrategy().merge(versions, None, {}, "w"), np.mean(versions, axis=0), rtol=1e-15)
