"""git-theta's pre-push hook: installed per repository, never clobbering a hook already there.

A pre-push hook that is not ours (the user's, git-lfs's, a framework's) is moved
to `pre-push.pre-theta` and our hook runs it after uploading, with the same
arguments and stdin; its exit code decides the push as before. If git-lfs is set up
in the repository but no git-lfs hook was chained (e.g. `git lfs install` ran after
us and found our hook in place), our hook runs `git lfs pre-push` itself, so LFS
files keep being pushed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from git_theta import files, git

MARKER = "# git-theta pre-push hook"
CHAINED_SUFFIX = ".pre-theta"
# rwxr-xr-x, as git writes its sample hooks: git runs a hook only when it is executable.
HOOK_MODE = 0o755

SCRIPT = f"""#!/bin/sh
{MARKER}: uploads the model objects the remote lacks (git theta pre-push).
# A pre-push hook that was here before git-theta now lives in pre-push{CHAINED_SUFFIX} and runs after this one.
stdin_copy=$(mktemp) || exit 1
trap 'rm -f "$stdin_copy"' EXIT
cat > "$stdin_copy"
if ! command -v git-theta >/dev/null 2>&1; then
    echo >&2 "git-theta is not on your PATH, so this push cannot upload the model objects it needs."
    echo >&2 "Install git-theta, or remove .git/hooks/pre-push (git theta uninstall --local) to push without them."
    exit 2
fi
git-theta pre-push "$@" < "$stdin_copy" || exit $?
chained="$(dirname "$0")/pre-push{CHAINED_SUFFIX}"
if [ -x "$chained" ]; then
    "$chained" "$@" < "$stdin_copy" || exit $?
elif [ -n "$(git config filter.lfs.process)" ] && command -v git-lfs >/dev/null 2>&1; then
    git lfs pre-push "$@" < "$stdin_copy" || exit $?
fi
"""


def hook_path(cwd: Path | None = None) -> Path:
    """Where git looks for the pre-push hook (honours core.hooksPath)."""
    path = Path(git.output("rev-parse", "--git-path", "hooks/pre-push", cwd=cwd))
    return path if path.is_absolute() else Path(cwd or os.getcwd()) / path


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False


def install(cwd: Path | None = None) -> str:
    """Install (or refresh) our hook; returns what happened, for the user."""
    path = hook_path(cwd)
    chained = path.with_name(path.name + CHAINED_SUFFIX)
    note = ""
    if path.exists() and not is_ours(path):
        if chained.exists():
            return (
                f"left {path} alone: it is not git-theta's and {chained.name} is taken; add `git-theta pre-push "
                '"$@"` to it yourself'
            )
        os.replace(path, chained)
        note = f" (the existing hook now runs from {chained.name})"
    elif path.exists() and path.read_text(encoding="utf-8") == SCRIPT:
        return f"pre-push hook already installed at {path}"
    files.write_atomically(path, _write_script, mode=HOOK_MODE)
    return f"pre-push hook installed at {path}{note}"


def _write_script(out: BinaryIO) -> None:
    out.write(SCRIPT.encode("utf-8"))


def uninstall(cwd: Path | None = None) -> str:
    """Remove our hook and put back the one it chained to."""
    path = hook_path(cwd)
    if not is_ours(path):
        return "no git-theta pre-push hook to remove"
    chained = path.with_name(path.name + CHAINED_SUFFIX)
    if chained.exists():
        os.replace(chained, path)
        return f"pre-push hook removed; the previous hook is back at {path}"
    path.unlink()
    return "pre-push hook removed"


def ensure_installed(cwd: Path) -> None:
    """Install the hook in a repository that lacks it (e.g. a fresh clone), as git-lfs's filter does.

    Skipped when core.hooksPath points elsewhere: that directory belongs to another tool.
    """
    if git.config_get("core.hooksPath", cwd=cwd):
        return
    try:
        if not is_ours(hook_path(cwd)):
            install(cwd)
    except OSError:
        pass  # a read-only .git must not break checkouts
