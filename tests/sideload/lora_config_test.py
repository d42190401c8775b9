"""A LoRA adapter config's meaning: each module's scale as PEFT computes it, and the options refused by name.

Against PEFT's real merge: tests/sideload/peft_merge_test.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from git_theta.errors import ThetaError
from git_theta.sideload import lora_config
from git_theta.updates.base import AdapterConfig

WHERE = Path("adapter/adapter_config.json")
MODULE = "bert.encoder.layer.1.attention.self.query"


def _config(**values: Any) -> AdapterConfig:
    return AdapterConfig(WHERE, values)


@pytest.mark.parametrize(
    ("values", "rank", "scale"),
    [
        ({}, 4, 1.0),  # no config: alpha = r
        ({"r": 4, "lora_alpha": 8}, 4, 2.0),
        ({"r": 4, "lora_alpha": 8, "use_rslora": True}, 4, 8 / math.sqrt(4)),
        ({"r": 3, "lora_alpha": 8, "use_rslora": True}, 3, 8 / math.sqrt(3)),
        # the first matching key in the file's order wins; a key matches a whole trailing part of the name
        ({"r": 4, "lora_alpha": 8, "alpha_pattern": {"query": 2, "self.query": 6}}, 4, 0.5),
        ({"r": 4, "lora_alpha": 8, "alpha_pattern": {"self.query": 6, "query": 2}}, 4, 1.5),
        ({"r": 4, "lora_alpha": 8, "alpha_pattern": {"uery": 2}}, 4, 2.0),  # not at a dot: no match
        ({"r": 4, "lora_alpha": 8, "alpha_pattern": {r"layer\.[01]\..*query": 12}}, 4, 3.0),  # a regular expression
        ({"r": 4, "lora_alpha": 8, "alpha_pattern": {"layer.0": 12}}, 4, 2.0),  # matches the end only
        ({"r": 4, "lora_alpha": 8, "rank_pattern": {"layer.1.attention.self.query": 2}}, 2, 4.0),
        ({"r": 4, "lora_alpha": 8, "rank_pattern": {"value": 2}}, 4, 2.0),
    ],
)
def test_module_scale_follows_peft(values: dict[str, Any], rank: int, scale: float) -> None:
    assert lora_config.module_scale(_config(**values), MODULE, None, rank) == scale


def test_the_lora_alpha_option_replaces_every_alpha() -> None:
    config = _config(r=4, lora_alpha=8, alpha_pattern={"query": 2})
    assert lora_config.module_scale(config, MODULE, 12.0, 4) == 3.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"r": 8}, "the factors have rank 4, but adapter/adapter_config.json gives r = 8"),
        ({"r": 4, "rank_pattern": {"query": 2}}, "gives rank_pattern['query'] = 2"),
        ({"r": True}, "gives r = True"),
        ({"lora_alpha": float("nan")}, "lora_alpha must be a finite number"),
        ({"alpha_pattern": {"query": "big"}}, "alpha_pattern['query'] must be a finite number"),
        ({"alpha_pattern": ["query"]}, "alpha_pattern must be a JSON object"),
        ({"alpha_pattern": {"(": 1}}, "is not a regular expression"),
        ({"alpha_pattern": {"(a+)+b": 1}}, "nests quantifiers"),
        ({"rank_pattern": {"q" * 300: 1}}, "longer than 256 characters"),
    ],
)
def test_a_bad_value_is_refused_naming_it(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ThetaError) as raised:
        lora_config.module_scale(_config(**values), MODULE, None, 4)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"lora_bias": True}, "lora_bias"),
        ({"layer_replication": [[0, 2]]}, "layer_replication"),
        ({"trainable_token_indices": [1, 2]}, "trainable_token_indices"),
        ({"bias": "all"}, "bias 'all'"),
        ({"init_lora_weights": "pissa_niter_4"}, "init_lora_weights 'pissa_niter_4'"),
        ({"peft_type": "IA3"}, "peft_type is 'IA3'"),
    ],
)
def test_options_of_another_merge_are_refused_by_name(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ThetaError) as raised:
        lora_config.refuse_unsupported(_config(**values))
    assert str(WHERE) in str(raised.value) and named in str(raised.value)


def test_defaults_as_peft_writes_them_are_accepted() -> None:
    lora_config.refuse_unsupported(
        _config(
            peft_type="LORA",
            use_dora=False,
            lora_bias=False,
            layer_replication=None,
            bias="none",
            init_lora_weights=True,
            rank_pattern={},
            alpha_pattern={},
            loftq_config={},
        )
    )
    lora_config.refuse_unsupported(_config(init_lora_weights="gaussian"))


def test_dora_needs_both_the_magnitude_vector_and_use_dora() -> None:
    assert lora_config.uses_dora(_config(use_dora=True), True)
    assert not lora_config.uses_dora(_config(use_dora=False), False)
    assert lora_config.uses_dora(AdapterConfig(), True)  # no config: the vector says it
    for values, has, message in [
        ({"use_dora": False}, True, "does not set use_dora"),
        ({"use_dora": True}, False, "sets use_dora"),
        ({"use_dora": True, "fan_in_fan_out": True}, True, "use_dora with fan_in_fan_out"),
    ]:
        with pytest.raises(ThetaError) as raised:
            lora_config.uses_dora(_config(**values), has)
        assert message in str(raised.value) and str(WHERE) in str(raised.value)
