"""Argument values that vary across layers (gradients) or across the merged versions (per-model values).

A gradient is a list of numbers interpolated along the layer index, as
mergekit's are: a parameter of layer i of a model with L layers sits at
t = i / (L − 1) (t = 1 when L = 1), and a gradient [v₀, …, vₙ₋₁] there is
(1 − f)·v_j + f·v_j₊₁ with s = t·(n − 1), j = ⌊s⌋, f = s − j. The layer index
is the number after the first `layers.`, `layer.`, `h.`, `blk.`, `block.` or
`blocks.` component of the parameter name (`model.layers.3.mlp.up_proj.weight`,
`encoder.layer.3.output.dense.bias`, `transformer.h.3.attn.c_attn.weight`,
`blk.3.ffn_up.weight`); L is the largest index in the checkpoint plus one.
A name without a layer index (embeddings, final norm, heads) takes t = 0, the
gradient's first value: git-theta has no architecture tables, so it cannot
put a head at t = 1 as mergekit does; give such names their own rule.

A per-model argument (Argument.per_model) reaches its strategy as a tuple,
one value per version, ours first: from a TOML table keyed by version, a
scalar or a gradient (the same for every version), or a comma list on the
command line (one value per version, in order).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from git_theta.errors import ThetaError
from git_theta.merge.strategies.base import Argument

LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|blk|blocks|block)\.(\d{1,7})(?:\.|$)")
# A layer index or a rule's layer bound above this is refused (no model has a million layers).
MAX_LAYER = 1_000_000
MAX_VALUES = 64  # values in a gradient, versions in a per-model table (as MAX_LIST_ITEMS in policy.py)
MAX_KEY_CHARS = 1024


def layer_index(name: str) -> int | None:
    """The layer a parameter belongs to, from its name; None for names outside the numbered layers."""
    match = LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None


def layer_count(names: Iterable[str]) -> int:
    """L: the largest layer index among `names` plus one (0 when no name has one)."""
    return max((index + 1 for index in map(layer_index, names) if index is not None), default=0)


def position(name: str, layers: int) -> float:
    """t for parameter `name` of a model with `layers` layers (mergekit's rule; 0 outside the layers)."""
    index = layer_index(name)
    if index is None:
        return 0.0
    if layers <= 1:
        return 1.0
    return min(index, layers - 1) / (layers - 1)


def interpolate(values: Sequence[float], t: float) -> float:
    """mergekit's gradient at t ∈ [0, 1]: piecewise linear through the values, evenly spaced."""
    scaled = t * (len(values) - 1)
    low = int(scaled)
    high = min(len(values) - 1, low + 1)
    fraction = scaled - low
    return (1 - fraction) * values[low] + fraction * values[high]


@dataclass(frozen=True)
class Context:
    """What a varying value needs: the versions' labels (ours first), other names for them, the layer count."""

    labels: tuple[str, ...]
    aliases: Mapping[str, int]
    layers: int

    def versions(self) -> dict[str, int]:
        found = dict(self.aliases)
        found.update({label: index for index, label in enumerate(self.labels)})
        return found


def default_context(labels: Sequence[str], layers: int = 0) -> Context:
    return Context(tuple(labels), {"ours": 0, "HEAD": 0}, layers)


@dataclass(frozen=True)
class Gradient:
    values: tuple[float, ...]


@dataclass(frozen=True)
class Filtered:
    """mergekit's conditional values: the first whose filter is None, "*" or a substring of the parameter name."""

    conditions: tuple[tuple[str | None, float | Gradient], ...]


Value = float | Gradient | Filtered


@dataclass(frozen=True)
class PerVersion:
    """A table keyed by version; each entry a number, a Gradient or Filtered; `fallback` for what none gives."""

    entries: Mapping[str, Value]
    fallback: Value | None = None


@dataclass(frozen=True)
class Positional:
    """One value per version in order (a comma list on the command line)."""

    values: tuple[float, ...]


Setting = Gradient | Filtered | PerVersion | Positional
SETTINGS = (Gradient, Filtered, PerVersion, Positional)


def per_model(argument: Argument) -> bool:
    return bool(getattr(argument, "per_model", False))


def varies(argument: Argument, value: Any) -> bool:
    """True when `value` is a gradient, a table or a per-version list rather than one plain value."""
    if isinstance(value, dict):
        return True
    if isinstance(value, list):
        return per_model(argument) or argument.type in (int, float)
    return isinstance(value, str) and per_model(argument) and "," in value


def number(argument: Argument, value: Any, strategy: str, where: str) -> float:
    """`value` (a number, or its text) parsed and range-checked as `argument`; errors name `where`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ThetaError(f"{where}: {value!r} is not a number")
    try:
        parsed = argument.parse(value, strategy)
    except ThetaError as error:
        raise ThetaError(f"{where}: {error}") from None
    if not isinstance(parsed, (int, float)) or not math.isfinite(parsed):
        raise ThetaError(f"{where}: {value!r} is not a finite number")
    return float(parsed)


def _gradient(argument: Argument, values: list[Any], strategy: str, where: str) -> Gradient:
    if not 1 <= len(values) <= MAX_VALUES:
        raise ThetaError(f"{where}: a gradient needs 1 to {MAX_VALUES} values, not {len(values)}")
    if argument.type not in (int, float):
        raise ThetaError(f"{where}: a {getattr(argument.type, '__name__', 'value')} argument cannot vary across layers")
    # The values are range-checked; interpolated ones lie between two of them, so they pass too.
    return Gradient(tuple(number(argument, value, strategy, where) for value in values))


def parse_setting(argument: Argument, value: Any, strategy: str, where: str) -> Setting:
    """Validate a varying value (every number range-checked now, version names when the merge runs)."""
    if isinstance(value, dict):
        if not per_model(argument):
            raise ThetaError(f"{where}: only a per-model argument takes a table keyed by version")
        if not 1 <= len(value) <= MAX_VALUES:
            raise ThetaError(f"{where}: a per-model table needs 1 to {MAX_VALUES} versions, not {len(value)}")
        entries: dict[str, Value] = {}
        for key, item in value.items():
            if len(key) > MAX_KEY_CHARS:
                raise ThetaError(
                    f"{where}: a version name of {len(key)} characters is longer than the {MAX_KEY_CHARS} allowed"
                )
            inner = f"{where} (version {key!r})"
            entries[key] = (
                _gradient(argument, item, strategy, inner)
                if isinstance(item, list)
                else number(argument, item, strategy, inner)
            )
        return PerVersion(entries)
    if isinstance(value, list):
        return _gradient(argument, value, strategy, where)
    items = str(value).split(",")
    if len(items) > MAX_VALUES:
        raise ThetaError(f"{where}: {len(items)} values, more than the {MAX_VALUES} allowed")
    return Positional(tuple(number(argument, item.strip(), strategy, where) for item in items))


def _numbers(value: Setting | Value | None) -> list[float]:
    if isinstance(value, Gradient | Positional):
        return list(value.values)
    if isinstance(value, Filtered):
        return [number for _, inner in value.conditions for number in _numbers(inner)]
    if isinstance(value, PerVersion):
        return [number for inner in (*value.entries.values(), value.fallback) for number in _numbers(inner)]
    return [] if value is None else [value]


def check(argument: Argument, setting: Setting, strategy: str, where: str) -> None:
    """Range-check every number of a setting built elsewhere (a mergekit recipe's) as `argument`."""
    for value in _numbers(setting):
        number(argument, value, strategy, where)


def convert(setting: Setting, function: Callable[[float], float]) -> Setting:
    """The same setting with `function` applied to each of its numbers (an alias's unit to its target's)."""
    converted: Setting = _convert(setting, function)
    return converted


def _convert(value: Any, function: Callable[[float], float]) -> Any:
    if isinstance(value, Gradient):
        return Gradient(tuple(function(v) for v in value.values))
    if isinstance(value, Positional):
        return Positional(tuple(function(v) for v in value.values))
    if isinstance(value, Filtered):
        return Filtered(tuple((f, _convert(v, function)) for f, v in value.conditions))
    if isinstance(value, PerVersion):
        entries = {key: _convert(v, function) for key, v in value.entries.items()}
        return PerVersion(entries, None if value.fallback is None else _convert(value.fallback, function))
    return function(value)


def _cast(argument: Argument, value: float) -> float | int:
    return round(value) if argument.type is int else value


def _at(argument: Argument, value: Value | None, name: str, t: float) -> float | int | None:
    """A value for parameter `name` at t, or None when no filter of a Filtered value matches."""
    if isinstance(value, Filtered):
        found = next((v for f, v in value.conditions if f is None or f == "*" or f in name), None)
        return _at(argument, found, name, t)
    if value is None:
        return None
    return _cast(argument, interpolate(value.values, t) if isinstance(value, Gradient) else value)


def _or_default(argument: Argument, value: float | None, label: str, where: str) -> float:
    if value is not None:
        return value
    default = argument.default
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise ThetaError(f"{where}: no value for {label} (and the argument has no numeric default)")
    return default


def evaluate(argument: Argument, setting: Setting, name: str, context: Context, where: str) -> Any:
    """The value of a varying argument for parameter `name`: a number, or a tuple per version for per-model."""
    t = position(name, context.layers)
    count = len(context.labels)
    if isinstance(setting, (Gradient, Filtered)):
        value = _or_default(argument, _at(argument, setting, name, t), f"parameter {name!r}", where)
        return (value,) * count if per_model(argument) else value
    if isinstance(setting, Positional):
        if len(setting.values) not in (1, count):
            raise ThetaError(
                f"{where}: {len(setting.values)} values for {count} versions ({', '.join(context.labels)})"
            )
        values = setting.values * count if len(setting.values) == 1 else setting.values
        return tuple(_cast(argument, v) for v in values)
    known = context.versions()
    found: dict[int, float | int | None] = {}
    for key, entry in setting.entries.items():
        if key not in known:
            raise ThetaError(f"{where}: no version {key!r} in this merge (versions: {', '.join(context.labels)})")
        if known[key] in found:
            raise ThetaError(f"{where}: version {context.labels[known[key]]!r} is given twice (as {key!r})")
        found[known[key]] = _at(argument, entry, name, t)
    fallback = _at(argument, setting.fallback, name, t)
    given = [found.get(index) for index in range(count)]
    return tuple(
        _or_default(argument, fallback if v is None else v, f"version {label!r}", where)
        for v, label in zip(given, context.labels)
    )


def parse_layers(value: Any, where: str) -> tuple[int, int]:
    """A rule's `layers`: "0-5", [0, 5] or 3; both ends included."""
    if isinstance(value, str):
        low, sep, high = value.partition("-")
        bounds: list[Any] = [low.strip(), high.strip()] if sep else [value.strip()]
        if not all(b.isdigit() and len(b) <= 7 for b in bounds):
            raise ThetaError(f'{where}: layers = {value!r} is not a range like "0-5" (both ends included)')
        bounds = [int(b) for b in bounds]
    elif isinstance(value, list) and len(value) == 2:
        bounds = value
    elif isinstance(value, int):
        bounds = [value]
    else:
        raise ThetaError(f'{where}: layers must be "FIRST-LAST", [FIRST, LAST] or one layer number')
    if any(isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= MAX_LAYER for b in bounds):
        raise ThetaError(f"{where}: layer numbers must be integers from 0 to {MAX_LAYER}")
    low_bound, high_bound = bounds[0], bounds[-1]
    if low_bound > high_bound:
        raise ThetaError(f"{where}: layers {low_bound}-{high_bound} is empty (the first is after the last)")
    return low_bound, high_bound
