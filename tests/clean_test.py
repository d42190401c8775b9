"""clean through real `git add`: it never answers git with metadata that checkout would refuse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import fake_distribution, git, theta
from hostile_support import RepoState, assert_refused, run_bounded

# A format plugin (trusted code, but a reader can slip) that reads any file as one U8 tensor and
# reports a shape or file section of its own making.
_PLUGIN = """
from git_theta.checkpoints.base import CheckpointFormat
from git_theta.tensor import Tensor

class Slippery(CheckpointFormat):
    name = "slippery"
    extensions = (".slip",)

    @classmethod
    def sniff(cls, head, path):
        return False

    def read(self, stream, path, sink):
        data = stream.read()
        kind = data[:4]
        if kind == b"bool":
            sink.add("w", Tensor("U8", (True, len(data)), data))  # Python takes True for 1
            return {}
        return {"blob": {"object": "../../outside", "size": 1}}  # not an object id

    def write(self, file, params, source, out):
        raise NotImplementedError
"""


@pytest.fixture
def slippery_repo(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = fake_distribution(
        tmp_path / "plugins", "[git_theta.checkpoints]\nslippery = fake_plugins:Slippery\n", _PLUGIN
    )
    monkeypatch.setenv("PYTHONPATH", str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    theta(repo, "track", "*.slip")
    with (repo / ".gitattributes").open("a") as attributes:
        attributes.write("*.slip theta-format=slippery\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "slippery")
    return repo


@pytest.mark.parametrize(
    "content, problem",
    [(b"bool" + bytes(12), "invalid shape"), (b"file" + bytes(12), "file section")],
    ids=["bool-dimension", "bad-object-id"],
)
def test_metadata_that_checkout_would_refuse_is_refused_at_add(
    slippery_repo: Path, content: bytes, problem: str
) -> None:
    (slippery_repo / "model.slip").write_bytes(content)
    state = RepoState.capture(slippery_repo)
    result = run_bounded(["git", "add", "model.slip"], cwd=slippery_repo)
    line = assert_refused(result, "model.slip")
    assert problem in line and "checkout would refuse it" in line
    state.assert_unchanged(slippery_repo, store_may_grow=True)  # the tensor object, if any, is whole and harmless
