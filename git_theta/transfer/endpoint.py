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

# URL schemes of SSH remotes: their LFS server is asked over SSH (git-lfs-authenticate), then over https.
SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
# What an LFS URL (lfs.url, remote.<name>.lfsurl, ...) may be besides a local path or file://; a remote's own URL
# may also be git:// (its LFS server is then derived: https on the same host).
LFS_URL_SCHEMES = ("http", "https", *SSH_SCHEMES)
REMOTE_URL_SCHEMES = (*LFS_URL_SCHEMES, "git")
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
    raise TransferError(
        f"cannot derive an LFS server URL from remote URL {redact.url(url)!r}; set lfs.url or remote.<name>.lfsurl"
    )


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
    found = lookup_with_source(key, cwd)
    return found[0] if found else None


def lookup_with_source(key: str, cwd: Path) -> tuple[str, str] | None:
    """(value, where it was found: "git config" or the .lfsconfig) for `lookup`, so a bad value can be blamed."""
    value = git.config_get(key, cwd=cwd)
    if value:
        return value, "git config"
    try:
        top = git.toplevel(cwd)
    except GitError:
        top = None
    in_worktree = top is not None and (top / ".lfsconfig").is_file()
    source = ["--file", str(top / ".lfsconfig")] if top and in_worktree else ["--blob", "HEAD:.lfsconfig"]
    result = git.run("config", *source, "--get", key, cwd=cwd, check=False)
    if result.returncode != 0:
        return None
    value = result.stdout.decode().strip()
    return (value, str(top / ".lfsconfig") if top and in_worktree else "HEAD:.lfsconfig") if value else None


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
        found = lookup_with_source(key, cwd)
        if found:
            value, source = found
            value = checked_url(value, f"{source}: {key}", LFS_URL_SCHEMES)
            return _endpoint_for(remote, value, cwd, derived=urlsplit(value).scheme in SSH_SCHEMES)
    url = remote
    if is_name:
        args = ["remote", "get-url"] + (["--push"] if upload else []) + [remote]
        url = git.output(*args, cwd=cwd)
        url = checked_url(url, f"the URL of remote {remote!r}", REMOTE_URL_SCHEMES)
    else:
        url = checked_url(url, "remote", REMOTE_URL_SCHEMES)
    return _endpoint_for(remote, url, cwd, derived=True)


def checked_url(url: str, where: str, schemes: tuple[str, ...]) -> str:
    """`url` if git-theta can use it as an LFS endpoint, else TransferError naming `where` (the config key and the
    file it came from) and the redacted URL: a committed .lfsconfig is a collaborator's text, not to be trusted."""
    # one_line before redact.url when there are control characters: urlsplit silently drops \t\r\n and would hide them
    shown = "'" + redact.one_line(redact.url(url) if url.isprintable() else url) + "'"
    if not url.isprintable():  # \n, \r, \0: they would forge lines of output or of an HTTP request
        raise TransferError(f"{where}: the URL {shown} holds control characters; refused. Fix the value")
    if is_local_url(url) or SCP_LIKE.match(url) and "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is not a number
        raise TransferError(f"{where}: the URL {shown} is malformed ({error}); fix the value") from None
    if parts.scheme not in schemes:
        raise TransferError(
            f"{where}: the URL {shown} has scheme {redact.one_line(parts.scheme, 40)!r}; git-theta reaches "
            f"an LFS server over {', '.join(s + '://' for s in schemes)} (or a local path / file://). Fix the value"
        )
    if not host:
        raise TransferError(f"{where}: the URL {shown} names no host; fix the value")
    return url


def _endpoint_for(remote: str, url: str, cwd: Path, derived: bool) -> Endpoint:
    if is_local_url(url):
        return Endpoint(remote, local=local_git_dir(url, cwd))
    if not derived:
        return Endpoint(remote, url=url.rstrip("/"))
    return Endpoint(remote, url=lfs_url_from_remote_url(url), ssh=ssh_target(url))
