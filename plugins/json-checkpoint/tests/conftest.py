"""Fixtures for the plugin's own tests, from git-theta's pytest plugin for plugin authors (git_theta.testing).

This directory is a package (it has an __init__.py) so that this conftest is
imported as `tests.conftest` and never shadows git-theta's own `conftest`
module when both test trees run in one pytest session. The fixture is imported
rather than named in `pytest_plugins`, which pytest allows only in the
session's first conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from git_theta.testing import theta_repo, track

__all__ = ["repo", "theta_repo"]


@pytest.fixture
def repo(theta_repo: Path) -> Path:
    """git_theta.testing's repository, with *.json tracked."""
    track(theta_repo, "*.json")
    return theta_repo
