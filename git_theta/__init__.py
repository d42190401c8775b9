"""git-theta: version-control machine-learning model checkpoints in git."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

__all__ = ["__version__", "load", "load_param", "save"]

if TYPE_CHECKING:
    from git_theta.api import load, load_param, save
else:

    def __getattr__(name: str) -> Any:
        """The Python API (git_theta/api.py), imported at first use: every filter git starts imports this package
        and never the API (~1.3 ms of its start-up)."""
        if name in ("load", "load_param", "save"):
            from git_theta import api

            return getattr(api, name)
        raise AttributeError(f"module 'git_theta' has no attribute {name!r}")
