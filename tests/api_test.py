"""The Python API (git_theta.load / load_param / save) on real repositories, and its docstring examples."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from conftest import git

import git_theta
from git_theta import api
from git_theta.errors import ThetaError


def test_docstring_examples_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(api, globs={"git_theta": git_theta, "np": np}) if t.examples]
    assert {t.name.rsplit(".", 1)[-1] for t in tests} == {"api", "load", "load_param", "save"}
    # Module example first: it makes the commits the function examples read.
    for test in sorted(tests, key=lambda t: t.name != "git_theta.api"):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert git(repo, "log", "--format=%s").stdout.split("\n")[:3] == ["v3", "v2", "v1"]


def test_safetensors_bf16_round_trip_without_touching_the_worktree(repo: Path) -> None:
    first = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "e": np.array([1.5, -0.0, np.nan], dtype=ml_dtypes.bfloat16),
    }
    commit = git_theta.save(first, "m.safetensors", message="v1", repo=repo)
    assert commit == git(repo, "rev-parse", "HEAD").stdout.strip()
    git_theta.save(
        {"w": torch.zeros(2, 3), "e": torch.ones(3, dtype=torch.bfloat16)}, "m.safetensors", message="v2", repo=repo
    )
    before = (repo / "m.safetensors").read_bytes()
    old = git_theta.load("m.safetensors", rev="HEAD~1", repo=repo)
    assert (repo / "m.safetensors").read_bytes() == before
    assert old["e"].dtype == ml_dtypes.bfloat16 and old["e"].tobytes() == first["e"].tobytes()  # -0.0 and NaN bits kept
    np.testing.assert_array_equal(old["w"], first["w"])
    old["w"][0, 0] = 7  # writable, a copy of its own
    as_torch = git_theta.load("m.safetensors", rev=commit, repo=repo, framework="torch")
    assert (
        as_torch["e"].dtype == torch.bfloat16
        and as_torch["e"].view(torch.int16).numpy().tobytes() == first["e"].tobytes()
    )
    assert git_theta.load_param("m.safetensors", "e", repo=repo, framework="torch").tolist() == [1.0, 1.0, 1.0]
    # safetensors written by save() are read by the safetensors library itself.
    from safetensors.torch import load_file

    assert load_file(str(repo / "m.safetensors"))["e"].dtype == torch.bfloat16


def test_pytorch_checkpoint(repo: Path) -> None:
    state = {
        "layer.weight": torch.randn(3, 4),
        "layer.bias": torch.zeros(3, dtype=torch.bfloat16),
        "step": torch.tensor(5),
    }
    git_theta.save(state, "model.pt", message="pt v1", repo=repo)
    git_theta.save({**state, "layer.bias": torch.ones(3, dtype=torch.bfloat16)}, "model.pt", message="pt v2", repo=repo)
    loaded = git_theta.load("model.pt", rev="HEAD~1", repo=repo, framework="torch")
    assert set(loaded) == set(state)
    for name, value in state.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value)
    assert git_theta.load_param("model.pt", "layer.bias", repo=repo).dtype == ml_dtypes.bfloat16
    assert torch.load(repo / "model.pt", weights_only=True)["layer.bias"].tolist() == [1.0, 1.0, 1.0]


def test_index_revision_and_paths_relative_to_repo(repo: Path, tmp_path: Path) -> None:
    (repo / "sub").mkdir()
    git_theta.save({"x": np.ones(2, dtype=np.float32)}, repo / "sub" / "m.safetensors", message="v1")
    np.testing.assert_array_equal(git_theta.load("m.safetensors", repo=repo / "sub")["x"], [1, 1])
    np.testing.assert_array_equal(git_theta.load("sub/m.safetensors", rev=":", repo=repo)["x"], [1, 1])


def test_save_commits_only_its_path(repo: Path) -> None:
    (repo / "notes.txt").write_text("staged, not for this commit\n")
    git(repo, "add", "notes.txt")
    git_theta.save({"x": np.ones(2, dtype=np.float32)}, "m.npz", message="npz", repo=repo)
    assert git(repo, "show", "--name-only", "--format=", "HEAD").stdout.split() == ["m.npz"]
    assert git(repo, "diff", "--cached", "--name-only").stdout.split() == ["notes.txt"]
    np.testing.assert_array_equal(git_theta.load("m.npz", repo=repo)["x"], [1, 1])


def test_errors_name_the_problem(repo: Path) -> None:
    git_theta.save({"weight": np.ones(2, dtype=np.float32)}, "m.safetensors", message="v1", repo=repo)
    with pytest.raises(ThetaError, match="m.safetensors: the same as at HEAD; nothing to commit"):
        git_theta.save({"weight": np.ones(2, dtype=np.float32)}, "m.safetensors", message="again", repo=repo)
    with pytest.raises(ThetaError, match="no parameter group 'weigth'; did you mean weight"):
        git_theta.load_param("m.safetensors", "weigth", repo=repo)
    with pytest.raises(ThetaError, match="not tracked by git-theta"):
        git_theta.save({"x": np.ones(1)}, "m.bin.txt", message="x", repo=repo)
    with pytest.raises(ThetaError, match="no git-theta checkpoint at HEAD~1"):
        git_theta.load("m.safetensors", rev="HEAD~1", repo=repo)  # HEAD~1 only has .gitattributes
    with pytest.raises(ThetaError, match="nested state dicts"):
        git_theta.save({"opt": {"lr": 1}}, "m.safetensors", message="x", repo=repo)
    with pytest.raises(ThetaError, match="cannot hold BF16"):
        git_theta.save({"e": np.ones(1, dtype=ml_dtypes.bfloat16)}, "e.npz", message="x", repo=repo)
    assert not (repo / "e.npz").exists()


def test_import_is_light() -> None:
    code = (
        "import sys, git_theta; print(sorted(m for m in ('numpy', 'torch', 'zstandard', 'git_theta.store') if m in "
        "sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


JSON_PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "json-checkpoint"


def test_save_writes_through_a_plugin_format_by_extension_or_name(repo: Path) -> None:
    # A format plugin (the plugins/json-checkpoint example, installed by bin/setup) is saved through its write_new,
    # in a fresh process whose path puts this tree's copy of the plugin first.
    theta = Path(git_theta.__file__).resolve().parents[1]
    (repo / ".gitattributes").write_text(
        (repo / ".gitattributes").read_text()
        + "*.json filter=theta diff=theta merge=theta -text\n*.ckpt filter=theta diff=theta merge=theta -text\n"
    )
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "track json")
    code = (
        "import numpy as np, git_theta\n"
        "git_theta.save({'w': np.array([[1.5, -0.0], [np.inf, 2.0]], dtype=np.float32)}, 'm.json', message='json')\n"
        "git_theta.save({'b': np.arange(3, dtype=np.int64)}, 'other.ckpt', message='named', format='json')\n"
        "print(git_theta.load('m.json')['w'].tolist(), git_theta.load('other.ckpt')['b'].tolist())\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(JSON_PLUGIN), str(theta), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("] [") == ["[[1.5, -0.0], [inf, 2.0]", "0, 1, 2]\n"]
    assert json.loads((repo / "m.json").read_text())["w"] == {
        "dtype": "F32",
        "shape": [2, 2],
        "data": [1.5, -0.0, "inf", 2.0],
    }
    assert json.loads(git(repo, "show", "HEAD:other.ckpt").stdout)["format"] == "json"


def test_save_keeps_the_safetensors_metadata_of_the_file_it_replaces_or_sets_the_given(repo: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = repo / "model.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={"format": "pt"})  # as transformers writes it
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    git_theta.save({"w": np.ones(3, np.float32)}, path, message="v2", repo=repo)
    with safe_open(str(path), "np") as file:
        assert file.metadata() == {"format": "pt"}
    git_theta.save(
        {"w": np.full(3, 2, np.float32)}, path, message="v3", repo=repo, metadata={"format": "pt", "step": "3"}
    )
    with safe_open(str(path), "np") as file:
        assert file.metadata() == {"format": "pt", "step": "3"}
    with pytest.raises(ThetaError, match="the npz format has no file metadata"):
        git_theta.save({"w": np.ones(3, np.float32)}, repo / "a.npz", message="npz", repo=repo, metadata={"a": "b"})
