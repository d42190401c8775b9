"""git_theta.merges.base, the strategy interface's first name (promised in docs/plugins.md), is the same classes."""

from __future__ import annotations

from git_theta.merge.strategies import base
from git_theta.merges.base import Argument, MergeStrategy


def test_the_old_name_is_the_same_interface() -> None:
    assert MergeStrategy is base.MergeStrategy
    assert Argument is base.Argument
