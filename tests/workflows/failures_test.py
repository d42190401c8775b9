"""End to end through real git: every failure is a clear message and loses nothing."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
from conftest import delete_object, git, theta
from workflow_support import (
    blob_metadata,
    direct_console_script,  # noqa: F401 (autouse fixture)
    index_state,
    param_objects,
    save_small,
    store_path,
    weights,
)

from git_theta.installation import NOT_ON_PATH

MODEL = "model.safetensors"
MISSING = "git-theta-not-installed filter-process"


def _commit_model(repo: Path) -> tuple[bytes, dict]:
    data = save_small(repo / MODEL, weights(1), note="good")
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    return data, blob_metadata(repo, f"HEAD:{MODEL}")


def _git_without_theta(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git with a PATH that has git itself but no git-theta (a clone on a machine without it installed)."""
    git_dir = str(Path(shutil.which("git") or "/usr/bin/git").parent)
    assert shutil.which("git-theta", path=git_dir) is None
    env = {**os.environ, "PATH": git_dir}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)


def _fails_without_theta(repo: Path, *args: str) -> None:
    """`git args` fails both with git-theta off PATH and with filter.theta.process naming a missing command."""
    # git's own wording after the filter fails to start is racy ("clean filter 'theta' failed" or "the remote
    # end hung up"), but the configured command's own line always comes first: `git theta install` configures
    # commands that say what is missing; a hand-set one gets the shell's "<command>: [command] not found".
    without = _git_without_theta(repo, *args)
    assert without.returncode != 0 and without.stderr.startswith(NOT_ON_PATH + "\n"), without.stderr
    missing = git(repo, "-c", f"filter.theta.process={MISSING}", *args, check=False)
    assert (
        missing.returncode != 0 and "git-theta-not-installed: " in missing.stderr and "not found" in missing.stderr
    ), missing.stderr


def test_missing_executable_fails_add_and_checkout_without_committing_raw_bytes(repo: Path) -> None:
    good, _ = _commit_model(repo)
    before = index_state(repo)
    changed = save_small(repo / MODEL, weights(2))

    _fails_without_theta(repo, "add", MODEL)
    assert index_state(repo) == before
    assert (repo / MODEL).read_bytes() == changed
    _fails_without_theta(repo, "commit", "-q", "-a", "-m", "must not happen")
    assert git(repo, "rev-list", "--count", "HEAD").stdout.strip() == "2"

    (repo / MODEL).unlink()
    _fails_without_theta(repo, "checkout", "--", MODEL)
    assert not (repo / MODEL).exists(), "the metadata text must not be written in place of the model"
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == good

    # A whole-commit checkout fails too and HEAD stays. (git removes the old file before it asks the filter
    # for the new one, so the file is gone, but never replaced by metadata text; the index still has it.)
    (repo / MODEL).write_bytes(changed)
    git(repo, "commit", "-q", "-a", "-m", "v2")
    head = git(repo, "rev-parse", "HEAD").stdout
    _fails_without_theta(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert git(repo, "rev-parse", "HEAD").stdout == head
    assert not (repo / MODEL).exists() or (repo / MODEL).read_bytes() == changed
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == changed


def test_corrupt_and_missing_objects_are_named_by_fsck_and_checkout(repo: Path) -> None:
    git(repo, "config", "theta.packs", "false")  # a corrupt and a missing object: two objects, not one pack
    _, meta = _commit_model(repo)
    theta(repo, "fsck")  # exit 0 on the healthy store, so the exit 1 below is about the damage
    [corrupt_oid] = param_objects(meta, "layer.1.weight")
    corrupt_path = store_path(repo, corrupt_oid)
    corrupt = bytearray(corrupt_path.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0x40
    corrupt_path.write_bytes(bytes(corrupt))
    [missing_oid] = param_objects(meta, "layer.0.bias")
    missing_path = store_path(repo, missing_oid)
    kept = missing_path.read_bytes()
    delete_object(repo, missing_oid)

    fsck = theta(repo, "fsck", check=False)
    assert fsck.returncode == 1
    assert (
        f"parameter 'layer.1.weight': object {corrupt_oid} is corrupt" in fsck.stderr
        and f"error: {MODEL}@" in fsck.stderr
    ), fsck.stderr
    assert "'layer.0.bias'" in fsck.stderr and f"object {missing_oid} is missing" in fsck.stderr, fsck.stderr

    (repo / MODEL).unlink()
    checkout = git(repo, "checkout", "--", MODEL, check=False)
    assert checkout.returncode != 0
    assert "'layer.0.bias'" in checkout.stderr and missing_oid in checkout.stderr, checkout.stderr
    assert not (repo / MODEL).exists()

    missing_path.write_bytes(kept)  # now only the corrupt object stands in the way
    checkout = git(repo, "checkout", "--", MODEL, check=False)
    assert checkout.returncode != 0
    assert "'layer.1.weight'" in checkout.stderr and corrupt_oid in checkout.stderr, checkout.stderr
    assert not (repo / MODEL).exists()


def _bad_header(valid: bytes) -> bytes:
    """Same length prefix and size, but the JSON header is cut short: not parseable."""
    size = struct.unpack("<Q", valid[:8])[0]
    cut = b'{"layer.0.bias": {"dtype": "F32", "shape": [8], "data_offsets": [0, 3'
    return valid[:8] + cut + b" " * (size - len(cut)) + valid[8 + size :]


def test_bad_inputs_fail_add_and_leave_index_and_file_alone(repo: Path) -> None:
    good, _ = _commit_model(repo)
    random_bytes = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    cases = {
        "empty": (b"", "empty"),
        "truncated": (good[: len(good) - 40], "ends early"),
        "bad header": (_bad_header(good), "header is not valid JSON"),
        "random bytes": (random_bytes, "not a checkpoint"),
    }
    before = index_state(repo)
    for case, (content, reason) in cases.items():
        # A path already in the index, and (for one case) a new path.
        for path in (MODEL, "new.safetensors") if case == "random bytes" else (MODEL,):
            (repo / path).write_bytes(content)
            attempt = git(repo, "add", path, check=False)
            assert attempt.returncode != 0, f"{case}: git add {path} succeeded"
            assert path in attempt.stderr and reason in attempt.stderr, f"{case}:\n{attempt.stderr}"
            assert index_state(repo) == before, case
            assert (repo / path).read_bytes() == content, case
    assert "new.safetensors" not in git(repo, "ls-files").stdout
