"""settings: gradients along the layer index (mergekit's rule), per-model values, layer ranges in rules."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git
from safetensors.numpy import load_file, save_file

from git_theta import plugins
from git_theta.errors import ThetaError
from git_theta.merge import settings
from git_theta.merge.choose import resolve
from git_theta.merge.plan import Conflict
from git_theta.merge.policy import make_choice, parse_policy
from git_theta.merge.strategies.base import Argument, MergeStrategy
from git_theta.merge.strategies.slerp import SlerpStrategy


class PerModel(MergeStrategy):
    """A strategy with a per-model argument, as ties/dare get them (the strategies themselves live elsewhere)."""

    name = "per-model-test"
    summary = "test"
    arguments = (
        Argument("weight", float, 1.0, "per version", minimum=0.0, per_model=True),
        Argument("density", float, 0.5, "per version", minimum=0.0, maximum=1.0, per_model=True),
        Argument("scale", float, 1.0, "one value", minimum=0.0),
        Argument("seed", int, 0, "an int", minimum=0),
    )

    def merge(
        self,
        versions: Sequence[np.ndarray[Any, Any]],
        base: np.ndarray[Any, Any] | None,
        arguments: Mapping[str, Any],
        name: str,
    ) -> np.ndarray[Any, Any]:
        return versions[0]


@pytest.fixture
def per_model_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    real = plugins.strategy
    monkeypatch.setattr(plugins, "strategy", lambda name: PerModel if name == PerModel.name else real(name))


def test_layer_index_from_the_usual_names() -> None:
    assert settings.layer_index("model.layers.3.mlp.up_proj.weight") == 3
    assert settings.layer_index("encoder.layer.11.output.dense.bias") == 11
    assert settings.layer_index("transformer.h.0.attn.c_attn.weight") == 0
    assert settings.layer_index("blk.7.ffn_up.weight") == 7
    assert settings.layer_index("encoder.block.2.layer.0.SelfAttention.q.weight") == 2  # the first one counts
    for name in ("model.embed_tokens.weight", "lm_head.weight", "players.3.w", "layers3.w", "h.x.w"):
        assert settings.layer_index(name) is None, name
    assert settings.layer_count(["layers.0.w", "layers.9.b", "norm.weight"]) == 10
    assert settings.layer_count(["norm.weight"]) == 0


def test_gradients_interpolate_as_mergekit_does() -> None:
    # mergekit: t = i / (L - 1); s = t·(n − 1); (1 − f)·v[⌊s⌋] + f·v[⌊s⌋+1]
    values = (0.0, 0.5, 1.0, 0.5, 0.0)
    at = {i: settings.interpolate(values, settings.position(f"layers.{i}.w", 9)) for i in range(9)}
    assert at == {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0, 5: 0.75, 6: 0.5, 7: 0.25, 8: 0.0}
    assert settings.interpolate((0.2, 0.8), settings.position("layers.1.w", 4)) == pytest.approx(0.4)
    assert settings.position("embed.weight", 9) == 0.0  # no layer index: the first value
    assert settings.position("layers.0.w", 1) == 1.0  # a one-layer model: mergekit's t = 1
    assert settings.interpolate((0.3,), 0.7) == 0.3


def test_a_gradient_in_a_rule_gives_each_layer_its_value() -> None:
    policy = parse_policy(
        '[default]\nstrategy = "slerp"\nt = [0, 1]\n\n[[rule]]\nparams = "*"\nlayers = "2-3"\nstrategy = "ours"\n'
    )
    context = settings.default_context(["ours", "theirs"], layers=5)
    conflicts = [
        Conflict(name, (None, None), None)
        for name in ("layers.0.w", "layers.1.w", "layers.2.w", "layers.4.w", "head.w")
    ]
    choices = resolve("m", conflicts, ["ours", "theirs"], None, policy, None, "hint", context)
    assert {name: (c.strategy, dict(c.arguments)) for name, c in choices.items()} == {
        "layers.0.w": ("slerp", {"t": 0.0}),
        "layers.1.w": ("slerp", {"t": 0.25}),
        "layers.2.w": ("ours", {}),
        "layers.4.w": ("slerp", {"t": 1.0}),
        "head.w": ("slerp", {"t": 0.0}),
    }


def test_layer_ranges_in_rules() -> None:
    def matches(layers: str) -> list[str]:
        rule = parse_policy(f'[[rule]]\nparams = "*.w"\nlayers = {layers}\nstrategy = "ours"\n').rules[0]
        return [
            name
            for name in ("layers.0.w", "layers.5.w", "layers.6.w", "embed.w", "layers.5.b")
            if rule.matches("m", name)
        ]

    assert matches('"0-5"') == matches("[0, 5]") == ["layers.0.w", "layers.5.w"]
    assert matches("6") == matches('"6"') == ["layers.6.w"]
    for bad, message in [
        ('"5-0"', "layers 5-0 is empty"),
        ('"a-b"', 'is not a range like "0-5"'),
        ("[0, 1, 2]", "layers must be"),
        ("[-1, 2]", "integers from 0 to 1000000"),
        ("[0, 99999999]", "integers from 0 to 1000000"),
        ("1.5", "layers must be"),
    ]:
        with pytest.raises(ThetaError, match="^x.toml \\[\\[rule\\]\\] #1: ") as caught:
            parse_policy(f'[[rule]]\nparams = "*"\nlayers = {bad}\nstrategy = "ours"\n', "x.toml")
        assert message in str(caught.value), bad


def test_per_model_values_reach_the_strategy_as_one_value_per_version(per_model_strategy: None) -> None:
    choice = make_choice(
        PerModel.name,
        {"weight": {"ours": 0.7, "theirs": [0.1, 0.3]}, "density": 0.2, "scale": [1, 3]},
        "p.toml [default]",
    )
    context = settings.default_context(["ours", "theirs"], layers=3)
    assert dict(choice.at("layers.1.w", context).arguments) == {
        "weight": (0.7, 0.2),
        "density": (0.2, 0.2),
        "scale": 2.0,
        "seed": 0,
    }
    # a plain list for a per-model argument is a gradient for every version; a missing version takes the default
    choice = make_choice(PerModel.name, {"density": [0.2, 0.6], "weight": {"theirs": 2}}, "p")
    assert dict(choice.at("layers.2.w", context).arguments) == {
        "weight": (1.0, 2.0),
        "density": (0.6, 0.6),
        "scale": 1.0,
        "seed": 0,
    }
    # git theta merge: keyed by the revisions as given, `ours` the first and HEAD the current commit
    context = settings.Context(("main", "task-a", "task-b"), {"ours": 0, "HEAD": 0}, 0)
    choice = make_choice(PerModel.name, {"weight": {"HEAD": 0.5, "task-a": 0.3, "task-b": 0.2}}, "p")
    assert choice.at("w", context).arguments["weight"] == (0.5, 0.3, 0.2)
    # the command line: one value per version, in order (or one for all)
    assert make_choice(PerModel.name, {"weight": "1,2,3"}, "--arg").at("w", context).arguments["weight"] == (
        1.0,
        2.0,
        3.0,
    )
    assert make_choice(PerModel.name, {"weight": "4"}, "--arg").at("w", context).arguments["weight"] == (4.0, 4.0, 4.0)
    assert (
        make_choice(PerModel.name, {"seed": [0, 4]}, "p")
        .at("layers.2.w", settings.Context(("a",), {}, 4))
        .arguments["seed"]
        == 3
    )


def test_bad_varying_values_name_the_file_the_rule_and_the_argument(per_model_strategy: None) -> None:
    where = "p.toml [[rule]] #2: argument "
    parse_errors: list[tuple[dict[str, Any], str]] = [
        ({"scale": {"ours": 1}}, "scale: only a per-model argument takes a table keyed by version"),
        ({"scale": []}, "scale: a gradient needs 1 to 64 values, not 0"),
        ({"scale": [1.0] * 65}, "scale: a gradient needs 1 to 64 values, not 65"),
        ({"scale": [1, -2]}, "scale: merge strategy 'per-model-test': scale=-2.0 is below the minimum 0.0"),
        ({"scale": [1, [2]]}, "scale: [2] is not a number"),
        ({"scale": [1, True]}, "scale: True is not a number"),
        (
            {"density": {"ours": 1.5}},
            "density (version 'ours'): merge strategy 'per-model-test': density=1.5 is above the maximum 1.0",
        ),
        ({"weight": {}}, "weight: a per-model table needs 1 to 64 versions, not 0"),
        ({"weight": {"ours": {"x": 1}}}, "weight (version 'ours'): {'x': 1} is not a number"),
        ({"weight": "1,x"}, "weight: merge strategy 'per-model-test': argument weight='x' is not a float"),
    ]
    for arguments, message in parse_errors:
        with pytest.raises(ThetaError) as caught:
            make_choice(PerModel.name, arguments, "p.toml [[rule]] #2")
        assert str(caught.value) == where + message
    context = settings.default_context(["ours", "theirs"])
    resolve_errors: list[tuple[dict[str, Any], str]] = [
        ({"weight": {"ours": 1, "main": 2}}, "weight: no version 'main' in this merge (versions: ours, theirs)"),
        ({"weight": {"ours": 1, "HEAD": 2}}, "weight: version 'ours' is given twice (as 'HEAD')"),
        ({"weight": "1,2,3"}, "weight: 3 values for 2 versions (ours, theirs)"),
    ]
    for arguments, message in resolve_errors:
        with pytest.raises(ThetaError) as caught:
            make_choice(PerModel.name, arguments, "p.toml [[rule]] #2").at("w", context)
        assert str(caught.value) == where + message
    with pytest.raises(
        ThetaError, match="^p: argument weights: only a per-model argument takes a table keyed by version$"
    ):
        make_choice("weighted", {"weights": {"ours": 1}}, "p")
    with pytest.raises(ThetaError, match="^p: argument seed: a gradient needs 1 to 64 values, not 0$"):
        make_choice(PerModel.name, {"seed": []}, "p")


def test_git_merge_applies_a_gradient_along_the_layers(repo: Path) -> None:
    """Through the real merge driver: L comes from the whole checkpoint, not from the conflicting names."""
    rng = np.random.default_rng(3)
    base = {f"layers.{i}.w": rng.normal(size=4).astype(np.float32) for i in range(3)} | {
        "head.w": np.ones(2, np.float32)
    }
    save_file(base, repo / "m.safetensors")
    (repo / ".thetamerge.toml").write_text('[default]\nstrategy = "slerp"\nt = [0.0, 1.0]\n')
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    theirs = {name: value * 3 for name, value in base.items()}
    save_file(theirs, repo / "m.safetensors")
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    ours = dict(
        base,
        **{"layers.0.w": base["layers.0.w"] + 1, "layers.1.w": base["layers.1.w"] - 1, "head.w": base["head.w"] * 5},
    )
    save_file(ours, repo / "m.safetensors")
    git(repo, "commit", "-q", "-am", "ours")
    subprocess.run(
        ["git", "merge", "-q", "--no-edit", "other"],
        cwd=repo,
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    merged = load_file(repo / "m.safetensors")
    slerp = SlerpStrategy()
    np.testing.assert_array_equal(merged["layers.0.w"], ours["layers.0.w"])  # t = 0
    expected = slerp.merge(
        [ours["layers.1.w"].astype(np.float64), theirs["layers.1.w"].astype(np.float64)], None, {"t": 0.5}, "layers.1.w"
    )
    np.testing.assert_array_equal(
        merged["layers.1.w"], expected.astype(np.float32)
    )  # t = 1/2: L = 3 though layer 2 took theirs
    np.testing.assert_array_equal(merged["layers.2.w"], theirs["layers.2.w"])  # changed on one side only
    np.testing.assert_array_equal(merged["head.w"], ours["head.w"])  # no layer index: t = 0
