"""mergekit: YAML recipes read as revisions, a base and a strategy; what we do not support is refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import git, theta
from hostile_support import run_bounded
from safetensors.numpy import load_file, save_file

from git_theta.errors import ThetaError
from git_theta.merge import mergekit, settings
from git_theta.merge.strategies.slerp import SlerpStrategy
from git_theta.merge.strategies.ties import TiesStrategy

# mergekit's examples/linear.yml, model names replaced by branch names.
LINEAR_YML = """\
models:
  - model: orca
    parameters:
      weight: 1.0
  - model: wizard
    parameters:
      weight: 0.3
  - model: platypus
    parameters:
      weight: 0.5
merge_method: linear
dtype: float32
"""
# mergekit's examples/gradient-slerp.yml in its `models:` form (the example's own comment gives it).
SLERP_YML = """\
models:
  - model: orca
  - model: platypus
merge_method: slerp
base_model: orca
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float32
"""
# mergekit's examples/gradient-slerp.yml as it is: model names replaced by branch names, 40 layers by our 3.
GRADIENT_SLERP_YML = """\
slices:
  - sources:
      - model: orca
        layer_range: [0, 3]
      - model: platypus
        layer_range: [0, 3]
# or, the equivalent models: syntax:
# models:
#   - model: orca
#   - model: platypus
merge_method: slerp
base_model: orca
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float32
"""
TIES_YML = """\
models:
  - model: main
  - model: orca
    parameters:
      density: [0.2, 0.8]
      weight: 0.5
  - model: wizard
    parameters:
      density: [0.2, 0.8]
      weight: 0.5
merge_method: ties
base_model: main
parameters:
  normalize: true
  int8_mask: false
