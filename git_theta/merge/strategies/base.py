"""The interface a merge strategy plugin implements.

A strategy declares its arguments once (`arguments`), so validation, CLI
help and the docs all come from the same place. `merge` gets float64 numpy
arrays (the caller converts from and back to the parameter's dtype).

Register a strategy in your package's setup.py:

    entry_points={"git_theta.merges": ["mystrategy = mypkg.module:MyStrategy"]}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from git_theta.errors import ThetaError


@dataclass(frozen=True)
class Argument:
    """One argument of a strategy: name, type, default, allowed range, help."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    per_model: bool = False  # one value per version, ours first (a table keyed by version in .thetamerge.toml)

    def parse(self, value: Any, strategy: str) -> Any:
        try:
            parsed = self.type(value)
        except (TypeError, ValueError):
            raise ThetaError(
                f"merge strategy {strategy!r}: argument {self.name}={value!r} is not a {self.type.__name__}"
            ) from None
        if self.minimum is not None and parsed < self.minimum:
            raise ThetaError(f"merge strategy {strategy!r}: {self.name}={parsed} is below the minimum {self.minimum}")
        if self.maximum is not None and parsed > self.maximum:
            raise ThetaError(f"merge strategy {strategy!r}: {self.name}={parsed} is above the maximum {self.maximum}")
        return parsed


@dataclass(frozen=True)
class Alias:
    """Another name for an argument, in another unit: mergekit's `density` (the share KEPT) for ties' `k` (the
    same share) and for dare's `p` (the share DROPPED, so p = 1 − density).

    `argument` gives the alias its own range, default and help (range-checked in its own unit, so a refusal
    names what the user wrote); its value reaches the strategy as `target`, complemented (1 − value) when
    `complement`. Giving both the alias and the target is refused by name (policy.make_choice).
    """

    argument: Argument
    target: str
    complement: bool = False

    def convert(self, value: float) -> float:
        return 1.0 - value if self.complement else value


class MergeStrategy(ABC):
    """Combine one parameter's versions from several branches."""

    name: ClassVar[str]
    summary: ClassVar[str]
    arguments: ClassVar[tuple[Argument, ...]] = ()
    # Other names for some of `arguments` (resolved before `parse_arguments` sees them).
    aliases: ClassVar[tuple[Alias, ...]] = ()
    # True when the merge base's value is needed (task-vector methods).
    needs_base: ClassVar[bool] = False

    @classmethod
    def parse_arguments(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validated arguments with defaults filled in; unknown names are an error."""
        known = {argument.name: argument for argument in cls.arguments}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ThetaError(
                f"merge strategy {cls.name!r} has no argument {unknown[0]!r}; it takes: {', '.join(known) or 'none'}"
            )
        return {
            name: argument.parse(given[name], cls.name) if name in given else argument.default
            for name, argument in known.items()
        }

    def uses_base(self, arguments: Mapping[str, Any]) -> bool:
        """True when `merge` needs the merge base's version with these arguments (nuslerp's use_base, say)."""
        return self.needs_base

    def pick(self, arguments: Mapping[str, Any]) -> int | None:
        """Index of the version taken as is (-1: the merge base), or None when `merge` computes a value.

        A strategy that picks one version never loads a tensor: the caller
        reuses that version's stored entry (and can follow a deletion).
        """
        return None

    @abstractmethod
    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        """The merged value of parameter `name` from `versions` (ours first)."""
