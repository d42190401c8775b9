"""`git theta migrate` as a user meets it (git_theta/commands/migrate.py; the library is tested in tests/migrate/):
what it refuses (one line, nothing moved), what it prints, the documented undo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from safetensors.numpy import save_file

from git_theta import migrate


@pytest.fixture
def lfs_repo(tmp_path: Path) -> Path:
    """Two commits of a tiny model through git-lfs's own filter, git-theta's filter configured."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "lfs", "install", "--local")
    theta(path, "install", "--local")
    (path / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    for version in (1, 2):
        save_file(
            {"w": np.full((16, 16), version, np.float32), "b": np.zeros(16, np.float32)}, str(path / "m.safetensors")
        )
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"v{version}")
    return path


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("git-theta: error: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_refusals_leave_every_ref_alone(lfs_repo: Path) -> None:
    refs = git(lfs_repo, "for-each-ref").stdout
    _refused(theta(lfs_repo, "migrate", "import", "--everything", "main", check=False), "--everything or REFs")
    _refused(
        theta(lfs_repo, "migrate", "info", "--everything", "--exclude-ref", "main", check=False),
        "--everything or --include-ref/--exclude-ref",
    )
    _refused(theta(lfs_repo, "migrate", "import", "--exclude-ref", "main", check=False), "--include-ref")
    _refused(
        theta(lfs_repo, "migrate", "import", "--include-ref", "main", "--exclude-ref", "nosuch", check=False),
        "--exclude-ref nosuch: not a commit",
    )
    head = git(lfs_repo, "rev-parse", "HEAD").stdout.strip()
    _refused(
        theta(lfs_repo, "migrate", "import", "--include", "*.safetensors", head, check=False), "not a branch or tag"
    )
    _refused(
        theta(lfs_repo, "migrate", "export", check=False), "filter=theta", "--include"
    )  # nothing is git-theta's yet
    (lfs_repo / "m.safetensors").write_bytes(b"changed")
    _refused(theta(lfs_repo, "migrate", "import", check=False), "changes", "commit or stash")
    git(lfs_repo, "checkout", "-q", "--", "m.safetensors")
    git(lfs_repo, "checkout", "-q", "--detach")
    _refused(theta(lfs_repo, "migrate", "import", check=False), "detached", "--everything")
    git(lfs_repo, "checkout", "-q", "main")
    git(lfs_repo, "config", "--local", "--unset", "filter.theta.process")
    git(lfs_repo, "config", "--local", "--unset", "filter.theta.clean")
    _refused(theta(lfs_repo, "migrate", "import", check=False), "git theta install")
    assert git(lfs_repo, "for-each-ref").stdout == refs


def test_import_prints_what_moved_and_a_second_run_keeps_the_first_backup(lfs_repo: Path) -> None:
    old = git(lfs_repo, "rev-parse", "main").stdout.strip()
    info = theta(lfs_repo, "migrate", "info").stdout.splitlines()
    assert info[0].split() == ["pattern", "versions", "git-lfs", "git-theta", "ratio", "not", "local"]
    assert info[1].split()[:2] == ["*.safetensors", "2"]
    out = theta(lfs_repo, "migrate", "import").stdout.splitlines()
    new = git(lfs_repo, "rev-parse", "main").stdout.strip()
    assert out == [
        "migrate import: 2 of 2 commit(s) rewritten",
        f"refs/heads/main: {old[:12]} -> {new[:12]}",
        f"the old tips are kept under {migrate.BACKUP_PREFIX}/import/ "
        f"(git for-each-ref {migrate.BACKUP_PREFIX}/import)",
    ]
    assert git(lfs_repo, "rev-parse", f"{migrate.BACKUP_PREFIX}/import/refs/heads/main").stdout.strip() == old
    # the working tree holds the model again, now stored by git-theta
    assert git(lfs_repo, "status", "--porcelain").stdout == ""
    assert git(lfs_repo, "check-attr", "filter", "m.safetensors").stdout.strip().endswith("theta")
    _refused(theta(lfs_repo, "migrate", "import", "--include", "*.safetensors", check=False), "backup", "delete")
    assert git(lfs_repo, "rev-parse", "main").stdout.strip() == new


def test_the_documented_undo_puts_every_ref_back(lfs_repo: Path) -> None:
    old = git(lfs_repo, "for-each-ref").stdout
    theta(lfs_repo, "migrate", "import")
    # docs/migrating.md, "The backups"
    undo = "git for-each-ref --format='update %(refname:lstrip=4) %(objectname)' refs/theta-migrate/backup/import"
    subprocess.run(f"{undo} | git update-ref --stdin", shell=True, cwd=lfs_repo, check=True)
    git(lfs_repo, "reset", "-q", "--hard")
    subprocess.run(
        "git for-each-ref --format='delete %(refname)' refs/theta-migrate/backup | git update-ref --stdin",
        shell=True,
        cwd=lfs_repo,
        check=True,
    )
    assert git(lfs_repo, "for-each-ref").stdout == old
    assert git(lfs_repo, "cat-file", "-p", "HEAD:m.safetensors").stdout.startswith("version https://git-lfs")
