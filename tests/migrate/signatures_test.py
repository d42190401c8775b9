"""Signed commits and tags through migrate, signed by real gpg (and ssh): import says which lost their signatures, an
untouched signed commit keeps its own, and export gives the signed originals back from the backups (same ids,
signatures valid again); without the backups export says nothing was restored and gives unsigned commits."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from safetensors.numpy import save_file

from git_theta.migrate import BACKUP_PREFIX, signatures

SIGNER = "Sam Signer <sam@example.com>"


@pytest.fixture
def gnupg(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway keyring with one ed25519 signing key and no passphrase (short path: gpg-agent's socket lives in
    it), its agent stopped afterwards."""
    assert shutil.which("gpg"), "gpg is needed to make signed commits (bin/setup installs gnupg)"
    home = Path(tempfile.mkdtemp(prefix="gt-gpg-", dir="/tmp"))
    home.chmod(0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", SIGNER, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def _sign_with_ssh(repo: Path, keys: Path) -> None:
    """git's other signature format: an ssh key, verified against an allowed-signers file."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "key")], check=True)
    public = (keys / "key.pub").read_text().strip()
    (keys / "allowed").write_text(f"tester@example.com {public}\n")
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "user.signingkey", str(keys / "key.pub"))
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(keys / "allowed"))


def _model(path: Path, version: int) -> None:
    save_file({"w": np.full((16, 16), version, np.float32), "b": np.zeros(16, np.float32)}, str(path))


@pytest.fixture
def signed_repo(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """start (signed, no checkpoint), v1 and v2 (signed, a model through git-lfs), a signed tag of v2; signed
    with gpg, or with ssh when the test asks (indirect parameter)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "lfs", "install", "--local")
    theta(repo, "install", "--local")
    if getattr(request, "param", "gpg") == "ssh":
        assert shutil.which("ssh-keygen"), "ssh-keygen is needed to make ssh-signed commits"
        (tmp_path / "keys").mkdir()
        _sign_with_ssh(repo, tmp_path / "keys")
    else:
        request.getfixturevalue("gnupg")
        git(repo, "config", "user.signingkey", "sam@example.com")
    git(repo, "config", "commit.gpgsign", "true")
    (repo / "README.md").write_text("# a model\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    for version in (1, 2):
        _model(repo / "m.safetensors", version)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{version}")
    git(repo, "tag", "-s", "v2", "-m", "release 2")
    for rev in ("main", "main~1", "main~2"):
        assert "gpgsig" in git(repo, "cat-file", "commit", rev).stdout
    return repo


def _refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "refs/heads", "refs/tags").stdout


@pytest.mark.parametrize("signed_repo", ["gpg", "ssh"], indirect=True)
def test_import_counts_the_lost_signatures_and_export_restores_the_signed_originals(signed_repo: Path) -> None:
    repo = signed_repo
    before, start = _refs(repo), git(repo, "rev-parse", "main~2").stdout.strip()
    lost = "2 signed commit(s) and 1 signed tag(s)"
    measured = theta(repo, "migrate", "info", "--everything").stdout.splitlines()
    assert measured[-1].startswith(f"{lost} would lose their signatures"), measured
    assert _refs(repo) == before

    out = theta(repo, "migrate", "import", "--everything").stdout.splitlines()
    assert out[0] == "migrate import: 2 of 3 commit(s) rewritten"
    assert out[-1].startswith(f"{lost} lost their signatures") and f"{BACKUP_PREFIX}/import/" in out[-1], out
    # the commit import did not change keeps its id and its valid signature; the rewritten ones have none
    assert git(repo, "rev-parse", "main~2").stdout.strip() == start
    git(repo, "verify-commit", "main~2")
    for rev in ("main", "main~1"):
        assert "gpgsig" not in git(repo, "cat-file", "commit", rev).stdout
    assert signatures.unsigned_tag(git(repo, "cat-file", "tag", "v2").stdout.encode()) is None
    assert git(repo, "cat-file", "-p", "main:m.safetensors").stdout.startswith("{")

    out = theta(repo, "migrate", "export", "--everything", "--include", "*.safetensors").stdout.splitlines()
    assert out[-1] == (
        f"2 signed commit(s) and 1 signed tag(s) restored with their original signatures (from the backups under "
        f"{BACKUP_PREFIX}/)"
    ), out
    assert _refs(repo) == before  # the signed originals, byte for byte
    git(repo, "verify-commit", "main")
    git(repo, "verify-commit", "main~1")
    git(repo, "verify-tag", "v2")
    assert git(repo, "status", "--porcelain").stdout == ""


def test_without_the_backups_export_gives_the_unsigned_commits(signed_repo: Path) -> None:
    repo = signed_repo
    original = {rev: git(repo, "cat-file", "commit", rev).stdout.encode() for rev in ("main", "main~1")}
    trees = git(repo, "rev-parse", "main^{tree}", "main~1^{tree}").stdout
    theta(repo, "migrate", "import", "--everything")
    subprocess.run(
        f"git for-each-ref --format='delete %(refname)' {BACKUP_PREFIX} | git update-ref --stdin",
        shell=True,
        cwd=repo,
        check=True,
    )
    out = theta(repo, "migrate", "export", "--everything", "--include", "*.safetensors").stdout
    assert "restored" not in out and "signatures" not in out, out
    # the same trees and the same bytes but the signature: v1 is exactly its original unsigned, v2 too but for
    # its parent line (v1's id changed)
    assert git(repo, "rev-parse", "main^{tree}", "main~1^{tree}").stdout == trees
    unsigned = signatures.unsigned_commit(original["main~1"])
    assert unsigned is not None
    assert git(repo, "rev-parse", "main~1").stdout.strip() == signatures.ObjectIds(repo)("commit", unsigned)
    assert signatures.unsigned_commit(git(repo, "cat-file", "commit", "main").stdout.encode()) is None


def test_unsigned_bytes_are_what_was_signed() -> None:
    commit = b"tree t\nparent p\nauthor a\ncommitter c\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n x\n"
    commit += b" -----END PGP SIGNATURE-----\n\nmessage\n"
    assert signatures.unsigned_commit(commit) == b"tree t\nparent p\nauthor a\ncommitter c\n\nmessage\n"
    assert signatures.unsigned_commit(b"tree t\nauthor a\n\nmessage\n") is None
    tag = b"object o\ntype commit\ntag v\ntagger t\n\nrelease\n-----BEGIN SSH SIGNATURE-----\nx\n"
    tag += b"-----END SSH SIGNATURE-----\n"
    assert signatures.unsigned_tag(tag) == b"object o\ntype commit\ntag v\ntagger t\n\nrelease\n"
    assert signatures.unsigned_tag(b"object o\ntype commit\ntag v\ntagger t\n\nrelease\n") is None
