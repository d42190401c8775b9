"""git's own diff, log -p, show and diff --stat on a tracked checkpoint, through `git theta textconv`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from conftest import git, theta
from safetensors.numpy import save_file
from safetensors.torch import save_file as torch_save

MODEL = "model.safetensors"


def v1(repo: Path) -> None:
    torch_save(
        {
            "a.weight": torch.ones(2, 3),
            "b.bias": torch.zeros(4),
            "c.emb": torch.arange(3, dtype=torch.bfloat16),
        },
        str(repo / MODEL),
    )


def v2(repo: Path) -> None:
    """a modified, b removed, c reshaped, d added."""
    torch_save(
        {
            "a.weight": torch.ones(2, 3) * 2,
            "c.emb": torch.arange(5, dtype=torch.bfloat16),
            "d.new": torch.zeros(7, dtype=torch.int8),
        },
        str(repo / MODEL),
    )


def two_commits(repo: Path) -> None:
    v1(repo)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    v2(repo)
    git(repo, "commit", "-q", "-am", "v2")


def changed_lines(output: str) -> tuple[list[str], list[str]]:
    minus = [line[1:] for line in output.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [line[1:] for line in output.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return minus, plus


def names(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines if not line.startswith("#")]


def check_v1_to_v2(output: str) -> None:
    minus, plus = changed_lines(output)
    assert names(minus) == ["a.weight", "b.bias", "c.emb"]
    assert names(plus) == ["a.weight", "c.emb", "d.new"]
    line = {
        (sign, line.split()[0]): line
        for sign, lines in (("-", minus), ("+", plus))
        for line in lines
        if not line.startswith("#")
    }
    assert line["-", "c.emb"].split()[1:4] == ["BF16", "[3]", "dense"]
    assert line["+", "c.emb"].split()[1:4] == ["BF16", "[5]", "dense"]
    assert line["+", "d.new"].split()[1:4] == ["I8", "[7]", "dense"]
    assert line["-", "b.bias"].split()[1:4] == ["F32", "[4]", "dense"]
    assert (
        line["-", "a.weight"].split()[-1] != line["+", "a.weight"].split()[-1]
    )  # the hash column tells versions apart
    assert "# git-theta safetensors checkpoint: 3 groups, 13 parameters" in minus[0]
    assert "# git-theta safetensors checkpoint: 3 groups, 18 parameters" in plus[0]
    assert "\x00" not in output and "data_offsets" not in output  # neither the raw file nor the metadata JSON


def test_worktree_diff_shows_groups(repo: Path) -> None:
    v1(repo)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    v2(repo)
    check_v1_to_v2(git(repo, "diff").stdout)
    git(repo, "add", MODEL)
    check_v1_to_v2(git(repo, "diff", "--cached").stdout)
    assert git(repo, "diff").stdout == ""


def test_commit_diffs_log_and_show(repo: Path) -> None:
    two_commits(repo)
    check_v1_to_v2(git(repo, "diff", "HEAD~1", "HEAD").stdout)
    check_v1_to_v2(git(repo, "log", "-p", "-1").stdout)
    check_v1_to_v2(git(repo, "show", "HEAD").stdout)
    first = git(repo, "show", "HEAD~1", "--", MODEL).stdout
    assert names(changed_lines(first)[1]) == ["a.weight", "b.bias", "c.emb"]


def test_diff_stat_counts_metadata_lines(repo: Path) -> None:
    two_commits(repo)
    stat = git(repo, "diff", "--stat", "HEAD~1", "HEAD").stdout
    # --stat counts lines of the metadata text (one per group, plus the file header line): not "Bin".
    assert f"{MODEL} |" in stat and "Bin" not in stat
    assert "1 file changed, 4 insertions(+), 4 deletions(-)" in stat


def git_env(repo: Path, *args: str, **env: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rebuilt_versions_render_as_their_metadata(repo: Path) -> None:
    """git smudges each blob before textconv sees it; textconv finds the committed metadata by hashes."""
    two_commits(repo)
    v2(repo)  # a racy-clean touch, so git also hands over working-tree files
    rebuilt = git(repo, "log", "-p").stdout
    from_metadata = git_env(repo, "log", "-p", GIT_THETA_SKIP_SMUDGE="1")
    assert rebuilt == from_metadata
    assert rebuilt.count("# git-theta safetensors checkpoint") == 3  # v1 added, then v1 -> v2
    check_v1_to_v2(git(repo, "log", "-p", "-1").stdout)


def test_works_in_a_clone_without_objects(repo: Path, tmp_path: Path) -> None:
    two_commits(repo)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-checkout", str(repo), str(clone))
    theta(clone, "install", "--local")
    git(clone, "checkout", "HEAD", "--", ".gitattributes")  # attributes only: the checkpoint's objects are not here
    git(clone, "remote", "remove", "origin")  # and cannot be fetched
    # Git smudges blobs before textconv; skipping the smudge leaves metadata, rendered without any object.
    check_v1_to_v2(git_env(clone, "log", "-p", "-1", GIT_THETA_SKIP_SMUDGE="1"))
    check_v1_to_v2(git_env(clone, "diff", "HEAD~1", "HEAD", GIT_THETA_SKIP_SMUDGE="1"))
    assert not (clone / ".git" / "lfs" / "objects").exists()
    # Without the variable too: smudge sees that `git log`/`git diff` started it (git_theta/display/invoker.py).
    check_v1_to_v2(git(clone, "log", "-p", "-1").stdout)
    check_v1_to_v2(git(clone, "diff", "HEAD~1", "HEAD").stdout)
    assert not (clone / ".git" / "lfs" / "objects").exists()


def test_textconv_of_a_changed_file_stores_nothing(repo: Path) -> None:
    v1(repo)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    objects = sorted(p.name for p in (repo / ".git" / "lfs" / "objects").rglob("*") if p.is_file())
    v2(repo)
    out = theta(repo, "textconv", MODEL).stdout
    assert names(out.splitlines()) == ["a.weight", "c.emb", "d.new"]
    assert sorted(p.name for p in (repo / ".git" / "lfs" / "objects").rglob("*") if p.is_file()) == objects
    # An unchanged checked-out file is shown from the index's metadata, identically.
    git(repo, "checkout", "--", MODEL)
    staged = theta(repo, "textconv", MODEL).stdout
    (repo / "meta.txt").write_bytes(git(repo, "cat-file", "blob", f":{MODEL}").stdout.encode())
    assert staged == theta(repo, "textconv", "meta.txt").stdout


def test_unreadable_checkpoint_is_a_line_not_a_failure(repo: Path) -> None:
    v1(repo)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    (repo / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    out = theta(repo, "textconv", "bad.safetensors").stdout
    assert out.startswith("# git-theta: cannot show this file: bad.safetensors: cannot read as safetensors")


def test_git_diff_on_1000_group_model(repo: Path) -> None:
    tensors = {f"layer.{i:04d}.weight": np.full((4,), i, dtype=np.float32) for i in range(1000)}
    save_file(tensors, repo / MODEL)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "v1")
    tensors["layer.0500.weight"] = np.full((4,), -1, dtype=np.float32)
    save_file(tensors, repo / MODEL)
    git(repo, "commit", "-q", "-am", "v2")
    start = time.perf_counter()
    out = git(repo, "diff", "HEAD~1", "HEAD").stdout
    elapsed = time.perf_counter() - start
    minus, plus = changed_lines(out)
    assert names(minus) == names(plus) == ["layer.0500.weight"]
    assert elapsed < 10, f"git diff took {elapsed:.1f}s"


def test_install_uses_the_lean_launcher(repo: Path) -> None:
    from git_theta.installation import program_of

    assert program_of(git(repo, "config", "diff.theta.textconv").stdout.strip()) == "git-theta-textconv"
    v1(repo)
    git(repo, "add", MODEL)
    (repo / "meta.txt").write_bytes(git(repo, "cat-file", "blob", f":{MODEL}").stdout.encode())
    launched = subprocess.run(["git-theta-textconv", "meta.txt"], cwd=repo, capture_output=True, text=True)
    assert launched.returncode == 0 and launched.stdout == theta(repo, "textconv", "meta.txt").stdout
    usage = subprocess.run(["git-theta-textconv"], cwd=repo, capture_output=True, text=True)
    assert usage.returncode == 1 and usage.stderr == "usage: git-theta-textconv FILE\n"
    # Reading metadata loads no numpy: the launcher stays cheap to start.
    code = (
        "import sys; from git_theta.commands import textconv; rc = textconv.main(['meta.txt']); sys.exit(9 if 'numpy' "
        "in sys.modules else rc)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True).returncode == 0


def test_history_views_start_no_python_per_version(repo: Path, tmp_path: Path) -> None:
    """Under `git log -p` the filter process renders each version and textconv only copies it (installation.py):
    with git-theta-textconv missing from PATH the views still come out, the same as the launcher renders them."""
    two_commits(repo)
    expected = git_env(repo, "log", "-p", GIT_THETA_SKIP_SMUDGE="1")  # metadata, rendered by git-theta-textconv
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git-theta").symlink_to(Path(sys.executable).parent / "git-theta")
    others = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "git-theta-textconv").exists()]
    path = os.pathsep.join([str(bin_dir), *others])
    assert subprocess.run(["sh", "-c", "command -v git-theta-textconv"], env={**os.environ, "PATH": path}).returncode
    assert git_env(repo, "log", "-p", PATH=path) == expected
    assert git_env(repo, "diff", "HEAD~1", "HEAD", PATH=path) in expected
