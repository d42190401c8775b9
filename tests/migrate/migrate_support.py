"""A real git-lfs history for the migrate tests, made once per test process and copied for each test.

Made through git-lfs's own filter (HF-style .gitattributes): a safetensors model changing a few tensors per
commit, a README, a .bin that stays with git-lfs, a side branch merged back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import GIT_ENV, git, theta
from transfer.remote_support import write_model

HF_ATTRIBUTES = """*.7z filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""
TENSORS = 8
LOG_FORMAT = "%an%x00%ae%x00%aD%x00%cn%x00%ce%x00%cD%x00%B%x01"


@dataclass
class History:
    root: Path  # the repository as made (never changed)
    home: Path
    models: dict[str, bytes]  # commit subject -> the model file committed then
    refs: str  # `git for-each-ref` of the original


def dated_env(home: Path, date: str) -> dict[str, str]:
    env = {**os.environ, **GIT_ENV, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return env


def commit_all(repo: Path, home: Path, subject: str, day: int, author: str = "Ann Author <ann@example.com>") -> None:
    env = dated_env(home, f"2026-02-{day:02d}T10:00:00+02:00")
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(
        ["git", "commit", "-q", f"--author={author}", "-m", subject, "-m", "body line\n"], cwd=repo, env=env, check=True
    )


_MADE: list[History] = []


def made_history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The history, made on first use in this process; callers only read it (tests work on `copy_of`)."""
    if not _MADE:
        _MADE.append(_make(tmp_path_factory))
    return _MADE[0]


def _make(tmp_path_factory: pytest.TempPathFactory) -> History:
    home = tmp_path_factory.mktemp("history-home")
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[user]\n\tname = Theta Tester\n\temail = tester@example.com\n"
    )
    repo = tmp_path_factory.mktemp("lfs-history")
    env = dated_env(home, "2026-02-01T00:00:00+00:00")
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "lfs", "install", "--local"], cwd=repo, env=env, check=True, capture_output=True)
    (repo / ".gitattributes").write_text(HF_ATTRIBUTES)
    (repo / "README.md").write_text("# a model\n")
    commit_all(repo, home, "start", 1)
    models = {}
    model = repo / "model.safetensors"
    for subject, changed, day in (("v1", set(), 2), ("v2", {1}, 3), ("v3", {1, 2}, 5)):
        write_model(model, changed, TENSORS, version=day)
        models[subject] = model.read_bytes()
        if subject == "v1":
            (repo / "data.bin").write_bytes(bytes(range(256)) * 8)
        if subject == "v2":
            (repo / "README.md").write_text("# a model\nversion 2\n")
        commit_all(repo, home, subject, day)
        if subject == "v2":
            subprocess.run(["git", "tag", "v2-light"], cwd=repo, env=env, check=True)
            subprocess.run(["git", "branch", "side"], cwd=repo, env=env, check=True)
    subprocess.run(
        ["git", "tag", "-a", "v3", "-m", "release 3\n\nnotes"],
        cwd=repo,
        env=dated_env(home, "2026-02-06T12:00:00-05:00"),
        check=True,
    )
    subprocess.run(["git", "checkout", "-q", "side"], cwd=repo, env=env, check=True)
    write_model(model, {4}, TENSORS, version=4)
    models["side"] = model.read_bytes()
    commit_all(repo, home, "side", 4, author="Bo Brother <bo@example.com>")
    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo, env=env, check=True)
    merge_env = dated_env(home, "2026-02-07T10:00:00+02:00")
    subprocess.run(
        ["git", "merge", "-q", "-s", "ours", "side", "-m", "merge side"], cwd=repo, env=merge_env, check=True
    )
    refs = subprocess.run(["git", "for-each-ref"], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout
    return History(repo, home, models, refs)


def copy_of(history: History, tmp_path: Path) -> Path:
    """A copy of the history with git-theta's filter configured in it."""
    repo = tmp_path / "repo"
    shutil.copytree(history.root, repo, symlinks=True)
    theta(repo, "install", "--local")
    return repo


def log(repo: Path, *revs: str) -> list[str]:
    return git(repo, "log", f"--format={LOG_FORMAT}", "--topo-order", *revs).stdout.split("\x01")


def subject_commits(repo: Path, rev: str) -> dict[str, str]:
    return dict(reversed(line.split(" ", 1)) for line in git(repo, "log", "--format=%H %s", rev).stdout.splitlines())  # type: ignore[misc]


def lfs_objects(repo: Path) -> set[str]:
    out = git(repo, "lfs", "ls-files", "--all", "--long").stdout
    return {line.split()[0] for line in out.splitlines()}


def drop_object(repo: Path, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
    return oid


# Hugging Face's default .gitattributes for a model repository (the lines a new repo gets; abridged).
HF_DEFAULT = """*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""
