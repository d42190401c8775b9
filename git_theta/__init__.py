"""git-theta: version-control machine-learning model checkpoints in git."""

from __future__ import annotations

__version__ = "0.3.0"

# The Python API (see git_theta/api.py); importing it loads no numpy, torch or store code.
from git_theta.api import load, load_param, save  # noqa: E402

__all__ = ["__version__", "load", "load_param", "save"]
