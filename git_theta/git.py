"""Every git subprocess call goes through this module."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from git_theta import files
from git_theta.errors import GitError, ThetaError

if TYPE_CHECKING:
    import subprocess

# subprocess and tempfile (with shutil, random, bz2, lzma, locale: ~7 ms) are imported at the first git call: a
# filter git starts usually makes none (common_dir_of_toplevel), and it starts once per git command.


def run(
    *args: str, cwd: Path | str | None = None, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run `git args...`; a failure raises GitError showing command, exit code and output."""
    import subprocess

    command = ["git", *args]
    try:
        result = subprocess.run(command, cwd=cwd, input=input, capture_output=True)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    if check and result.returncode != 0:
        raise GitError(
            f"command failed: {' '.join(command)}\n"
            f"exit code: {result.returncode}\n"
            f"stdout: {result.stdout.decode(errors='replace').strip()}\n"
            f"stderr: {result.stderr.decode(errors='replace').strip()}"
        )
    return result


def stream(*args: str, cwd: Path | str | None = None, chunk_bytes: int = 1 << 16) -> Generator[bytes, None, None]:
    """The stdout of `git args...` in chunks as it comes. A consumer that stops early ends git
    (closing the generator kills it); a failure after the last chunk raises GitError."""
    import subprocess
    import tempfile

    command = ["git", *args]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: git never blocks on what it says there
        try:
            process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH") from None
        assert process.stdout is not None
        finished = False
        try:
            yield from iter(lambda: os.read(process.stdout.fileno(), chunk_bytes), b"")  # type: ignore[union-attr]
            finished = True
        finally:
            if not finished:
                process.kill()
            process.stdout.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise GitError(f"command failed: {' '.join(command)}\nexit code: {code}\nstderr: {message}")


def output(*args: str, cwd: Path | str | None = None) -> str:
    return run(*args, cwd=cwd).stdout.decode("utf-8", errors="surrogateescape").rstrip("\n")


