"""policy: .thetamerge.toml rules, git config override, argument validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from git_theta.errors import ThetaError
from git_theta.merging.policy import config_choice, load_policy, parse_policy

POLICY = """
[default]
strategy = "ties"
k = 0.3

[[rule]]
params = "*.LayerNorm.*"
strategy = "average"

[[rule]]
params = "encoder.*"
path = "adapters/*.safetensors"
strategy = "weighted"
weights = [0.7, 0.3]
"""


def test_rules_match_in_order_then_default() -> None:
    policy = parse_policy(POLICY)
    assert policy.choose("model.safetensors", "enc.LayerNorm.weight").strategy == "average"
    weighted = policy.choose("adapters/a.safetensors", "encoder.w")
    assert weighted.strategy == "weighted" and weighted.arguments == {"weights": (0.7, 0.3)}
    default = policy.choose("model.safetensors", "encoder.w")
    assert default.strategy == "ties" and default.arguments == {"k": 0.3, "lambda": 1.0}


def test_policy_without_default_leaves_other_names_open() -> None:
    policy = parse_policy('[[rule]]\nparams = "*.bias"\nstrategy = "ours"\n')
    assert policy.choose("m.safetensors", "a.bias").strategy == "ours"
    assert policy.choose("m.safetensors", "a.weight") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[default]\nstrategy = "nope"\n', "unknown merges plugin 'nope'; known: average"),
        ('[default]\nstrategy = "ties"\nkk = 1\n', r"\[default\]: merge strategy 'ties' has no argument 'kk'"),
        ('[default]\nstrategy = "ties"\nk = 2.0\n', "above the maximum"),
        ('[[rule]]\nstrategy = "ours"\n', r"\[\[rule\]\] #1: needs params"),
        ("[defaults]\n", "unknown table 'defaults'"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_bad_policies_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ThetaError, match=message):
        parse_policy(text, "x/.thetamerge.toml")


def test_load_policy_from_repository_root(tmp_path: Path) -> None:
    assert load_policy(tmp_path) is None
    (tmp_path / ".thetamerge.toml").write_text('[default]\nstrategy = "average"\n')
    assert load_policy(tmp_path).default.strategy == "average"


def test_git_config_choice(repo: Path) -> None:
    assert config_choice(repo) is None
    git(repo, "config", "theta.merge.strategy", "dare")
    git(repo, "config", "--add", "theta.merge.arg", "p=0.25")
    git(repo, "config", "--add", "theta.merge.arg", "seed=3")
    choice = config_choice(repo)
    assert (choice.strategy, choice.arguments) == ("dare", {"p": 0.25, "lambda": 1.0, "seed": 3})
    git(repo, "config", "--add", "theta.merge.arg", "q=1")
    with pytest.raises(ThetaError, match="git config theta.merge.strategy=dare: merge strategy 'dare' has no argument 'q'"):
        config_choice(repo)
