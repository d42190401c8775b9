"""policy: .thetamerge.toml rules, git config override, argument validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import git
from hostile_support import assert_refused, run_bounded
from safetensors.numpy import save_file

from git_theta.errors import ThetaError
from git_theta.merge.policy import config_choice, load_policy, parse_policy

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
    assert default.strategy == "ties" and default.arguments == {"k": 0.3, "lambda": 1.0, "weight": 1.0}


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
    assert (choice.strategy, choice.arguments) == ("dare", {"p": 0.25, "lambda": 1.0, "seed": 3, "weight": 1.0})
    git(repo, "config", "--add", "theta.merge.arg", "q=1")
    with pytest.raises(
        ThetaError, match="git config theta.merge.strategy=dare: merge strategy 'dare' has no argument 'q'"
    ):
        config_choice(repo)


# --- a hostile .thetamerge.toml (a collaborator commits it), through a real `git merge` -------------------------

_DEFAULT = "[default]\nstrategy = 'task-arithmetic'\n"
HOSTILE_POLICIES = {
    "nested_arrays": (_DEFAULT + "x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    "nested_inline_tables": (_DEFAULT + "x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n", "nested too deeply"),
    "nan_lambda": (_DEFAULT + "lambda = nan\n", "lambda=nan is not a finite number"),
    "inf_lambda": (_DEFAULT + "lambda = inf\n", "lambda=inf is not a finite number"),
    "inf_seed": ("[default]\nstrategy = 'dare'\nseed = inf\n", "seed=inf is not a finite number"),
    "huge_integer": ("[default]\nstrategy = 'dare'\nseed = " + "9" * 5000 + "\n", "an integer with more digits"),
    "huge_weight_list": (
        "[default]\nstrategy = 'weighted'\nweights = [" + ",".join(["1"] * 100_000) + "]\n",
        "more than the 64 allowed",
    ),
    "table_argument": (
        "[default]\nstrategy = 'ties'\nlambda = {a = 1}\n",
        "argument lambda: only a per-model argument takes a table",
    ),
    "date_argument": ("[default]\nstrategy = 'ties'\nk = 1979-05-27\n", "must be a number, a string or a list of them"),
    "huge_strategy_name": ("[default]\nstrategy = '" + "x" * 100_000 + "'\n", "strategy of 100000 characters"),
    "many_rules": (
        "".join(f"[[rule]]\nparams = 'p{i}.*'\nstrategy = 'average'\n" for i in range(20_000)),
        "more than the 256 allowed",
    ),
    "long_pattern": (
        "[[rule]]\nparams = '" + "*a" * 5000 + "'\nstrategy = 'average'\n",
        "params pattern of 10000 characters",
    ),
    "too_large": (_DEFAULT + "# " + "x" * (2 << 20) + "\n", "larger than the 1048576 bytes"),
    "not_utf8": (None, "not UTF-8 text"),
}


def _conflicting_branches(repo: Path) -> bytes:
    """main and `other` changed tensor w differently; returns main's committed checkpoint bytes."""
    model = repo / "model.safetensors"
    save_file({"w": np.arange(8, dtype=np.float32)}, model)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    save_file({"w": np.arange(8, dtype=np.float32) * 3}, model)
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    save_file({"w": np.arange(8, dtype=np.float32) + 1}, model)
    git(repo, "commit", "-q", "-am", "ours")
    return model.read_bytes()


@pytest.mark.parametrize("case", sorted(HOSTILE_POLICIES))
def test_a_hostile_policy_file_stops_the_merge_with_one_line(repo: Path, case: str) -> None:
    ours = _conflicting_branches(repo)
    text, message = HOSTILE_POLICIES[case]
    (repo / ".thetamerge.toml").write_bytes(text.encode() if text is not None else b"[default]\nstrategy = '\xff'\n")
    git(repo, "add", ".thetamerge.toml")
    git(repo, "commit", "-q", "-m", "a collaborator's policy")
    # setsid: no terminal to ask on, as in CI
    result = run_bounded(["setsid", "git", "merge", "other", "-m", "merge"], cwd=repo, max_rss_mb=400, max_seconds=120)
    line = assert_refused(result, ".thetamerge.toml", exit_code=1)
    assert message in line and len(line) < 400, line
    assert (repo / "model.safetensors").read_bytes() == ours
    git(repo, "merge", "--abort")
    assert git(repo, "status", "--porcelain").stdout == ""
