"""What `git theta install` writes into git config, and whether git would run git-theta's filter here.

Library code for the install/track/migrate commands (commands import library modules, never the reverse).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from git_theta import git, lfs_pointer
from git_theta.display.view import VIEW_PREFIX
from git_theta.errors import ThetaError

EXECUTABLE = "git-theta"
NOT_ON_PATH = (
    f"git-theta: error: the {EXECUTABLE} command is not on PATH (git runs it for the checkpoints this repository "
    "tracks); activate the virtual environment git-theta is installed in, or install it: pip install git-theta"
)


def guarded(command: str) -> str:
    """`command` as git runs it (through sh), saying what is missing when git-theta is not on PATH.

    Without this, sh's "git-theta: not found" is followed by git's protocol errors ("Could not write client
    identification", "the remote end hung up unexpectedly"), which do not say what to do.
    """
    program = shlex.split(command)[0]
    return (
        f"command -v {program} >/dev/null 2>&1 || {{ echo {shlex.quote(NOT_ON_PATH)} >&2; exit 127; }}; exec {command}"
    )


def textconv_command() -> str:
    """What git runs per file version it shows: a view smudge already rendered is copied, anything else goes to
    the lean git-theta-textconv launcher.

    `git log -p` hands textconv two versions per commit; under it the filter process renders each view (see
    display/invoker.py), so copying with cat instead of starting Python (plus any shim in front of it, 0.1-0.2 s
    each here) keeps the cost of a history view in git and one filter process. Git appends the file as "$1".
    """
    prefix = VIEW_PREFIX.decode()
    copy_view = f'case "$(head -c {len(prefix)} "$1" 2>/dev/null)" in {shlex.quote(prefix)}) exec cat -- "$1";; esac'
    return f"{copy_view}; {guarded(f'{EXECUTABLE}-textconv')}"


SETTINGS: dict[str, str] = {
    "filter.theta.process": guarded(f"{EXECUTABLE} filter-process"),
    "filter.theta.clean": guarded(f"{EXECUTABLE} clean %f"),
    "filter.theta.smudge": guarded(f"{EXECUTABLE} smudge %f"),
    "filter.theta.required": "true",
    "diff.theta.textconv": textconv_command(),
    "diff.theta.binary": "false",
    "merge.theta.name": "git-theta model merge",
    "merge.theta.driver": guarded(f"{EXECUTABLE} merge-driver %O %A %B %P"),
}


# git-lfs's prune deletes every local object no git-lfs pointer in recent refs names: all of git-theta's, pushed or
# not. These make it ask the LFS server about every object it would delete, git-theta's included, and stop, deleting
# nothing, when one is not there (git-lfs 3.5 and later; older versions check only objects pointers name).
LFS_PRUNE_SETTINGS: dict[str, str] = {
    "lfs.pruneverifyremotealways": "true",
    "lfs.pruneverifyunreachablealways": "true",
}
# They are git-lfs's keys, a user's to set too: install sets only those unset in its scope and lists them here (one
# value per key), so that uninstall removes exactly those.
LFS_RECORD = "theta.lfssetting"
LFS_SAFE_PRUNE = (3, 5)


def program_of(command: str) -> str:
    """The program a configured command runs: the one after `exec` in a guarded() command."""
    words = shlex.split(command.rsplit("; exec ", 1)[-1]) if command.strip() else []
    return words[0] if words else command


def filter_problem(cwd: Path | None = None) -> str | None:
    """Why `git add` here would not run git-theta's clean filter, None when it would.

    Without filter.theta.* in any scope git has no such filter and adds a tracked checkpoint raw, whole,
    into its object database, silently. A configured command git cannot start fails every add instead.
    """
    commands = {key: git.config_get(key, cwd=cwd) for key in ("filter.theta.process", "filter.theta.clean")}
    configured = {key: value for key, value in commands.items() if value}
    if not configured:
        return (
            "git-theta's filter is not configured (filter.theta.* is unset in every git config scope), so `git add` "
            "would store checkpoints raw in git; run `git theta install` (or `git theta install --local`) first"
        )
    for key, value in configured.items():
        program = program_of(value)
        if not value.strip() or shutil.which(program, path=None) is None:
            return (
                f"git config {key} runs {program!r}, which cannot be run here (not on PATH), so `git add` would fail; "
                f"activate the environment git-theta is installed in, or rerun `git theta install` from it"
            )
    return None


def scope_of(*, local: bool) -> str:
    """The git config scope install and uninstall write: global, or local (inside a repository only)."""
    if local and not git.is_inside_repo():
        raise ThetaError("--local needs to run inside a git repository")
    return "local" if local else "global"


def install(*, scope: str, cwd: Path | None = None) -> list[str]:
    """Set every key, and each git-lfs prune key unset in `scope`; returns the keys that changed (none on a second
    run)."""
    changed = []
    for key, value in SETTINGS.items():
        if git.config_get(key, cwd=cwd, scope=scope) != value:
            git.config_set(key, value, scope, cwd=cwd)
            changed.append(key)
    for key, value in LFS_PRUNE_SETTINGS.items():
        if git.config_get(key, cwd=cwd, scope=scope) is None:
            git.config_set(key, value, scope, cwd=cwd)
            git.run("config", f"--{scope}", "--add", LFS_RECORD, key, cwd=cwd)
            changed.append(key)
    return changed


def uninstall(*, scope: str, cwd: Path | None = None) -> list[str]:
    """Unset every key set in `scope`, and the git-lfs keys install set there if they still hold its value; returns
    those removed (none on a second run)."""
    present = [key for key in SETTINGS if git.config_get(key, cwd=cwd, scope=scope) is not None]
    for key in present:
        git.config_unset(key, scope, cwd=cwd)
    for key in _recorded_lfs_keys(scope, cwd):
        if key in LFS_PRUNE_SETTINGS and git.config_get(key, cwd=cwd, scope=scope) == LFS_PRUNE_SETTINGS[key]:
            git.config_unset(key, scope, cwd=cwd)
            present.append(key)
    git.config_unset(LFS_RECORD, scope, cwd=cwd)
    return present


def _recorded_lfs_keys(scope: str, cwd: Path | None) -> list[str]:
    result = git.run("config", f"--{scope}", "--get-all", LFS_RECORD, cwd=cwd, check=False)
    return result.stdout.decode().split() if result.returncode == 0 else []


def lfs_version() -> tuple[int, ...] | None:
    """The version of the git-lfs on PATH (`git lfs version`), None when there is none or it says no version."""
    if shutil.which("git-lfs") is None:
        return None
    words = git.run("lfs", "version", check=False).stdout.decode(errors="replace").split()
    match = re.fullmatch(r"git-lfs/([0-9]+)\.([0-9]+)\.([0-9]+)", words[0]) if words else None
    return tuple(int(part) for part in match.groups()) if match else None


def lfs_prune_problem(cwd: Path | None = None) -> str | None:
    """Why `git lfs prune` here would still delete unpushed git-theta objects; None when it would not.

    Only a git-lfs that git runs (its filter configured) and that is older than 3.5 cannot be told to check
    objects no pointer names with the server (lfs.pruneverifyunreachablealways is new in 3.5).
    """
    if git.config_get("filter.lfs.process", cwd=cwd) is None:
        return None
    version = lfs_version()
    if version is None or version >= LFS_SAFE_PRUNE:
        return None
    shown = ".".join(map(str, version))
    return (
        f"git-lfs {shown} is set up here, and its `git lfs prune` deletes git-theta's objects, unpushed ones too "
        "(only git-lfs 3.5 and later check them with the server first); git-theta keeps a second link of each "
        "unpushed object it writes and links it back when needed, but pushed ones must be downloaded again: "
        'prefer `git theta gc`, or upgrade git-lfs (docs/migrating.md, "Mixed repositories")'
    )


def unfiltered_checkpoints(*, cwd: Path | None = None) -> list[str]:
    """Tracked checkpoints here that git can no longer rebuild: no scope configures the filter any more."""
    if git.config_get("filter.theta.process", cwd=cwd) is not None:
        return []
    return git.ls_files_with_attr("filter", "theta", cwd=git.toplevel(cwd))


def switch_from_lfs(*, root: Path, lfs_paths: list[str]) -> tuple[list[str], list[str]]:
    """Re-stage the files new filter=theta lines took from git-lfs, so the next commit stores them with git-theta.

    Without this a plain `git add` keeps their LFS pointers (git sees the working tree file unchanged), and
    only `git add --renormalize` would switch them. Returns (the paths whose working tree holds a git-lfs
    pointer, left alone; the paths re-staged).
    """
    now = git.attr_for_paths("filter", lfs_paths, cwd=root)
    switched = [p for p in lfs_paths if now.get(p) == "theta"]
    ready = [p for p in switched if not _is_lfs_pointer(root / p)]
    if ready:
        git.run("add", "--renormalize", "--", *ready, cwd=root)
    return sorted(set(switched) - set(ready)), ready


def _is_lfs_pointer(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(lfs_pointer.PREFIX)) == lfs_pointer.PREFIX
    except OSError:
        return False
