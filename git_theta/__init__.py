"""git-theta: version-control machine-learning model checkpoints in git."""

from __future__ import annotations

__version__ = "0.3.0"
