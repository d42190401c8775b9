"""Arguments a strategy takes under another name: `density` (mergekit's, the share KEPT) for ties' `k` and dare's `p`.

One rule for every way a merge is configured (`.thetamerge.toml`, `git theta merge --arg`, git config, the
prompt, `--mergekit-config`): each goes through policy.make_choice, which resolves aliases here before the
strategy's own arguments are parsed. The alias's value is range-checked in its own unit (so a refusal names
what the user wrote), then converted (dare: p = 1 − density) number by number, whatever its form: a plain
value, a gradient across layers, a table per version, a comma list, mergekit's filtered conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.errors import ThetaError
from git_theta.merge import settings
from git_theta.merge.strategies.base import Alias, MergeStrategy


def relation(alias: Alias) -> str:
    """How the alias's value becomes its target's, for messages and docs: "p = 1 − density"."""
    name = alias.argument.name
    return f"{alias.target} = 1 − {name}" if alias.complement else f"{alias.target} = {name}"


def resolve(strategy: type[MergeStrategy], arguments: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`arguments` with each alias replaced by its target's value; giving both is refused, naming both."""
    resolved = dict(arguments)
    for alias in strategy.aliases:
        name = alias.argument.name
        if name not in resolved:
            continue
        if alias.target in resolved:
            raise ThetaError(
                f"{source}: give {name} or {alias.target}, not both: they are one setting of "
                f"{strategy.name!r} ({relation(alias)})"
            )
        resolved[alias.target] = _converted(alias, resolved.pop(name), strategy.name, f"{source}: argument {name}")
    return resolved


def _converted(alias: Alias, value: Any, strategy: str, where: str) -> Any:
    if isinstance(value, str) and len(value) > settings.MAX_KEY_CHARS:  # never echo a huge value back
        raise ThetaError(
            f"{where}: a value of {len(value)} characters is longer than the {settings.MAX_KEY_CHARS} allowed"
        )
    if isinstance(value, settings.SETTINGS):  # built already (a mergekit recipe)
        settings.check(alias.argument, value, strategy, where)
        return settings.convert(value, alias.convert)
    if settings.varies(alias.argument, value):
        return settings.convert(settings.parse_setting(alias.argument, value, strategy, where), alias.convert)
    return alias.convert(settings.number(alias.argument, value, strategy, where))