def _rev_parse(option: str, cwd: Path | str | None) -> str:
    """`git rev-parse option`; outside a repository (a user error) the message is git's one line."""
    result = run("rev-parse", option, cwd=cwd, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().removeprefix("fatal: ")
        raise GitError(f"{reason} (in {Path(cwd or os.getcwd())})")
    return result.stdout.decode("utf-8", errors="surrogateescape").rstrip("\n")


def common_dir(cwd: Path | str | None = None) -> Path:
    """The git dir shared by all worktrees (holds the object store)."""
    path = Path(_rev_parse("--git-common-dir", cwd))
    return path if path.is_absolute() else Path(cwd or os.getcwd()) / path


# What points git elsewhere than ./.git; while any is set, only git itself says where the repository is.
REDIRECTING_VARIABLES = ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE", "GIT_OBJECT_DIRECTORY")
GITFILE_MAX_BYTES = 4096  # a `.git` file ("gitdir: PATH"), a worktree's `commondir`


def common_dir_of_toplevel(toplevel: Path) -> Path | None:
    """common_dir(toplevel) read from `toplevel/.git` without running git, or None when that is not certain.

    For a filter git started: git runs it in the worktree's top level after its own checks of the repository
    (safe.directory among them), and a filter starts once per git command, so the fork and exec of `git rev-parse`
    (~3 ms of CPU) is a share of every checkout. Handled: `.git` as a directory, or as a file naming the git dir
    (worktrees, submodules), that git dir's `commondir` file. Anything else, a GIT_* variable that redirects git
    included, gives None: the caller asks git."""
    if any(os.environ.get(name) for name in REDIRECTING_VARIABLES):
        return None
    dotgit = toplevel / ".git"
    try:
        if dotgit.is_dir():
            git_dir = dotgit
        else:
            text = _small_text(dotgit)
            if text is None or not text.startswith("gitdir: "):
                return None
            git_dir = toplevel / text.removeprefix("gitdir: ").rstrip("\n")  # an absolute path replaces toplevel
        common = git_dir
        if (git_dir / "commondir").exists():
            text = _small_text(git_dir / "commondir")
            if text is None:
                return None
            common = git_dir / text.rstrip("\n")
        if not ((git_dir / "HEAD").is_file() and (common / "objects").is_dir() and (common / "refs").is_dir()):
            return None
    except OSError:
        return None
    return common


def _small_text(path: Path) -> str | None:
    """A short one-line file's text, or None when it is not one (too long, several lines, not UTF-8, absent, not a
    regular file: a FIFO would block the filter)."""
    try:
        with files.open_regular(path) as file:
            data = file.read(GITFILE_MAX_BYTES + 1)
    except (OSError, ThetaError):
        return None
    if not data or len(data) > GITFILE_MAX_BYTES or b"\0" in data or data.rstrip(b"\n").count(b"\n"):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def toplevel(cwd: Path | str | None = None) -> Path:
    return Path(_rev_parse("--show-toplevel", cwd))


def is_inside_repo(cwd: Path | str | None = None) -> bool:
    return run("rev-parse", "--git-dir", cwd=cwd, check=False).returncode == 0


def commit_id(rev: str, cwd: Path | str | None = None) -> str | None:
    """The id of the commit `rev` names (tags and other refs peeled), None when it names no commit."""
    result = run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", cwd=cwd, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def commit_ids(revs: list[str], cwd: Path | str | None = None) -> list[str]:
    """commit_id of each rev; the first that names no commit is a GitError naming it."""
    found = []
    for rev in revs:
        commit = commit_id(rev, cwd)
        if commit is None:
            raise GitError(f"{rev!r} names no commit")
        found.append(commit)
    return found


def blob(spec: str, cwd: Path | str | None = None) -> bytes | None:
    """Contents of `rev:path` (or `:path` for the index), None if absent."""
    result = run("cat-file", "blob", spec, cwd=cwd, check=False)
    return result.stdout if result.returncode == 0 else None


def config_get(key: str, cwd: Path | str | None = None, scope: str | None = None) -> str | None:
    args = ["config"] + ([f"--{scope}"] if scope else []) + ["--get", key]
    result = run(*args, cwd=cwd, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def config_set(key: str, value: str, scope: str, cwd: Path | str | None = None) -> None:
    run("config", f"--{scope}", key, value, cwd=cwd)


def config_unset(key: str, scope: str, cwd: Path | str | None = None) -> None:
    # exit code 5: the key was not set, which is what we want anyway
    result = run("config", f"--{scope}", "--unset-all", key, cwd=cwd, check=False)
    if result.returncode not in (0, 5):
        raise GitError(f"git config --{scope} --unset-all {key} failed: {result.stderr.decode().strip()}")


def check_attr(attribute: str, path: str, cwd: Path | str | None = None) -> str | None:
    """Value of a gitattribute for path; None when unspecified."""
    out = run("check-attr", "-z", attribute, "--", path, cwd=cwd).stdout.split(b"\0")
    value = out[2].decode() if len(out) >= 3 else "unspecified"
    return None if value in ("unspecified", "unset") else value


def ls_files_with_attr(attribute: str, value: str, cwd: Path | str | None = None) -> list[str]:
    """Paths in the index whose `attribute` is `value`."""
    paths = [
        p.decode("utf-8", errors="surrogateescape") for p in run("ls-files", "-z", cwd=cwd).stdout.split(b"\0") if p
    ]
    values = attr_for_paths(attribute, paths, cwd=cwd)
    return [path for path in paths if values.get(path) == value]


def ls_tree_blobs(rev: str, cwd: Path | str | None = None) -> list[tuple[str, str]]:
    """(blob id, path) of every file at `rev`."""
    out = run("ls-tree", "-r", "-z", "--full-tree", rev, cwd=cwd).stdout.split(b"\0")
    found = []
    for record in out:
        if not record:
            continue
        info, path = record.split(b"\t", 1)
        mode, kind, oid = info.split()
        if kind == b"blob":
            found.append((oid.decode(), path.decode("utf-8", errors="surrogateescape")))
    return found


def cat_file_batch(object_ids: list[str], cwd: Path | str | None = None) -> dict[str, bytes]:
    """Contents of many blobs in one `git cat-file --batch` call."""
    if not object_ids:
        return {}
    out = run("cat-file", "--batch", cwd=cwd, input="".join(f"{oid}\n" for oid in object_ids).encode()).stdout
    found: dict[str, bytes] = {}
    position = 0
    for oid in object_ids:
        end = out.index(b"\n", position)
        header = out[position:end].split()
        position = end + 1
        if header[-1] == b"missing" or len(header) < 3:
            continue
        size = int(header[2])
        found[oid] = out[position : position + size]
        position += size + 1
    return found


def reachable_blobs(cwd: Path | str | None = None) -> list[tuple[str, str, str]]:
    """(blob id, path, where) for blobs reachable from all refs and the index."""
    found = []
    listing = run("rev-list", "--objects", "--all", cwd=cwd).stdout.decode("utf-8", errors="surrogateescape")
    for line in listing.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[1]:
            found.append((parts[0], parts[1], "history"))
    staged = run("ls-files", "-s", "-z", cwd=cwd).stdout.split(b"\0")
    for record in staged:
        if record:
            info, path = record.split(b"\t", 1)
            found.append((info.split()[1].decode(), path.decode("utf-8", errors="surrogateescape"), "index"))
    return found


def attr_for_paths(attribute: str, paths: list[str], cwd: Path | str | None = None) -> dict[str, str]:
    if not paths:
        return {}
    data = "\0".join(paths).encode("utf-8", errors="surrogateescape") + b"\0"
    out = run("check-attr", "-z", "--stdin", attribute, cwd=cwd, input=data).stdout.split(b"\0")
    return {out[i].decode("utf-8", errors="surrogateescape"): out[i + 2].decode() for i in range(0, len(out) - 2, 3)}


def blob_sizes(object_ids: Iterable[str], cwd: Path | str | None = None) -> dict[str, int]:
    """blob id -> size for those of `object_ids` that are blobs (commits, trees and missing ids are dropped)."""
    ids = list(dict.fromkeys(object_ids))
    if not ids:
        return {}
    out = run(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype) %(objectsize)",
        cwd=cwd,
        input="".join(f"{i}\n" for i in ids).encode(),
    )
    sizes = {}
    for line in out.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob":
            sizes[parts[0]] = int(parts[2])
    return sizes
