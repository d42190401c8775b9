"""The name merge strategy plugins were first written against; the strategies live in git_theta.merge.strategies.

Only base.py is kept here, because docs/plugins.md promises `git_theta.merges.base` to plugin authors.
"""
