"""Find checkpoint formats, update types and merge strategies.

Built-ins (git_theta/builtin_plugins.py) register through the same entry
points as third-party packages (see setup.py), but are imported straight from
that table: scanning every installed package's entry points costs ~40 ms, paid
by each filter process git starts. Third-party plugins are found by entry
point; one that reuses a built-in name is ignored. Names sort, so every run
sees the same order.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from git_theta.builtin_plugins import BUILTIN_PLUGINS
from git_theta.errors import PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

CHECKPOINTS = "git_theta.checkpoints"
UPDATES = "git_theta.updates"
MERGES = "git_theta.merges"


@functools.lru_cache(maxsize=None)
def _third_party(group: str) -> dict[str, EntryPoint]:
    """name -> entry point, for the group's plugins from other packages (not loaded)."""
    from importlib import metadata

    builtin = BUILTIN_PLUGINS.get(group, {})
    return {entry.name: entry for entry in metadata.entry_points(group=group) if entry.name not in builtin}


def names(group: str) -> list[str]:
    """Every plugin name of the group, built-in and third-party, sorted."""
    return sorted({*BUILTIN_PLUGINS.get(group, {}), *_third_party(group)})


@functools.lru_cache(maxsize=None)
def get(group: str, name: str) -> Any:
    """The plugin class `name` of `group`; imports only that plugin's module."""
    target = BUILTIN_PLUGINS.get(group, {}).get(name)
    if target is not None:
        module, _, attribute = target.partition(":")
        return _load(name, target, "git-theta", lambda: getattr(importlib.import_module(module), attribute))
    entry = _third_party(group).get(name)
    if entry is None:
        kind = group.rsplit(".", 1)[-1]
        raise PluginError(f"unknown {kind} plugin {name!r}; known: {', '.join(names(group)) or 'none'}")
    return _load(name, entry.value, entry.dist.name if entry.dist else "unknown package", entry.load)


def load_group(group: str) -> dict[str, Any]:
    """name -> plugin class, for every plugin of the group (imports them all)."""
    return {name: get(group, name) for name in names(group)}


@functools.lru_cache(maxsize=None)
def loadable(group: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(name -> plugin class, name -> why it failed to load): one broken plugin must not stop the others.

    Cached like `get` (whose failures are not): a broken plugin is tried once per process. Do not modify the result.
    """
    found, broken = {}, {}
    for name in names(group):
        try:
            found[name] = get(group, name)
        except PluginError as error:
            broken[name] = str(error)
    return found, broken


def _load(name: str, target: str, package: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as error:
        raise PluginError(f"plugin {name!r} ({target}) from package {package!r} failed to load: {error}") from error
