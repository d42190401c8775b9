"""Every computing strategy end to end: a real `git merge` of two branches of a small safetensors model.

One template repository is built per module (base, ours = main, theirs = other, every float tensor changed on
both sides, an I32 `layer.qweight` too); each test merges in a copy, choosing the strategy with a policy file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import GIT_ENV, git
from safetensors.numpy import load_file, save

from git_theta import plugins

MODEL = "model.safetensors"
FLOATS = ("layer.weight", "layer.bias")


def model(seed: int, base: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if base is None:
        return {
            "layer.weight": rng.normal(size=(4, 6)).astype(np.float32),
            "layer.bias": rng.normal(size=6).astype(np.float16),
            "layer.qweight": rng.integers(0, 2**31, size=3).astype(np.int32),
        }
    moved = {
        name: (base[name] + rng.normal(scale=0.1, size=base[name].shape) + 0.05).astype(base[name].dtype)
        for name in FLOATS
    }
    return {**moved, "layer.qweight": rng.integers(0, 2**31, size=3).astype(np.int32)}


BASE = model(0)
OURS = model(1, BASE)
THEIRS = model(2, BASE)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("methods")
    env = {**os.environ, **GIT_ENV, "HOME": str(root), "XDG_CONFIG_HOME": str(root / ".config")}
    (root / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    path = root / "repo"
    path.mkdir()

    def run(*args: str) -> None:
        subprocess.run(args, cwd=path, env=env, check=True, capture_output=True)

    run("git", "init", "-q")
    run("git-theta", "install", "--local")
    run("git-theta", "track", "*.safetensors")
    for branch, tensors in (("main", BASE), ("other", THEIRS), ("main", OURS)):
        if tensors is not BASE:
            run("git", "checkout", "-q", *(["-b", branch] if tensors is THEIRS else [branch]))
        (path / MODEL).write_bytes(save(tensors))
        run("git", "add", ".gitattributes", MODEL)
        run("git", "commit", "-q", "-m", f"{branch}")
    return path


def merge_in_copy(template: Path, tmp_path: Path, policy: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    repo = tmp_path / "repo"
    shutil.copytree(template, repo, symlinks=True)
    (repo / ".thetamerge.toml").write_text(policy)  # untracked: the working tree's policy decides
    return repo, git(repo, "merge", "-q", "--no-edit", "other", check=False)


# strategy -> its arguments as TOML lines (scalars: per-version values come from the resolution of .thetamerge.toml)
METHODS = {
    "breadcrumbs": "density = 0.5\ngamma = 0.1",
    "breadcrumbs-ties": "density = 0.5\ngamma = 0.1",
    "dare-ties": "density = 0.5\nseed = 3",
    "della": "density = 0.5\nepsilon = 0.2",
    "della-linear": "density = 0.5\nepsilon = 0.2",
    "karcher": "max_iter = 20",
    "model-stock": "",
    "multislerp": "use_base = true",
    "nearswap": "t = 0.05",
    "nuslerp": "nuslerp_flatten = false",
    "sce": "select_topk = 0.5",
    "ties": "k = 0.5\nweight = 0.5",
    "dare": "p = 0.3\nweight = 2.0",
    "task-arithmetic": "normalize = true",
}


@pytest.mark.parametrize("strategy", sorted(METHODS))
def test_git_merge_computes_each_float_tensor_with_the_strategy(template: Path, tmp_path: Path, strategy: str) -> None:
    policy = (
        f'[default]\nstrategy = "{strategy}"\n{METHODS[strategy]}\n\n[[rule]]\nparams = "*.qweight"\nstrategy = '
        '"theirs"\n'
    )
    repo, result = merge_in_copy(template, tmp_path, policy)
    assert result.returncode == 0, result.stderr
    assert "2 computed" in result.stderr and "1 picked by strategy" in result.stderr
    assert (
        len(git(repo, "rev-list", "--parents", "-n1", "HEAD").stdout.split()) == 3
    )  # a merge commit: itself and 2 parents
    merged = load_file(repo / MODEL)
    cls = plugins.strategy(strategy)
    arguments = cls.parse_arguments(dict(line.split(" = ") for line in METHODS[strategy].splitlines()))
    for name in FLOATS:
        versions = [OURS[name].astype(np.float64), THEIRS[name].astype(np.float64)]
        expected = cls().merge(versions, BASE[name].astype(np.float64), arguments, name).astype(BASE[name].dtype)
        assert merged[name].dtype == BASE[name].dtype
        assert merged[name].tobytes() == expected.tobytes(), name
        assert not np.array_equal(merged[name], OURS[name]) and not np.array_equal(merged[name], THEIRS[name])
    np.testing.assert_array_equal(merged["layer.qweight"], THEIRS["layer.qweight"])


def test_integer_parameter_is_refused_by_name(template: Path, tmp_path: Path) -> None:
    repo, result = merge_in_copy(template, tmp_path, '[default]\nstrategy = "ties"\n')
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("git-theta: error:")]
    assert lines == [
        (
            "git-theta: error: model.safetensors: cannot merge parameter 'layer.qweight' with 'ties': I32 values are "
            "quantized/integer "
            "data; pick ours, theirs or base for it in .thetamerge.toml (or with --strategy)"
        )
    ]
    assert "Traceback" not in result.stderr
    assert load_file(repo / MODEL)["layer.qweight"].tobytes() == OURS["layer.qweight"].tobytes()  # ours left in place
