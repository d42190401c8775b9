"""Credentials for an LFS server through git's credential helpers (`git credential fill/approve/reject`)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from git_theta import git, redact
from git_theta.errors import TransferError


@dataclass(frozen=True)
class Credential:
    """What `git credential fill` answered, kept whole so approve/reject can echo it back."""

    fields: tuple[tuple[str, str], ...]

    @property
    def username(self) -> str:
        return dict(self.fields).get("username", "")

    def authorization(self) -> str:
        data = dict(self.fields)
        token = f"{data.get('username', '')}:{data.get('password', '')}".encode()
        return "Basic " + base64.b64encode(token).decode()

    def _input(self) -> bytes:
        return "".join(f"{key}={value}\n" for key, value in self.fields).encode() + b"\n"


def from_url(url: str) -> Credential | None:
    """Credentials written into the URL itself (https://user:pass@host/...), if any."""
    parts = urlsplit(url)
    if parts.password is None:
        return None
    return Credential((("username", unquote(parts.username or "")), ("password", unquote(parts.password))))


def describe(url: str) -> str:
    """The URL without any credentials in it, for messages."""
    return redact.url(url)


def _request(url: str) -> list[tuple[str, str]]:
    parts = urlsplit(url)
    fields = [
        ("protocol", parts.scheme),
        ("host", f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)),
    ]
    if parts.username:
        fields.append(("username", unquote(parts.username)))
    return fields


def fill(url: str, cwd: Path) -> Credential:
    """Ask git's credential helpers (and, on a terminal, the user) for the server at `url`."""
    request = _request(url)
    data = "".join(f"{key}={value}\n" for key, value in request).encode() + b"\n"
    result = git.run("credential", "fill", cwd=cwd, input=data, check=False)
    if result.returncode != 0:
        # git's own reason, its last line ("fatal: could not read Username for '<url>': terminal prompts disabled"),
        # made one line and redacted: the whole GitError would add lines of command, exit code and output
        said = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
        reason = f": {redact.one_line(said[-1], 200)}" if said else ""
        raise TransferError(
            f"{describe(url)} asks for credentials and none are available "
            f"(configure a git credential helper, e.g. `git config credential.helper store`){reason}"
        )
    fields = []
    for line in result.stdout.decode().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields.append((key, value))
    return Credential(tuple(fields))


def approve(credential: Credential, cwd: Path) -> None:
    git.run("credential", "approve", cwd=cwd, input=credential._input(), check=False)


def reject(credential: Credential, cwd: Path) -> None:
    git.run("credential", "reject", cwd=cwd, input=credential._input(), check=False)
