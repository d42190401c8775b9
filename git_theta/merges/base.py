"""The merge strategy interface under its first name: git_theta.merge.strategies.base re-exported, nothing else.

docs/plugins.md promises plugins may import `git_theta.merges.base` for the whole major version.
"""

from git_theta.merge.strategies.base import Argument, MergeStrategy

__all__ = ["Argument", "MergeStrategy"]