"""


def parse(text: str) -> mergekit.Recipe:
    return mergekit.parse(yaml.safe_load(text), "r.yml")


def test_recipes_map_to_strategies() -> None:
    linear = parse(LINEAR_YML)
    assert (linear.revisions, linear.base, linear.dtype) == (["orca", "wizard", "platypus"], None, "F32")
    assert (linear.choice.strategy, dict(linear.choice.arguments)) == ("weighted", {"weights": (1.0, 0.3, 0.5)})
    slerp = parse(SLERP_YML)
    assert (slerp.revisions, slerp.base, slerp.choice.strategy) == (["orca", "platypus"], None, "slerp")
    context = settings.default_context(["orca", "platypus"], layers=5)
    t = {
        name: slerp.choice.at(name, context).arguments["t"]
        for name in ("layers.1.self_attn.q.weight", "layers.1.mlp.up.weight", "layers.2.norm.weight", "embed.weight")
    }
    assert t == {
        "layers.1.self_attn.q.weight": 0.5,
        "layers.1.mlp.up.weight": 0.5,
        "layers.2.norm.weight": 0.5,
        "embed.weight": 0.5,
    }
    assert slerp.choice.at("layers.3.mlp.up.weight", context).arguments["t"] == pytest.approx(
        0.3
    )  # t = 3/4: the 4th value
    assert slerp.choice.at("layers.3.self_attn.q.weight", context).arguments["t"] == pytest.approx(0.7)
    sliced = parse(GRADIENT_SLERP_YML)
    assert (sliced.revisions, sliced.choice, sliced.layer_range) == (slerp.revisions, slerp.choice, (0, 3))
    ties = parse(TIES_YML)
    assert (ties.revisions, ties.base, ties.choice.strategy) == (
        ["orca", "wizard"],
        "main",
        "ties",
    )  # the base is no task vector
    # density and weight are per model in ties (one value per version, ours first): the base is no version
    ties_context = settings.default_context(["orca", "wizard"], layers=5)
    assert ties.choice.at("layers.4.w", ties_context).arguments == {
        "k": (0.8, 0.8),
        "lambda": 1.0,
        "weight": (0.5, 0.5),
    }
    unequal = parse(
        "models: [{model: a, parameters: {weight: 1}}, {model: b, parameters: {weight: 2}}]\n"
        "merge_method: ties\nbase_model: m\n"
    )
    assert unequal.choice.at("w", settings.default_context(["a", "b"])).arguments["weight"] == (1.0, 2.0)
    dare = parse(
        "models: [{model: a, parameters: {density: 0.25, weight: 2}},"
        " {model: b, parameters: {density: 0.25, weight: 2}}]\n"
        "merge_method: dare_linear\nbase_model: main\n"
    )
    dare_arguments = dare.choice.at("w", settings.default_context(["a", "b"])).arguments
    assert (dare.choice.strategy, dict(dare_arguments)) == (
        "dare",
        {"p": (0.75, 0.75), "lambda": 1.0, "seed": 0, "weight": (2.0, 2.0)},
    )
    arithmetic = parse("models: [a, b]\nmerge_method: task_arithmetic\nbase_model: main\nparameters: {weight: 0.5}\n")
    arithmetic_arguments = arithmetic.choice.at("w", settings.default_context(["a", "b"])).arguments
    assert dict(arithmetic_arguments) == {"lambda": 1.0, "normalize": False, "weight": (0.5, 0.5)}
    for method, strategy in (
        ("dare_ties", "dare-ties"),
        ("model_stock", "model-stock"),
        ("breadcrumbs", "breadcrumbs"),
        ("breadcrumbs_ties", "breadcrumbs-ties"),
        ("della", "della"),
        ("della_linear", "della-linear"),
        ("sce", "sce"),
    ):
        assert parse(f"models: [a, b]\nmerge_method: {method}\nbase_model: main\n").choice.strategy == strategy
    for method in ("karcher", "multislerp", "nuslerp"):
        assert parse(f"models: [a, b]\nmerge_method: {method}\n").choice.strategy == method


REFUSED: list[tuple[str, str]] = [
    (
        "slices: []\nmerge_method: slerp\n",
        "mergekit option 'slices' is not supported: only one slice over the whole model",
    ),
    (
        (
            "slices: [{sources: [{model: a, layer_range: [0, 4]}]}, {sources: [{model: a, layer_range: [4, 8]}]}]\n"
            "merge_method: slerp\n"
        ),
        "mergekit option 'slices' is not supported",
    ),
    (
        (
            "slices: [{sources: [{model: a, layer_range: [0, 4]}, {model: b, layer_range: [2, 6]}]}]\n"
            "merge_method: linear\n"
        ),
        "every source needs the same layer_range",
    ),
    (
        "slices: [{sources: [{model: a, layer_range: [0, 4]}], residual_weight: 0.5}]\nmerge_method: linear\n",
        "slices[1]: option 'residual_weight' is not supported",
    ),
    (
        "models: [a, b]\nmerge_method: linear\ntokenizer_source: union\n",
        "mergekit option 'tokenizer_source' is not supported",
    ),
    (
        "models: [a, b]\nmerge_method: linear\nchat_template: chatml\n",
        "mergekit option 'chat_template' is not supported",
    ),
    ("models: [a, b]\nmerge_method: linear\nout_dtype: bfloat16\n", "mergekit option 'out_dtype' is not supported"),
    ("models: [a, b]\nmerge_method: linear\nlazy: true\n", "mergekit option 'lazy' is not supported"),
    ("models: [a, b]\nmerge_method: passthrough\n", "mergekit merge_method 'passthrough' is not supported"),
    ("models: [a, b]\nmerge_method: ranked_ties\n", "mergekit merge_method 'ranked_ties' is not supported"),
    (
        "models: [{model: a, layer_range: [0, 4]}, b]\nmerge_method: linear\n",
        "models[1]: option 'layer_range' is not supported",
    ),
    ("models: [a, a]\nmerge_method: linear\n", "models[2]: model 'a' is listed twice"),
    ("models: [a, b]\nmerge_method: ties\n", "merge_method ties needs base_model"),
    (
        "models: [a, b, c]\nmerge_method: slerp\nbase_model: a\n",
        "merges base_model with exactly one other model, not 2",
    ),
    ("models: [a, b]\nmerge_method: linear\nbase_model: c\n", "base_model 'c' would be ignored"),
    (
        "models: [a, b]\nmerge_method: ties\nbase_model: m\nparameters: {normalize: false}\n",
        "parameter 'normalize': only mergekit's default (True)",
    ),
    (
        "models: [a, b]\nmerge_method: dare_linear\nbase_model: m\nparameters: {rescale: false}\n",
        "parameter 'rescale': only mergekit's default (True)",
    ),
    (
        "models: [a, b]\nmerge_method: ties\nbase_model: m\nparameters: {int8_mask: true}\n",
        "int8_mask: true is not supported",
    ),
    (
        "models: [a, b]\nmerge_method: ties\nbase_model: m\nparameters: {gamma: 0.1}\n",
        "parameter 'gamma': not supported for merge_method ties",
    ),
    (
        "models: [{model: a, parameters: {weight: [1, 2]}}, b]\nmerge_method: linear\nparameters: {weight: 1}\n",
        "linear takes one plain number per model",
    ),
    (
        "models: [a, b]\nmerge_method: ties\nbase_model: m\nparameters: {density: 1.5}\n",
        "argument density: merge strategy 'ties': density=1.5 is above the maximum 1.0",
    ),
    (
        "models: [a, b]\nmerge_method: dare_linear\nbase_model: m\nparameters: {density: [0.5, 0.0]}\n",
        "argument density: merge strategy 'dare': density=0.0 is below the minimum 0.001",
    ),
    (
        "models: [a, b]\nmerge_method: slerp\nbase_model: a\nparameters: {t: [0.5, 2]}\n",
        "argument t: merge strategy 'slerp': t=2.0 is above the maximum 1.0",
    ),
    (
        "models: [a, b]\nmerge_method: slerp\nbase_model: a\nparameters: {t: [{filter: x, value: [{value: 1}]}]}\n",
        "conditions cannot nest",
    ),
    ("models: [a, b]\nmerge_method: linear\ndtype: int8\n", "dtype 'int8' is not supported"),
    ("- a\n", "a mergekit configuration is a YAML mapping"),
]


@pytest.mark.parametrize("text,message", REFUSED)
def test_what_we_do_not_support_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ThetaError) as caught:
        parse(text)
    assert str(caught.value).startswith("r.yml") and message in str(caught.value), str(caught.value)


def test_hostile_recipes_are_refused_before_expanding(tmp_path: Path) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
    )
    cases: dict[str, tuple[bytes, str]] = {
        "laughs": (laughs.encode(), "YAML aliases (*name) are not accepted"),
        "deep": (("[" * 40 + "]" * 40).encode(), "nested more than 16 levels deep"),
        "big": (b"#" * (mergekit.MAX_CONFIG_BYTES + 1), "larger than the 1048576 bytes"),
        "binary": (b"models: \xff\n", "not UTF-8 text"),
        "broken": (b"models: [a\n", "not valid YAML"),
        "many": (
            ("merge_method: linear\nmodels: [" + ", ".join(f"m{i}" for i in range(65)) + "]\n").encode(),
            "65 models, more than the 64",
        ),
    }
    for name, (data, message) in cases.items():
        recipe = tmp_path / f"{name}.yml"
        recipe.write_bytes(data)
        with pytest.raises(ThetaError) as caught:
            mergekit.load(recipe)
        assert message in str(caught.value) and str(caught.value).startswith(str(recipe)), (name, str(caught.value))
    result = run_bounded(
        ["git-theta", "merge", "--mergekit-config", str(tmp_path / "laughs.yml"), "--path", "m.safetensors"],
        cwd=tmp_path,
        max_rss_mb=300,
        max_seconds=60,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "YAML aliases" in result.stderr, result.stderr


def commit_model(repo: Path, tensors: dict[str, np.ndarray], message: str) -> None:
    save_file(tensors, repo / "m.safetensors")
    git(repo, "add", "m.safetensors")
    git(repo, "commit", "-q", "-m", message)


def f64(tensors: dict[str, np.ndarray], name: str) -> Any:
    return tensors[name].astype(np.float64)


def test_recipes_run_through_git_theta_merge(repo: Path) -> None:
    rng = np.random.default_rng(5)
    names = [f"model.layers.{i}.{part}.weight" for i in range(3) for part in ("self_attn.q", "mlp.up")] + [
        "lm_head.weight"
    ]
    base = {name: rng.normal(size=(4, 3)).astype(np.float32) for name in names}
    commit_model(repo, base, "base")
    branches = {}
    for branch in ("orca", "wizard", "platypus"):
        git(repo, "checkout", "-q", "-b", branch, "main")
        # every tensor changed, except lm_head on orca only: one-sided, still computed as mergekit would
        branches[branch] = {
            n: v + rng.normal(size=v.shape).astype(np.float32) if branch == "orca" or n != "lm_head.weight" else v
            for n, v in base.items()
        }
        commit_model(repo, branches[branch], branch)
    git(repo, "checkout", "-q", "main")
    recipes = {
        "linear.yml": LINEAR_YML,
        "slerp.yml": GRADIENT_SLERP_YML,
        "ties.yml": TIES_YML,
        "part.yml": GRADIENT_SLERP_YML.replace("[0, 3]", "[0, 2]"),
    }
    for file, text in recipes.items():
        (repo.parent / file).write_text(text)

    theta(repo, "merge", "--mergekit-config", str(repo.parent / "linear.yml"), "--path", "m.safetensors")
    merged = load_file(repo / "m.safetensors")
    for name in names:
        expected = (
            1.0 * f64(branches["orca"], name)
            + 0.3 * f64(branches["wizard"], name)
            + 0.5 * f64(branches["platypus"], name)
        ) / 1.8
        np.testing.assert_array_equal(merged[name], expected.astype(np.float32))
    git(repo, "commit", "-q", "--no-edit")
    assert git(repo, "log", "--format=%P", "-1").stdout.split()[1:] == [
        git(repo, "rev-parse", b).stdout.strip() for b in ("orca", "wizard", "platypus")
    ]
    git(repo, "reset", "-q", "--hard", "HEAD~1")

    theta(repo, "merge", "--mergekit-config", str(repo.parent / "slerp.yml"), "--path", "m.safetensors")
    merged = load_file(repo / "m.safetensors")
    for name in names:
        layer = settings.layer_index(name)
        t = (
            0.5
            if layer is None
            else settings.interpolate(
                (0, 0.5, 0.3, 0.7, 1) if "self_attn" in name else (1, 0.5, 0.7, 0.3, 0), layer / 2
            )
        )
        expected = SlerpStrategy().merge(
            [f64(branches["orca"], name), f64(branches["platypus"], name)], None, {"t": t}, name
        )
        np.testing.assert_array_equal(merged[name], expected.astype(np.float32), err_msg=name)
    git(repo, "merge", "--abort")

    theta(repo, "merge", "--mergekit-config", str(repo.parent / "ties.yml"), "--path", "m.safetensors")
    merged = load_file(repo / "m.safetensors")
    for name in names:
        layer = settings.layer_index(name)
        k = 0.2 if layer is None else 0.2 + 0.6 * layer / 2
        expected = TiesStrategy().merge(
            [f64(branches["orca"], name), f64(branches["wizard"], name)], f64(base, name), {"k": k, "lambda": 1.0}, name
        )
        np.testing.assert_array_equal(merged[name], expected.astype(np.float32), err_msg=name)
    assert not np.array_equal(merged["lm_head.weight"], branches["orca"]["lm_head.weight"])  # trimmed, not taken as is
    git(repo, "merge", "--abort")

    (repo.parent / "bf16.yml").write_text(LINEAR_YML.replace("float32", "bfloat16"))
    refused = theta(
        repo, "merge", "--mergekit-config", str(repo.parent / "bf16.yml"), "--path", "m.safetensors", check=False
    )
    assert refused.returncode == 1 and "dtype BF16 but parameter 'lm_head.weight' is F32" in refused.stderr, (
        refused.stderr
    )
    part = theta(
        repo, "merge", "--mergekit-config", str(repo.parent / "part.yml"), "--path", "m.safetensors", check=False
    )
    assert part.returncode == 1 and "layer_range [0, 2] is not the whole model, which has 3 layers" in part.stderr, (
        part.stderr
    )
    mixed = theta(
        repo,
        "merge",
        "orca",
        "--mergekit-config",
        str(repo.parent / "ties.yml"),
        "--path",
        "m.safetensors",
        check=False,
    )
    assert mixed.returncode == 1 and "--mergekit-config takes only --path" in mixed.stderr
    assert git(repo, "status", "--porcelain").stdout == ""
