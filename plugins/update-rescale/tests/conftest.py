"""The fixture comes from git-theta's pytest plugin for plugin authors; see the json-checkpoint example's conftest
for why it is imported rather than named in `pytest_plugins`."""

from __future__ import annotations

from git_theta.testing import theta_repo

__all__ = ["theta_repo"]
