"""Put the choosing together: command line, git config, policy file, terminal prompt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from git_theta.merging import settings
from git_theta.merging.engine import Chooser
from git_theta.merging.plan import Conflict
from git_theta.merging.policy import Choice, config_choice, load_policy
from git_theta.merging.prompt import TerminalPrompt, open_terminal
from git_theta.merging.resolve import resolve


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
