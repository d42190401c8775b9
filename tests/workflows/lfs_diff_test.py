"""Diffs across a path's switch from git-lfs to git-theta: the LFS-era side is read through its pointer.

Real git-lfs commits the first version; `git theta track` switches the path; the next commit changes one tensor.
`git theta diff`, `git diff` and `git log -p` then compare the LFS-era checkpoint group by group like two
git-theta versions (issue 15).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import git
from hostile_support import assert_refused, run_bounded
from safetensors.numpy import save_file

MODEL = "model.safetensors"
RNG = np.random.default_rng(15)
FIRST = {
    "encoder.weight": RNG.normal(0, 0.02, (16, 16)).astype(np.float32),
    "encoder.bias": np.zeros(16, dtype=np.float32),
    "head.weight": RNG.normal(0, 0.02, (4, 16)).astype(np.float32),
}


@pytest.fixture
def switched(tmp_path: Path) -> Path:
    """HEAD~1: the model committed by git-lfs (a pointer in git); HEAD: git-theta metadata, encoder.weight changed
    by +0.25 at one entry, head.weight doubled, encoder.bias as it was."""
    repo = tmp_path / "mixed"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "lfs", "install", "--local")
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    save_file(FIRST, str(repo / MODEL))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "lfs era")
    git(repo, "theta", "install", "--local")
    git(repo, "theta", "track", "*.safetensors")
    changed = {name: value.copy() for name, value in FIRST.items()}
    changed["encoder.weight"][2, 3] += 0.25
    changed["head.weight"] *= 2
    save_file(changed, str(repo / MODEL))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "theta era")
    assert git(repo, "show", f"HEAD~1:{MODEL}").stdout.startswith("version https://git-lfs.github.com/spec/v1")
    assert git(repo, "show", f"HEAD:{MODEL}").stdout.startswith('{"version":"git-theta/')
    return repo


def _lfs_object(repo: Path) -> Path:
    pointer = git(repo, "show", f"HEAD~1:{MODEL}").stdout
    oid = next(line.split(":", 1)[1] for line in pointer.splitlines() if line.startswith("oid sha256:"))
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def test_git_theta_diff_reads_the_lfs_era_side_through_its_pointer(switched: Path) -> None:
    out = git(switched, "theta", "diff", "--json", "HEAD~1", "HEAD").stdout
    [diff] = json.loads(out)["files"]
    assert diff["path"] == MODEL
    groups = {group["name"]: group for group in diff["groups"]}
    assert sorted(groups) == ["encoder.weight", "head.weight"]  # the bias did not change
    assert {group["status"] for group in groups.values()} == {"modified"}
    encoder, head = groups["encoder.weight"]["stats"], groups["head.weight"]["stats"]
    assert encoder["max_abs"] == pytest.approx(0.25, rel=1e-6)
    assert encoder["changed_count"] == 1 and encoder["changed"] == pytest.approx(1 / 256)
    norm = float(np.linalg.norm(FIRST["head.weight"]))
    assert head["norm"] == pytest.approx(norm, rel=1e-5) and head["relative"] == pytest.approx(1.0, rel=1e-5)
    assert head["cosine"] == pytest.approx(1.0, abs=1e-6)

    table = git(switched, "theta", "diff", "HEAD~1", "HEAD", "--", MODEL).stdout
    assert f"{MODEL} (HEAD~1 -> HEAD)" in table
    assert "2 of 3 groups changed (2 modified)" in table


def test_git_diff_and_log_p_list_the_groups_that_changed_across_the_switch(switched: Path) -> None:
    diff = git(switched, "diff", "HEAD~1", "HEAD", "--", MODEL).stdout
    rows = [line for line in diff.splitlines() if line[:2] in ("-e", "-h", "+e", "+h")]  # group lines, no headers
    removed = [line[1:].split()[0] for line in rows if line.startswith("-")]
    added = [line[1:].split()[0] for line in rows if line.startswith("+")]
    assert removed == added == ["encoder.weight", "head.weight"], diff
    assert "git-lfs" not in diff and "version https" not in diff  # no pointer text: the checkpoint's groups

    log = git(switched, "log", "-p", "--format=commit %s", "--", MODEL).stdout
    theta_era = log.split("commit lfs era")[0]
    assert (
        "-encoder.weight" in theta_era
        and "+head.weight" in theta_era
        and "encoder.bias" not in theta_era.replace(" encoder.bias", "")
    )


def test_the_same_checkpoint_as_a_pointer_and_as_metadata_shows_no_change(switched: Path) -> None:
    # What a commit that only switches the path to git-theta shows: the LFS-era version, staged again through
    # git-theta's filter, against its pointer.
    git(switched, "checkout", "HEAD~1", "--", MODEL)  # stages the pointer as it is, writes the file itself
    git(switched, "add", "--renormalize", "--", MODEL)
    assert git(switched, "show", f":{MODEL}").stdout.startswith('{"version":"git-theta/')
    assert git(switched, "diff", "--cached", "HEAD~1", "--", MODEL).stdout == ""
    assert git(switched, "theta", "diff", "--cached", "HEAD~1").stdout == ""  # before: every group "added"


def test_a_missing_lfs_object_with_no_remote_is_one_line_naming_path_revision_and_object(
    switched: Path, tmp_path: Path
) -> None:
    stored = _lfs_object(switched)
    shutil.move(stored, tmp_path / "kept")
    result = run_bounded(["git", "theta", "diff", "HEAD~1", "HEAD"], cwd=switched)
    line = assert_refused(result, [f"HEAD~1:{MODEL}", stored.name, "no remote"])
    assert result.stdout == "", line
    # git diff keeps going: the LFS-era side's view says what is missing instead of failing the whole diff.
    view = git(switched, "diff", "HEAD~1", "HEAD", "--", MODEL).stdout
    assert f"-# git-theta cannot show this git-lfs version: {MODEL}: git-lfs object {stored.name}" in view
    shutil.move(tmp_path / "kept", stored)
    assert "encoder.weight" in git(switched, "theta", "diff", "HEAD~1", "HEAD").stdout


def test_viewing_the_lfs_era_in_git_diff_stores_nothing(switched: Path) -> None:
    objects = switched / ".git" / "lfs" / "objects"
    before = sorted(p.name for p in objects.rglob("*") if p.is_file())
    git(switched, "diff", "HEAD~1", "HEAD")
    git(switched, "log", "-p")
    assert sorted(p.name for p in objects.rglob("*") if p.is_file()) == before
