"""Smudge: a damaged object at checkout is named, with the command that repairs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git

sys.path.insert(0, str(Path(__file__).parent / "workflows"))
sys.path.insert(0, str(Path(__file__).parent))
from hostile_support import RepoState, assert_refused, run_bounded  # noqa: E402
from workflow_support import blob_metadata, param_objects, save_small, store_path, weights  # noqa: E402

MODEL = "model.safetensors"
REPAIR = "run `git theta fetch --repair` to download a good copy, or `git theta fsck` to list all"


def _damaged(repo: Path, how: str) -> tuple[str, Path]:
    save_small(repo / MODEL, weights(1))
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    [oid] = param_objects(blob_metadata(repo, f"HEAD:{MODEL}"), "layer.1.weight")
    path = store_path(repo, oid)
    data = bytearray(path.read_bytes())
    if how == "bit flip":
        data[-5] ^= 0x01  # inside the tensor's bytes: decodes, rebuilds to another hash
    else:
        del data[len(data) // 2 :]  # does not decode
    path.write_bytes(bytes(data))
    (repo / MODEL).unlink()
    return oid, path.resolve()


@pytest.mark.parametrize("how", ["bit flip", "truncated"])
@pytest.mark.parametrize("command", [["git", "checkout", "--", MODEL], ["git-theta", "checkout"]])
def test_a_corrupt_object_is_named_with_the_repair(repo: Path, how: str, command: list[str]) -> None:
    oid, path = _damaged(repo, how)
    if command[0] == "git-theta":  # its own streaming checkout starts from the metadata text
        subprocess.run(
            ["git", "checkout", "--", MODEL], cwd=repo, env=os.environ | {"GIT_THETA_SKIP_SMUDGE": "1"}, check=True
        )
    state = RepoState.capture(repo)
    # The damaged object is layer.1.weight's pack: the first of the pack's parameters to be rebuilt is named.
    meta = blob_metadata(repo, f"HEAD:{MODEL}")
    users = [name for name in meta["params"] if oid in param_objects(meta, name)]
    line = assert_refused(run_bounded(command, cwd=repo), [MODEL, "parameter '"])
    assert any(f"parameter {name!r}: " in line for name in users), line
    assert line.endswith(f"object {oid} is corrupt ({path}); {REPAIR}"), line
    state.assert_unchanged(repo, known_damaged={oid})


def test_whole_objects_under_wrong_metadata_are_not_called_corrupt(repo: Path) -> None:
    save_small(repo / MODEL, weights(1))
    git(repo, "add", MODEL)
    text = git(repo, "cat-file", "blob", ":" + MODEL).stdout
    recorded = _tensor_hash(text, "layer.1.weight")
    forged = text.replace(recorded, "0" * 64)
    blob = git(repo, "hash-object", "-w", "--stdin", input=forged.encode()).stdout.strip()
    git(repo, "update-index", "--cacheinfo", f"100644,{blob},{MODEL}")
    (repo / MODEL).unlink()
    state = RepoState.capture(repo)
    line = assert_refused(run_bounded(["git", "checkout", "--", MODEL], cwd=repo), [MODEL, "'layer.1.weight'"])
    assert "rebuilt tensor does not match its recorded hash" in line and "what was committed is wrong" in line, line
    assert "fetch --repair" not in line
    state.assert_unchanged(repo)


def _tensor_hash(metadata_text: str, name: str) -> str:
    from git_theta import metadata

    return metadata.parse(metadata_text.encode()).params[name].hash


def test_tensor_data_is_the_tensors_bytes_back_to_back(repo: Path) -> None:
    # The joined batches safetensors writes (StoreSource.tensor_data, via checkpoints.base.tensor_bytes) hold
    # exactly the tensors' bytes in the order asked: small ones a batch per buffer, a big one on its own.
    import numpy as np
    from safetensors.numpy import save_file

    from git_theta import metadata, progress, smudge
    from git_theta.checkpoints.base import tensor_bytes
    from git_theta.repo import Repo

    rng = np.random.default_rng(3)
    tensors = {f"t{i:04d}": rng.normal(size=(8, 8)).astype(np.float32) for i in range(2500)}
    tensors["big"] = rng.normal(size=(600, 600)).astype(np.float32)  # over MEMBER_MAX_BYTES: a batch of its own
    tensors["z"] = np.zeros((0,), np.float32)
    save_file(tensors, str(repo / "m.safetensors"))
    git(repo, "add", "m.safetensors")
    meta = metadata.parse(git(repo, "show", ":m.safetensors").stdout.encode(), "m.safetensors")
    source = smudge.StoreSource(Repo.discover(repo).store, meta.params, "m.safetensors")
    names = sorted(tensors, reverse=True)
    expected = b"".join(tensors[name].tobytes() for name in names)
    chunks = list(source.tensor_data(names))
    assert b"".join(bytes(chunk) for chunk in chunks) == expected
    assert 2 < len(chunks) < 20  # batches, not tensors
    assert b"".join(bytes(tensor.data) for tensor in source.tensors(names)) == expected
    # a source without tensor_data (a plugin's own) gives each tensor's bytes; progress counts the same bytes
    with progress.Progress("x", len(expected)) as bar:
        counted = progress.counting_source(source, bar)
        assert b"".join(bytes(chunk) for chunk in tensor_bytes(counted, names)) == expected
        assert bar.done == len(expected)

    class OwnSource:
        def tensors(self, wanted: list[str]) -> object:
            return source.tensors(wanted)

    assert b"".join(bytes(chunk) for chunk in tensor_bytes(OwnSource(), names)) == expected  # type: ignore[arg-type]
