"""Find checkpoint formats, update types and merge strategies.

Built-ins (git_theta/builtin_plugins.py) register through the same entry
points as third-party packages (see setup.py), but are imported straight from
that table: scanning every installed package's entry points costs ~40 ms, paid
by each filter process git starts. Third-party plugins are found by entry
point; one that reuses a built-in name is ignored. Names sort, so every run
sees the same order.

A loaded plugin is checked before use: it must be a subclass of its group's
base class, and its class `name` must equal its entry-point name, because
metadata records the class's name and lookups go by entry-point name: a
mismatch would let `git add` commit metadata that no checkout can find.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from git_theta.builtin_plugins import BUILTIN_PLUGINS
from git_theta.errors import PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from git_theta.checkpoints.base import CheckpointFormat
    from git_theta.merge.strategies.base import MergeStrategy
    from git_theta.updates.base import UpdateType

CHECKPOINTS = "git_theta.checkpoints"
UPDATES = "git_theta.updates"
MERGES = "git_theta.merges"

# group -> (module, class) of the base every plugin of the group subclasses; imported only when a plugin loads.
_BASES = {
    CHECKPOINTS: ("git_theta.checkpoints.base", "CheckpointFormat"),
    UPDATES: ("git_theta.updates.base", "UpdateType"),
    MERGES: ("git_theta.merge.strategies.base", "MergeStrategy"),
}

# (group, name) -> a class that loaded but was refused (wrong base or name), so a caller can still see what it
# claims (e.g. a format's extensions) and name the refusal instead of quietly using another plugin.
_REJECTED: dict[tuple[str, str], type] = {}


@functools.cache
def _third_party(group: str) -> dict[str, EntryPoint]:
    """name -> entry point, for the group's plugins from other packages (not loaded)."""
    from importlib import metadata

    builtin = BUILTIN_PLUGINS.get(group, {})
    return {entry.name: entry for entry in metadata.entry_points(group=group) if entry.name not in builtin}


def names(group: str) -> list[str]:
    """Every plugin name of the group, built-in and third-party, sorted."""
    return sorted({*BUILTIN_PLUGINS.get(group, {}), *_third_party(group)})


@functools.cache
def get(group: str, name: str) -> Any:
    """The plugin class `name` of `group`; imports only that plugin's module."""
    target = BUILTIN_PLUGINS.get(group, {}).get(name)
    if target is not None:
        module, _, attribute = target.partition(":")
        return _load(group, name, target, "git-theta", lambda: getattr(importlib.import_module(module), attribute))
    entry = _third_party(group).get(name)
    if entry is None:
        kind = group.rsplit(".", 1)[-1]
        raise PluginError(f"unknown {kind} plugin {name!r}; known: {', '.join(names(group)) or 'none'}")
    return _load(group, name, entry.value, entry.dist.name if entry.dist else "unknown package", entry.load)


def checkpoint(name: str) -> type[CheckpointFormat]:
    """The checkpoint format `name` (typed `get`: _load has checked the base class)."""
    return cast("type[CheckpointFormat]", get(CHECKPOINTS, name))


def update(name: str) -> type[UpdateType]:
    """The update type `name`."""
    return cast("type[UpdateType]", get(UPDATES, name))


def strategy(name: str) -> type[MergeStrategy]:
    """The merge strategy `name`."""
    return cast("type[MergeStrategy]", get(MERGES, name))


def load_group(group: str) -> dict[str, Any]:
    """name -> plugin class, for every plugin of the group (imports them all)."""
    return {name: get(group, name) for name in names(group)}


@functools.cache
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


def rejected(group: str, name: str) -> type | None:
    """The class of plugin `name` if it loaded but was refused for its name, else None. Not a plugin: read only
    its plain class attributes to explain the refusal."""
    return _REJECTED.get((group, name))


def _load(group: str, name: str, target: str, package: str, load: Callable[[], Any]) -> Any:
    where = f"plugin {name!r} ({target}) from package {package!r}"
    try:
        loaded = load()
    except Exception as error:
        raise PluginError(f"{where} failed to load: {error}") from error
    module, attribute = _BASES[group]
    base = getattr(importlib.import_module(module), attribute)
    if not (isinstance(loaded, type) and issubclass(loaded, base)):
        raise PluginError(f"{where} is not a subclass of {module}.{attribute}; a {group} plugin must be one")
    declared = getattr(loaded, "name", None)
    if declared != name:
        _REJECTED[group, name] = loaded
        raise PluginError(
            f"{where}: entry-point name {name!r} differs from the class's name {declared!r}; "
            "make them equal (metadata records the class's name, lookups use the entry point's)"
        )
    return loaded
