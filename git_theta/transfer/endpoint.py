"""Where a remote keeps its objects: an LFS API URL, or the git dir of a local remote.

Found the way git-lfs finds it, so a repository already set up for git-lfs needs
nothing more: `lfs.pushurl` (uploads) / `lfs.url`, then `remote.<name>.lfspushurl`
(uploads) / `remote.<name>.lfsurl`, each looked up in git config first and then in
the repository's committed `.lfsconfig`; otherwise derived from the remote's URL:
https://host/org/repo(.git) -> https://host/org/repo.git/info/lfs, ssh and git URLs
-> https on the same host. file:// URLs and plain paths are local remotes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from git_theta import git, redact
from git_theta.errors import GitError, TransferError

SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).*)$")


@dataclass(frozen=True)
class SshTarget:
    """Where to run `git-lfs-authenticate` for a remote reached over SSH."""

    user_host: str
    port: int | None
    path: str


@dataclass(frozen=True)
class Endpoint:
    """`url` is the LFS API base (http/https) or None; `local` the git dir of a local remote;
    `ssh` is set when the URL was derived from an SSH remote (ask the server over SSH first, as git-lfs does)."""

    remote: str
    url: str | None = None
    local: Path | None = None
    ssh: SshTarget | None = None

    def describe(self) -> str:
        """Where, for messages: the URL without credentials (git_theta.redact)."""
        return redact.url(self.url) if self.url is not None else str(self.local)


def lfs_url_from_remote_url(url: str) -> str:
    """The LFS API URL git-lfs derives from a git remote URL (http, ssh, scp-like, git)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        path = parts.path.rstrip("/")
        path = path + "/info/lfs" if path.endswith(".git") else path + ".git/info/lfs"
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if parts.scheme in ("ssh", "git", "git+ssh", "ssh+git"):
        host = parts.hostname or ""
        return lfs_url_from_remote_url(f"https://{host}{parts.path}")
    match = SCP_LIKE.match(url)
    if match and not parts.scheme:
        return lfs_url_from_remote_url(f"https://{match['host']}/{match['path'].lstrip('/')}")
    raise TransferError(f"cannot derive an LFS server URL from remote URL {redact.url(url)!r}; set lfs.url or remote.<name>.lfsurl")


def ssh_target(url: str) -> SshTarget | None:
    """The SSH host and repository path of an ssh:// or scp-like (user@host:path) URL, else None."""
    parts = urlsplit(url)
    if parts.scheme in ("ssh", "git+ssh", "ssh+git"):
        user = f"{parts.username}@" if parts.username else ""
        return SshTarget(f"{user}{parts.hostname}", parts.port, unquote(parts.path).lstrip("/"))
    match = SCP_LIKE.match(url)
    if match and not parts.scheme and not is_local_url(url):
        user = f"{match['user']}@" if match["user"] else ""
        return SshTarget(f"{user}{match['host']}", None, match["path"].lstrip("/"))
    return None


def is_local_url(url: str) -> bool:
    if url.startswith("file://"):
        return True
    if "://" in url:
        return False
    return SCP_LIKE.match(url) is None or url.startswith(("/", "./", "../")) or os.path.isdir(url)


def local_git_dir(url: str, base: Path) -> Path:
    """The git dir of a local remote given as file:// URL or path (bare or with a worktree)."""
    path = Path(unquote(urlsplit(url).path)) if url.startswith("file://") else Path(url)
    path = path if path.is_absolute() else base / path
    if (path / ".git").is_dir():
        return (path / ".git").resolve()
    if path.is_dir():
        return path.resolve()
    raise TransferError(f"local remote {redact.url(url)!r} does not exist (looked for {path})")


def lookup(key: str, cwd: Path) -> str | None:
    """A key from git config, else from the committed .lfsconfig (worktree file, then HEAD's blob)."""
    value = git.config_get(key, cwd=cwd)
    if value:
        return value
    try:
        top = git.toplevel(cwd)
    except GitError:
        top = None
    source = ["--file", str(top / ".lfsconfig")] if top and (top / ".lfsconfig").is_file() else ["--blob", "HEAD:.lfsconfig"]
    result = git.run("config", *source, "--get", key, cwd=cwd, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.decode().strip() or None


def remote_names(cwd: Path) -> list[str]:
    return [name for name in git.output("remote", cwd=cwd).splitlines() if name]


def default_remote(cwd: Path, upload: bool = False) -> str:
    """The remote git-lfs would use: lfsdefault/lfspushdefault, the branch's remote, origin, the only remote."""
    branch = git.run("symbolic-ref", "-q", "--short", "HEAD", cwd=cwd, check=False).stdout.decode().strip()
    keys = ["remote.lfspushdefault", f"branch.{branch}.pushRemote", "remote.pushDefault"] if upload else []
    keys += ["remote.lfsdefault", f"branch.{branch}.remote"]
    names = remote_names(cwd)
    for key in keys:
        value = git.config_get(key, cwd=cwd)
        if value and value != "." and (value in names or is_local_url(value) or "://" in value):
            return value
    if "origin" in names:
        return "origin"
    if len(names) == 1:
        return names[0]
    if not names:
        raise TransferError("this repository has no remote to transfer objects with; add one with `git remote add`")
    raise TransferError(f"no default remote among {', '.join(names)}; name one (or set remote.lfsdefault)")


def resolve(remote: str, cwd: Path, upload: bool = False) -> Endpoint:
    """The endpoint for `remote` (a remote name or a URL/path) for downloads or uploads."""
    keys = (["lfs.pushurl"] if upload else []) + ["lfs.url"]
    is_name = remote in remote_names(cwd)
    if is_name:
        keys += ([f"remote.{remote}.lfspushurl"] if upload else []) + [f"remote.{remote}.lfsurl"]
    for key in keys:
        value = lookup(key, cwd)
        if value:
            return _endpoint_for(remote, value, cwd, derived=False)
    url = remote
    if is_name:
        args = ["remote", "get-url"] + (["--push"] if upload else []) + [remote]
        url = git.output(*args, cwd=cwd)
    return _endpoint_for(remote, url, cwd, derived=True)


def _endpoint_for(remote: str, url: str, cwd: Path, derived: bool) -> Endpoint:
    if is_local_url(url):
        return Endpoint(remote, local=local_git_dir(url, cwd))
    if not derived:
        return Endpoint(remote, url=url.rstrip("/"))
    return Endpoint(remote, url=lfs_url_from_remote_url(url), ssh=ssh_target(url))
