"""The interactive prompt, driven through a real pseudo-terminal during a real `git merge`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pexpect
from conftest import git
from safetensors.numpy import load_file, save_file

MODEL = "model.safetensors"


def conflicting_branches(repo: Path) -> None:
    base = {"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32), "c": np.zeros(2, np.float32)}
    for branch, value in (("main", 1.0), ("other", 3.0)):
        if branch == "other":
            git(repo, "checkout", "-q", "-b", "other", "HEAD~1")
        else:
            save_file(base, repo / MODEL)
            git(repo, "add", MODEL)
            git(repo, "commit", "-q", "-m", "base")
        save_file({k: v + np.float32(value) for k, v in base.items()}, repo / MODEL)
        git(repo, "commit", "-q", "-am", branch)
    git(repo, "checkout", "-q", "main")


def spawn_merge(repo: Path) -> pexpect.spawn:
    return pexpect.spawn("git", ["merge", "other", "-m", "merge"], cwd=str(repo), encoding="utf-8", timeout=60)


def test_prompt_per_parameter_then_apply_to_all(repo: Path) -> None:
    conflicting_branches(repo)
    child = spawn_merge(repo)
    child.expect(r"3 parameter\(s\) changed differently")
    child.expect(r"\[1/3\] a ")
    child.expect("strategy \\(number or name")
    child.sendline("nonsense")
    child.expect("unknown merges plugin 'nonsense'")
    child.expect("strategy \\(number or name")
    child.sendline("theirs")
    child.expect(r"apply 'theirs' to all 2 remaining parameter\(s\)\? \[y/N\]")
    child.sendline("n")
    child.expect(r"\[2/3\] b ")
    child.expect("strategy \\(number or name")
    child.sendline("weighted weights=1,3")
    child.expect(r"apply 'weighted weights=1.0,3.0' to all 1 remaining")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    merged = load_file(repo / MODEL)
    np.testing.assert_array_equal(merged["a"], [3.0, 3.0])
    np.testing.assert_array_equal(merged["b"], [2.5, 2.5])
    np.testing.assert_array_equal(merged["c"], [2.5, 2.5])
    assert git(repo, "status", "--porcelain").stdout == ""


def test_prompt_quit_leaves_a_conflict(repo: Path) -> None:
    conflicting_branches(repo)
    child = spawn_merge(repo)
    child.expect("strategy \\(number or name")
    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0
    assert "the prompt was stopped" in child.before and "git theta merge --redo model.safetensors" in child.before
    assert "UU model.safetensors" in git(repo, "status", "--porcelain").stdout
    np.testing.assert_array_equal(load_file(repo / MODEL)["a"], [1.0, 1.0])
