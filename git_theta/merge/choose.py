"""Who decides the strategy of each conflicting parameter: the one place where the choosing is put together.

Precedence: a strategy given on the command line, then git config `theta.merge.strategy`, then the committed
policy file `.thetamerge.toml` (parsed in policy.py), then the terminal prompt (prompt.py); what none of them
covers stops the merge with a message saying how to resolve (unresolved.py). Never a silent default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from git_theta.merge import settings
from git_theta.merge.engine import Chooser
from git_theta.merge.plan import Conflict
from git_theta.merge.policy import Choice, Policy, config_choice, load_policy
from git_theta.merge.prompt import TerminalPrompt, open_terminal
from git_theta.merge.unresolved import UnresolvedConflicts, unresolved_message

# Asks the user about the conflicts left; returns a choice for each, or raises UnresolvedConflicts.
Asker = Callable[[str, Sequence[Conflict], Sequence[str]], dict[str, Choice]]


def chooser(
    toplevel: Path,
    path: str,
    labels: Sequence[str],
    command_line: Choice | None,
    hint: str,
    context: settings.Context | None = None,
) -> Chooser:
    """A Chooser that reads config and policy, and opens the terminal, only if something conflicts.

    `context` gives the layer count and version names that gradients and per-model values need."""

    def choose(conflicts: Sequence[Conflict]) -> dict[str, Choice]:
        override = command_line or config_choice(toplevel)
        policy = None if override else load_policy(toplevel)
        tty = open_terminal()
        try:
            ask = TerminalPrompt(tty, hint) if tty is not None else None
            return resolve(path, conflicts, labels, override, policy, ask, hint, context)
        finally:
            if tty is not None:
                tty.close()

    return choose


def resolve(
    path: str,
    conflicts: Sequence[Conflict],
    labels: Sequence[str],
    override: Choice | None,
    policy: Policy | None,
    ask: Asker | None,
    hint: str,
    context: settings.Context | None = None,
) -> dict[str, Choice]:
    """A choice per conflicting parameter: override, else policy, else asked; never a silent default.

    Each choice is evaluated for its parameter (gradients at its layer, per-model values per version)."""
    choices: dict[str, Choice] = {}
    left = []
    for conflict in conflicts:
        choice = override or (policy.choose(path, conflict.name) if policy else None)
        if choice is None:
            left.append(conflict)
        else:
            choices[conflict.name] = choice
    if left and ask is not None:
        choices.update(ask(path, left, labels))
    elif left:
        raise UnresolvedConflicts(
            unresolved_message(
                path, left, labels, hint, "no merge strategy covers them and there is no terminal to ask on"
            )
        )
    context = context or settings.default_context(labels)
    return {name: choice.at(name, context) for name, choice in choices.items()}
