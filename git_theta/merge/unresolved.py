"""The error for conflicting parameters left without a strategy, and the message saying how to resolve them.

Its own module because both the decision (choose.py) and the terminal prompt (prompt.py) raise it.
"""

from __future__ import annotations

from collections.abc import Sequence

from git_theta import plugins
from git_theta.errors import ThetaError
from git_theta.merge.plan import Conflict
from git_theta.merge.policy import CONFIG_STRATEGY, POLICY_FILE

LISTED = 20


class UnresolvedConflicts(ThetaError):
    """Parameters were left without a strategy; the merge did not happen."""


def unresolved_message(path: str, conflicts: Sequence[Conflict], labels: Sequence[str], hint: str, why: str) -> str:
    strategies = ", ".join(plugins.names(plugins.MERGES))
    lines = [f"{path}: {len(conflicts)} parameter(s) changed differently on several sides; {why}:"]
    lines += [f"  {conflict.describe(labels)}" for conflict in conflicts[:LISTED]]
    if len(conflicts) > LISTED:
        lines.append(f"  ... and {len(conflicts) - LISTED} more")
    lines += [
        "To resolve:",
        f"  - {hint}",
        f'  - or commit a policy file {POLICY_FILE} at the repository root (e.g. [default] strategy = "average",',
        '    [[rule]] params = "encoder.*" strategy = "ties" k = 0.2), or run',
        f"    `git config {CONFIG_STRATEGY} average`, then merge again",
        f"  strategies: {strategies} (see `git theta merge --list-strategies`)",
    ]
    return "\n".join(lines)
