"""aliases: `density` (the share kept, mergekit's name) for ties' k and dare's p, by one rule on every path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from git_theta.errors import ThetaError
from git_theta.merge import mergekit, settings
from git_theta.merge.policy import Choice, make_choice, parse_assignments, parse_policy

NAMES = ("encoder.layer.0.attention.self.query.weight", "encoder.layer.5.output.dense.bias", "embeddings.weight")
CONTEXT = settings.default_context(["ours", "theirs"], layers=6)


def _versions(name: str) -> tuple[list[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(sum(map(ord, name)))
    base = rng.normal(0, 0.02, size=(24, 16))
    return [base + rng.normal(0, 1e-3, size=base.shape) for _ in range(2)], base


def _merged(choice: Choice) -> dict[str, bytes]:
    """Every test parameter merged with `choice` (evaluated at its layer): the float64 bytes, to compare exactly."""
    found = {}
    for name in NAMES:
        at = choice.at(name, CONTEXT)
        versions, base = _versions(name)
        found[name] = at.plugin().merge(versions, base, at.arguments, name).tobytes()
    return found


def _toml(strategy: str, body: str) -> Choice:
    policy = parse_policy(f'[default]\nstrategy = "{strategy}"\n{body}\n', "t.toml")
    assert policy.default is not None
    return policy.default


@pytest.mark.parametrize(
    "density,k",
    [
        ("0.3", "0.3"),
        ("[0.1, 0.9]", "[0.1, 0.9]"),  # a gradient along the layers
        ("{ ours = 0.3, theirs = [0.2, 0.6] }", "{ ours = 0.3, theirs = [0.2, 0.6] }"),  # per version
    ],
)
def test_ties_density_is_k_bit_for_bit(density: str, k: str) -> None:
    by_density = _toml("ties", f"density = {density}")
    assert by_density.at(NAMES[0], CONTEXT).arguments == _toml("ties", f"k = {k}").at(NAMES[0], CONTEXT).arguments
    assert _merged(by_density) == _merged(_toml("ties", f"k = {k}"))


@pytest.mark.parametrize(
    "density,p",
    [
        ("0.3", "0.7"),
        ("[0.3, 0.9]", "[0.7, 0.1]"),
        ("{ ours = 0.3, theirs = [0.25, 0.5] }", "{ ours = 0.7, theirs = [0.75, 0.5] }"),
    ],
)
def test_dare_density_is_one_minus_p_bit_for_bit(density: str, p: str) -> None:
    by_density, by_p = _toml("dare", f"density = {density}"), _toml("dare", f"p = {p}")
    merged = _merged(by_density)
    assert merged == _merged(by_p)
    # the draws really differ with the share: density 0.3 is not p 0.3
    assert merged != _merged(_toml("dare", "p = 0.3"))


def test_the_command_line_and_git_config_forms() -> None:
    # --arg density=0.3 and a comma list, one value per version (ours first)
    one = make_choice("dare", parse_assignments(["density=0.3"], "--arg"), "--strategy dare")
    assert one.arguments["p"] == pytest.approx(0.7) and "density" not in one.arguments
    assert _merged(one) == _merged(make_choice("dare", {"p": "0.7"}, "--strategy dare"))
    listed = make_choice("ties", parse_assignments(["density=0.3,0.6", "lambda=2"], "--arg"), "--strategy ties")
    assert listed.at(NAMES[1], CONTEXT).arguments["k"] == (0.3, 0.6)
    dare_listed = make_choice("dare", {"density": "0.25,0.5"}, "--strategy dare")
    assert dare_listed.at(NAMES[1], CONTEXT).arguments["p"] == (0.75, 0.5)


@pytest.mark.parametrize(
    "strategy,arguments,message",
    [
        (
            "ties",
            {"density": 0.3, "k": 0.3},
            "src: give density or k, not both: they are one setting of 'ties' (k = density)",
        ),
        (
            "dare",
            {"density": "0.3", "p": "0.7"},
            "give density or p, not both: they are one setting of 'dare' (p = 1 − density)",
        ),
        ("dare", {"density": [0.3, 0.5], "p": 0.5}, "give density or p, not both"),
        (
            "dare",
            {"density": 0.0},
            "src: argument density: merge strategy 'dare': density=0.0 is below the minimum 0.001",
        ),
        ("ties", {"density": 1.5}, "argument density: merge strategy 'ties': density=1.5 is above the maximum 1.0"),
        ("ties", {"density": [0.2, -1]}, "density=-1.0 is below the minimum 0.0"),
        ("dare", {"density": {"ours": 2}}, "density (version 'ours'): merge strategy 'dare': density=2.0 is above"),
        ("ties", {"density": "nan"}, "argument density: 'nan' is not a finite number"),
        ("ties", {"density": True}, "argument density: True is not a number"),
        ("ties", {"density": "x" * 5000}, "argument density: a value of 5000 characters is longer than the 1024"),
        ("dare-ties", {"k": 0.3}, "has no argument 'k'"),  # only ties and dare have the alias
    ],
)
def test_refusals_name_what_was_written(strategy: str, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ThetaError) as error:
        make_choice(strategy, arguments, "src")
    assert message in str(error.value)


def test_both_in_a_policy_file_are_refused_naming_the_rule() -> None:
    with pytest.raises(ThetaError, match=r"t.toml \[\[rule\]\] #1: give density or k, not both"):
        parse_policy('[[rule]]\nparams = "*"\nstrategy = "ties"\nk = 0.2\ndensity = 0.2\n', "t.toml")


def _recipe(method: str, models: str) -> Choice:
    return mergekit.parse(yaml.safe_load(f"merge_method: {method}\nbase_model: m\nmodels:\n{models}"), "r.yml").choice


def test_a_mergekit_recipe_and_the_policy_file_share_the_rule() -> None:
    models = (
        "  - {model: ours, parameters: {density: 0.3}}\n"
        "  - {model: theirs, parameters: {density: [0.2, 0.6]}}\n"  # per model, and along the layers
    )
    policy = "density = { ours = 0.3, theirs = [0.2, 0.6] }"
    for method, strategy in (("ties", "ties"), ("dare_linear", "dare")):
        recipe, toml = _recipe(method, models), _toml(strategy, policy)
        for name in NAMES:
            assert recipe.at(name, CONTEXT).arguments == toml.at(name, CONTEXT).arguments, (method, name)
        assert _merged(recipe) == _merged(toml)
    filtered = _recipe(
        "ties", "  - ours\n  - theirs\nparameters:\n  density: [{filter: bias, value: 0.9}, {value: 0.1}]\n"
    )
    assert filtered.at(NAMES[1], CONTEXT).arguments["k"] == (0.9, 0.9)
    assert filtered.at(NAMES[0], CONTEXT).arguments["k"] == (0.1, 0.1)
    dare = _recipe(
        "dare_linear", "  - ours\n  - theirs\nparameters:\n  density: [{filter: bias, value: 0.9}, {value: 0.25}]\n"
    )
    assert dare.at(NAMES[0], CONTEXT).arguments["p"] == (0.75, 0.75)
    with pytest.raises(ThetaError, match="give density or p, not both"):
        _recipe("dare_linear", "  - {model: ours, parameters: {density: 0.3, p: 0.7}}\n  - theirs\n")
