"""Tracked checkpoints committed raw (before git-theta's filter was set up): install and fsck notice and say the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import git, theta
from hostile_support import git_theta_lines, run_bounded
from safetensors.numpy import save_file

from git_theta import raw_blobs

MODEL = "model.safetensors"
ATTRIBUTES = "*.safetensors filter=theta diff=theta merge=theta -text\n"


def _raw_repo(tmp_path: Path) -> Path:
    """A clone-like repository whose .gitattributes tracks *.safetensors, but git-theta was never installed."""
    repo = tmp_path / "raw"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text(ATTRIBUTES)
    save_file({"w": np.arange(64, dtype=np.float32)}, repo / MODEL)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "raw")
    assert _committed(repo).startswith(b"@\0\0\0")  # the raw safetensors file itself
    return repo


def _committed(repo: Path) -> bytes:
    return subprocess.run(["git", "show", f"HEAD:{MODEL}"], cwd=repo, capture_output=True, check=True).stdout


def test_install_then_fsck_name_the_raw_checkpoint_and_the_fix(tmp_path: Path) -> None:
    repo = _raw_repo(tmp_path)
    installed = run_bounded(["git-theta", "install", "--local"], cwd=repo)
    assert installed.returncode == 0, installed.describe()
    [warning] = git_theta_lines(installed.stderr)
    assert warning.startswith(
        f"git-theta: warning: {MODEL}: the committed (HEAD) and staged version is the raw checkpoint"
    )
    assert f"`git add --renormalize {MODEL}`, then `git commit`" in warning
    checked = run_bounded(["git-theta", "fsck"], cwd=repo)
    assert (
        checked.returncode == 1
        and f"error: {MODEL}: the committed (HEAD) and staged version is the raw checkpoint" in checked.stderr
    )
    # The advice works: afterwards both commands are quiet and the committed blob is metadata.
    git(repo, "add", "--renormalize", MODEL)
    staged_only = theta(repo, "fsck", check=False)
    assert (
        staged_only.returncode == 1
        and f"error: {MODEL}: the committed (HEAD) version is the raw checkpoint" in staged_only.stderr
    )
    git(repo, "commit", "-q", "-m", "renormalize")
    assert _committed(repo).startswith(b'{"version":"git-theta/')
    assert theta(repo, "fsck").stdout.endswith("fsck: ok\n")
    assert "warning" not in theta(repo, "install", "--local").stderr


def test_a_raw_blob_only_staged_is_reported_as_staged(tmp_path: Path) -> None:
    repo = _raw_repo(tmp_path)
    save_file({"w": np.ones(8, dtype=np.float32)}, repo / "second.safetensors")
    (repo / "empty.safetensors").write_bytes(b"")  # nothing in it to lose
    git(repo, "add", "second.safetensors", "empty.safetensors")
    found = {path: (where, size) for path, where, size in raw_blobs.raw_versions(repo)}
    assert found["second.safetensors"][0] == ["staged"] and found[MODEL][0] == ["committed (HEAD)", "staged"]
    assert (
        found["second.safetensors"][1] == (repo / "second.safetensors").stat().st_size
        and "empty.safetensors" not in found
    )


def test_untracked_paths_symlinks_and_metadata_are_not_reported(repo: Path) -> None:
    save_file({"w": np.ones(8, dtype=np.float32)}, repo / MODEL)
    (repo / "notes.bin.txt").write_bytes(b"\x00raw bytes, not tracked")
    (repo / "link.safetensors").symlink_to(MODEL)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "fine")
    assert raw_blobs.raw_versions(repo) == []
    assert theta(repo, "fsck").stdout.endswith("fsck: ok\n")


def test_only_the_first_bytes_of_a_large_raw_blob_are_read(tmp_path: Path) -> None:
    """64 MiB committed raw: install reads a few bytes of it, not the blob (peak RSS of install and its gits)."""
    repo = _raw_repo(tmp_path)
    save_file({"w": np.zeros(16 << 20, dtype=np.float32)}, repo / "big.safetensors")
    git(repo, "add", "big.safetensors")
    subprocess.run(["git", "commit", "-q", "-m", "big"], cwd=repo, check=True)
    # Measured from a small parent: a child forked by the test process starts with (and reports) its RSS.
    installed = run_bounded([sys.executable, "-c", PEAK_RSS_OF_CHILD, "git-theta", "install", "--local"], cwd=repo)
    size = (repo / "big.safetensors").stat().st_size
    assert (
        f"big.safetensors: the committed (HEAD) and staged version is the raw checkpoint ({size} bytes"
        in installed.stderr
    )
    peak_mb = int(installed.stdout.splitlines()[-1]) / 1024
    assert peak_mb < 100, f"install (with its gits) peaked at {peak_mb:.0f} MB for a 64 MiB raw blob"


PEAK_RSS_OF_CHILD = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)
