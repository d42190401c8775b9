"""The pre-push hook: installed per repository, chaining to whatever hook was there (git-lfs's included)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import git, theta

from git_theta import hooks


def write_hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_existing_hook_is_chained_with_arguments_and_stdin(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    log = tmp_path / "user-hook.log"
    user_hook = f'#!/bin/sh\necho "args: $*" >> {log}\ncat >> {log}\nexit 0\n'
    write_hook(work / ".git" / "hooks" / "pre-push", user_hook)
    theta(work, "install", "--local")
    hook = work / ".git" / "hooks" / "pre-push"
    assert hooks.is_ours(hook)
    assert (work / ".git" / "hooks" / "pre-push.pre-theta").read_text() == user_hook
    assert "already installed" in theta(work, "install", "--local").stdout  # idempotent
    # a real push runs both: ours (nothing to upload) then the user's, with the same stdin
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "commit", "-q", "--allow-empty", "-m", "one")
    git(work, "push", "-q", str(bare), "main")
    head = git(work, "rev-parse", "HEAD").stdout.strip()
    assert log.read_text() == f"args: {bare} {bare}\nrefs/heads/main {head} refs/heads/main {'0' * 40}\n"
    theta(work, "uninstall", "--local")
    assert hook.read_text() == user_hook and not (work / ".git" / "hooks" / "pre-push.pre-theta").exists()


def test_a_failing_chained_hook_still_blocks_the_push(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    write_hook(work / ".git" / "hooks" / "pre-push", "#!/bin/sh\necho 'policy says no' >&2\nexit 1\n")
    theta(work, "install", "--local")
    git(work, "commit", "-q", "--allow-empty", "-m", "one")
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    result = git(work, "push", str(bare), "main", check=False)
    assert result.returncode != 0 and "policy says no" in result.stderr


def test_git_lfs_hook_before_and_after_us(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    git(work, "lfs", "install", "--local")
    lfs_hook = (work / ".git" / "hooks" / "pre-push").read_text()
    assert "git lfs pre-push" in lfs_hook
    theta(work, "install", "--local")
    assert (work / ".git" / "hooks" / "pre-push.pre-theta").read_text() == lfs_hook
    for name in ("post-checkout", "post-commit", "post-merge"):  # git-lfs's other hooks are untouched
        assert "git lfs" in (work / ".git" / "hooks" / name).read_text()
    # git-lfs installed after us keeps our hook, and ours runs `git lfs pre-push` when no LFS hook is chained
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    theta(other, "install", "--local")
    git(other, "lfs", "install", "--local", check=False)
    assert hooks.is_ours(other / ".git" / "hooks" / "pre-push")
    assert "git lfs pre-push" in hooks.SCRIPT


def test_track_installs_the_hook_but_a_foreign_hooks_path_is_left_alone(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    git(work, "config", "core.hooksPath", ".husky")
    theta(work, "track", "--force", "*.safetensors")  # no filter configured: only the hook is under test
    assert not (work / ".husky" / "pre-push").exists() and not (work / ".git" / "hooks" / "pre-push").exists()
    git(work, "config", "--unset", "core.hooksPath")
    theta(work, "track", "--force", "*.pt")
    assert hooks.is_ours(work / ".git" / "hooks" / "pre-push")
    assert os.access(work / ".git" / "hooks" / "pre-push", os.X_OK)


def test_install_writes_the_hook_atomically_executable_and_leaves_no_temp_file(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    hooks_dir = tmp_path / ".git" / "hooks"
    for sample in hooks_dir.glob("*.sample"):
        sample.unlink()
    assert hooks.install(tmp_path).startswith("pre-push hook installed")
    assert [p.name for p in hooks_dir.iterdir()] == ["pre-push"]
    assert stat.S_IMODE((hooks_dir / "pre-push").stat().st_mode) == hooks.HOOK_MODE
    assert (hooks_dir / "pre-push").read_text(encoding="utf-8") == hooks.SCRIPT
