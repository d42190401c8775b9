"""The median plugin: found through its entry point, correct, and usable from `git theta merge`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from git_theta_merge_median.median import MedianStrategy
from safetensors.numpy import load_file, save_file

from git_theta import plugins
from git_theta.errors import ThetaError
from git_theta.testing import commit, run, theta_repo, track


def test_registered_through_entry_point() -> None:
    assert plugins.get(plugins.MERGES, "median") is MedianStrategy


def test_hand_checked_odd_and_even() -> None:
    versions = [np.array([1.0, 9.0]), np.array([5.0, -1.0]), np.array([2.0, 0.0])]
    np.testing.assert_array_equal(MedianStrategy().merge(versions, None, {"include_base": 0}, "w"), [2.0, 0.0])
    np.testing.assert_array_equal(MedianStrategy().merge(versions[:2], None, {"include_base": 0}, "w"), [3.0, 4.0])
    np.testing.assert_array_equal(
        MedianStrategy().merge(versions[:2], np.array([0.0, 100.0]), {"include_base": 1}, "w"), [1.0, 9.0]
    )


def test_include_base_needs_a_base() -> None:
    with pytest.raises(ThetaError, match="no merge-base version"):
        MedianStrategy().merge([np.zeros(1)] * 2, None, {"include_base": 1}, "w")


def test_three_way_merge_with_git_theta(theta_repo: Path) -> None:
    repo = theta_repo
    track(repo, "*.safetensors")
    save_file({"w": np.zeros(3, np.float32)}, repo / "m.safetensors")
    commit(repo, "m.safetensors", "base")
    for branch, values in (("a", [1, 5, 9]), ("b", [2, 4, -9]), ("c", [30, 6, 0])):
        run(repo, "git", "checkout", "-q", "-b", branch, "main")
        save_file({"w": np.array(values, np.float32)}, repo / "m.safetensors")
        commit(repo, "m.safetensors", branch)
    result = run(repo, "git-theta", "merge", "a", "b", "c", "--path", "m.safetensors", "--strategy", "median")
    assert "1 computed" in result.stdout + result.stderr
    np.testing.assert_array_equal(load_file(repo / "m.safetensors")["w"], [2, 5, 0])


__all__ = ["theta_repo"]  # the fixture, imported from git_theta.testing (no conftest needed for one file)
