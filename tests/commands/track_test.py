"""git theta track: refused when git would not run git-theta's filter; --exclude; switching paths from git-lfs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from conftest import git
from hostile_support import RepoState, assert_refused, git_theta_lines, run_bounded
from safetensors.numpy import save_file

import git_theta


def _fresh(tmp_path: Path) -> Path:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    return repo


def test_track_before_install_is_refused_and_says_how_to_fix_it(tmp_path: Path) -> None:
    repo = _fresh(tmp_path)
    state = RepoState.capture(repo)
    result = run_bounded(["git-theta", "track", "*.safetensors"], cwd=repo)
    line = assert_refused(result, [".gitattributes", "*.safetensors", "`git theta install`", "--force"])
    assert "filter.theta.* is unset" in line
    state.assert_unchanged(repo)
    assert not (repo / ".gitattributes").exists()


def test_track_with_a_filter_program_that_cannot_run_is_refused(tmp_path: Path) -> None:
    repo = _fresh(tmp_path)
    git(repo, "config", "filter.theta.process", "/nonexistent/bin/git-theta filter-process")
    line = assert_refused(
        run_bounded(["git-theta", "track", "*.safetensors"], cwd=repo),
        [".gitattributes", "/nonexistent/bin/git-theta", "filter.theta.process"],
    )
    assert "not on PATH" in line and not (repo / ".gitattributes").exists()


def test_track_force_writes_with_a_warning_and_install_then_track_is_quiet(tmp_path: Path) -> None:
    repo = _fresh(tmp_path)
    forced = run_bounded(["git-theta", "track", "--force", "*.safetensors"], cwd=repo)
    assert forced.returncode == 0 and forced.stdout == "tracking: *.safetensors\n", forced.describe()
    [warning] = git_theta_lines(forced.stderr)
    assert warning.startswith("git-theta: warning: git-theta's filter is not configured")
    (repo / ".gitattributes").unlink()
    git(repo, "config", "filter.theta.process", "git-theta filter-process")  # what `git theta install` sets
    tracked = run_bounded(["git-theta", "track", "*.safetensors"], cwd=repo)
    assert tracked.returncode == 0 and tracked.stderr == "", tracked.describe()
    save_file({"w": np.ones(4, np.float32)}, repo / "m.safetensors")
    git(repo, "add", "m.safetensors")
    assert git(repo, "show", ":m.safetensors").stdout.startswith('{"version":"git-theta/')


def test_a_broad_pattern_fails_on_a_config_file_with_a_pasteable_fix_and_exclude_lets_git_store_it(repo: Path) -> None:
    (repo / "weights").mkdir()
    save_file({"w": np.ones(4, np.float32)}, str(repo / "weights" / "model.safetensors"))
    (repo / "weights" / "config.json").write_text('{"hidden_size": 4}\n')
    git(repo, "theta", "track", "weights/**")
    state = RepoState.capture(repo)
    line = assert_refused(run_bounded(["git", "add", "weights"], cwd=repo), ["weights/config.json"])
    assert line.endswith("let git store it: git theta track --exclude weights/config.json")
    state.assert_unchanged(repo)
    said = git(repo, "theta", "track", "--exclude", "weights/config.json").stdout
    assert said == "excluding: weights/config.json (stored by git itself)\n"
    assert "already excluded" in git(repo, "theta", "track", "--exclude", "weights/config.json").stdout
    git(repo, "add", ".gitattributes", "weights")
    assert git(repo, "show", ":weights/config.json").stdout == '{"hidden_size": 4}\n'  # the file itself, not metadata
    assert git(repo, "theta", "ls-files").stdout.split() == ["weights/model.safetensors"]


def test_tracking_a_git_lfs_pattern_says_so_and_restages_the_files_with_git_theta(tmp_path: Path) -> None:
    # A Hugging Face-style repository: *.safetensors committed through git-lfs, then switched to git-theta.
    repo = tmp_path / "hf"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "lfs", "install", "--local")
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    model = repo / "model.safetensors"
    save_file({"w": np.arange(8, dtype=np.float32)}, str(model))
    original = model.read_bytes()
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "lfs era")
    assert git(repo, "show", ":model.safetensors").stdout.startswith("version https://git-lfs")
    git(repo, "theta", "install", "--local")

    said = git(repo, "theta", "track", "*.safetensors").stdout
    assert "git-lfs: *.safetensors also has a filter=lfs line; git-theta's line comes after it and wins" in said
    assert "re-staged with git-theta (was git-lfs): model.safetensors; commit to switch it" in said
    assert git(repo, "theta", "ls-files", "--long").stdout.split("\t")[1] == "safetensors"  # staged as metadata
    git(repo, "commit", "-q", "-am", "switch to git-theta")
    model.unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert model.read_bytes() == original
    assert (repo / ".gitattributes").read_text().splitlines()[0].startswith("# Files matched by filter=theta lines")
    # The git-lfs era still shows, loads and checks out through its pointer (git-lfs and git-theta share
    # .git/lfs/objects) ...
    assert "w" in git(repo, "theta", "show", "HEAD~1:model.safetensors").stdout
    assert (git_theta.load("model.safetensors", rev="HEAD~1", repo=repo)["w"] == np.arange(8, dtype=np.float32)).all()
    git(repo, "checkout", "HEAD~1", "--", "model.safetensors")
    assert model.read_bytes() == original
    git(repo, "checkout", "HEAD", "--", "model.safetensors")
    # ... and a damaged object is refused, never written as the model.
    oid = hashlib.sha256(original).hexdigest()
    stored = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    stored.chmod(0o644)
    stored.write_bytes(original[:-1] + b"\x00")
    model.unlink()
    line = assert_refused(
        run_bounded(["git", "checkout", "HEAD~1", "--", "model.safetensors"], cwd=repo), ["model.safetensors", oid]
    )
    assert "is corrupt" in line and not model.exists()
