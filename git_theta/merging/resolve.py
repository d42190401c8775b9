"""Give every conflicting parameter a strategy, or stop with a message saying how to resolve."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from git_theta import plugins
from git_theta.errors import ThetaError
from git_theta.merging import settings
from git_theta.merging.plan import Conflict
from git_theta.merging.policy import CONFIG_STRATEGY, POLICY_FILE, Choice, Policy

# Asks the user about the conflicts left; returns a choice for each, or raises UnresolvedConflicts.
Asker = Callable[[str, Sequence[Conflict], Sequence[str]], dict[str, Choice]]
LISTED = 20


class UnresolvedConflicts(ThetaError):
    """Parameters were left without a strategy; the merge did not happen."""


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
        raise UnresolvedConflicts(unresolved_message(path, left, labels, hint, "no merge strategy covers them and there is no terminal to ask on"))
    context = context or settings.default_context(labels)
    return {name: choice.at(name, context) for name, choice in choices.items()}


def unresolved_message(path: str, conflicts: Sequence[Conflict], labels: Sequence[str], hint: str, why: str) -> str:
    strategies = ", ".join(plugins.names(plugins.MERGES))
    lines = [f"{path}: {len(conflicts)} parameter(s) changed differently on several sides; {why}:"]
    lines += [f"  {conflict.describe(labels)}" for conflict in conflicts[:LISTED]]
    if len(conflicts) > LISTED:
        lines.append(f"  ... and {len(conflicts) - LISTED} more")
    lines += [
        "To resolve:",
        f"  - {hint}",
        f"  - or commit a policy file {POLICY_FILE} at the repository root (e.g. [default] strategy = \"average\",",
        '    [[rule]] params = "encoder.*" strategy = "ties" k = 0.2), or run',
        f"    `git config {CONFIG_STRATEGY} average`, then merge again",
        f"  strategies: {strategies} (see `git theta merge --list-strategies`)",
    ]
    return "\n".join(lines)
