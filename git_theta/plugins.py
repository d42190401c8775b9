"""Find checkpoint formats, update types and merge strategies from entry points.

Built-ins register through the same entry points as third-party packages
(see setup.py). Plugins are sorted by name so every run sees the same order.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

from git_theta.errors import PluginError

CHECKPOINTS = "git_theta.checkpoints"
UPDATES = "git_theta.updates"
MERGES = "git_theta.merges"


@functools.lru_cache(maxsize=None)
def load_group(group: str) -> dict[str, Any]:
    """name -> plugin class for one entry-point group."""
    found: dict[str, Any] = {}
    for entry in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            plugin = entry.load()
        except Exception as error:
            dist = entry.dist.name if entry.dist else "unknown package"
            raise PluginError(f"plugin {entry.name!r} ({entry.value}) from package {dist!r} failed to load: {error}") from error
        found[entry.name] = plugin
    return found


def get(group: str, name: str) -> Any:
    plugins = load_group(group)
    if name not in plugins:
        kind = group.rsplit(".", 1)[-1]
        known = ", ".join(plugins) or "none"
        raise PluginError(f"unknown {kind} plugin {name!r}; known: {known}")
    return plugins[name]
