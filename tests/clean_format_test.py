"""The checkpoint format comes from the file's content, or from the theta-format gitattribute."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_distribution, git
from safetensors.numpy import save_file


def _stage(repo: Path, name: str) -> tuple[int, str]:
    result = git(repo, "add", name, check=False)
    return result.returncode, result.stderr


def test_content_decides_whatever_the_extension(repo: Path) -> None:
    # A safetensors file named .bin (a tracked PyTorch extension) is read as safetensors.
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(repo / "weights.bin"))
    git(repo, "add", "weights.bin")
    assert '"format":"safetensors"' in git(repo, "show", ":weights.bin").stdout


def test_attribute_forces_a_format_and_names_itself_in_errors(repo: Path) -> None:
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(repo / "model.safetensors"))
    before = git(repo, "ls-files", "-s").stdout
    with open(repo / ".gitattributes", "a") as attributes:
        attributes.write("model.safetensors theta-format=nope\n")
    code, err = _stage(repo, "model.safetensors")
    assert code != 0 and "theta-format=nope in .gitattributes" in err and "known: " in err
    with open(repo / ".gitattributes", "a") as attributes:
        attributes.write("model.safetensors theta-format=npz\n")
    code, err = _stage(repo, "model.safetensors")
    assert code != 0 and "model.safetensors: cannot read as npz" in err
    assert git(repo, "ls-files", "-s").stdout == before
    with open(repo / ".gitattributes", "a") as attributes:
        attributes.write("model.safetensors theta-format=safetensors\n")
    git(repo, "add", "model.safetensors")
    assert '"format":"safetensors"' in git(repo, "show", ":model.safetensors").stdout


def test_a_broken_third_party_format_does_not_stop_other_files(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed package whose checkpoint plugin fails to import (as pip would leave it: a dist-info on the path).
    site = fake_distribution(
        tmp_path / "site",
        "[git_theta.checkpoints]\nbroken = broken_format:Format\n",
        "raise ImportError('missing dependency')\n",
        "broken_format",
    )
    monkeypatch.setenv("PYTHONPATH", str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(repo / "model.safetensors"))
    git(repo, "add", "model.safetensors")
    assert '"format":"safetensors"' in git(repo, "show", ":model.safetensors").stdout
    (repo / "notes.bin").write_bytes(b"not a model at all")
    code, err = _stage(repo, "notes.bin")
    assert code != 0 and "notes.bin: not a checkpoint git-theta can read" in err
    assert (
        "not tried: plugin 'broken' (broken_format:Format) from package 'broken-format' failed to load: missing "
        "dependency" in err
    )
    with open(repo / ".gitattributes", "a") as attributes:
        attributes.write("notes.bin theta-format=broken\n")
    code, err = _stage(repo, "notes.bin")
    assert code != 0 and "theta-format=broken in .gitattributes: plugin 'broken'" in err
