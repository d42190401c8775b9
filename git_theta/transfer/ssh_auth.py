"""`git-lfs-authenticate` over SSH: how LFS servers hand out API credentials to SSH remotes (GitHub, GitLab).

`ssh [-p PORT] user@host git-lfs-authenticate <path> <upload|download>` prints JSON
with the API URL ("href") and headers (e.g. a short-lived token) for batch requests.
The ssh program is the one git uses: GIT_SSH_COMMAND, core.sshCommand, GIT_SSH, ssh.
If the command fails (no key, the server has no such command), we fall back to
https with git's credential helpers, as git-lfs does.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from git_theta import git
from git_theta.transfer.endpoint import SshTarget

TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class SshAuth:
    href: str | None
    header: dict[str, str] = field(default_factory=dict)


def command(target: SshTarget, operation: str, cwd: Path) -> list[str]:
    args = (["-p", str(target.port)] if target.port else []) + [
        target.user_host,
        f"git-lfs-authenticate {shlex.quote(target.path)} {operation}",
    ]
    configured = os.environ.get("GIT_SSH_COMMAND") or git.config_get("core.sshCommand", cwd=cwd)
    if configured:
        return ["sh", "-c", f'{configured} "$@"', "ssh", *args]  # git runs these through the shell too
    return [os.environ.get("GIT_SSH") or "ssh", *args]


# One long-running filter smudges many files: reuse an answer until shortly before it expires.
_cache: dict[tuple[SshTarget, str], tuple[float, SshAuth]] = {}
DEFAULT_LIFETIME_SECONDS = 300.0


def authenticate(target: SshTarget, operation: str, cwd: Path) -> SshAuth | None:
    """The server's answer, or None when SSH authentication is not available."""
    cached = _cache.get((target, operation))
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    answer = _ask(target, operation, cwd)
    if answer is not None:
        _cache[(target, operation)] = (time.monotonic() + answer[1] - 5.0, answer[0])
        return answer[0]
    return None


def _ask(target: SshTarget, operation: str, cwd: Path) -> tuple[SshAuth, float] | None:
    try:
        result = subprocess.run(
            command(target, operation, cwd),
            cwd=cwd,
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    header = answer.get("header")
    header = header if isinstance(header, dict) else {}
    href = answer.get("href")
    href = href if isinstance(href, str) else None
    lifetime = answer.get("expires_in")
    lifetime = float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else DEFAULT_LIFETIME_SECONDS
    return SshAuth(href.rstrip("/") if href else None, {str(k): str(v) for k, v in header.items()}), lifetime
