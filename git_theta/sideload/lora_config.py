"""What a PEFT LoRA adapter_config.json says about merging it: each module's scale, and the options refused.

PEFT gives each module (LoraModel._create_and_replace, LoraLayer.update_layer):

    r     = rank_pattern[key]  if a key matches, else r
    alpha = alpha_pattern[key] if a key matches, else lora_alpha
    scale = alpha / r           (alpha / math.sqrt(r) with use_rslora)

where a pattern key matches the module's name (its path in the model, e.g. `bert.encoder.layer.0.attention.self.query`)
when `re.match(rf"(.*\\.)?({key})$", module)` does, the first such key in the file's order winning
(peft.utils.other.get_pattern_key). The rank is the factors' own (A is (r, in)); the config's r is checked against it.

Options whose value changes what PEFT's merge_and_unload() computes, or the base it applies to, and that this module
does not reproduce are refused by name: a merge that ignored them would commit a model nobody trained.
"""

from __future__ import annotations

import math
import re
from typing import Any

from git_theta.errors import ThetaError
from git_theta.updates.base import AdapterConfig

# option -> what it is; refused when set to anything but PEFT's default (None, False, an empty list or mapping).
UNSUPPORTED = {
    "lora_bias": "trained LoRA biases",
    "layer_replication": "replicated layers",
    "target_parameters": "LoRA on bare parameters",
    "trainable_token_indices": "trainable tokens",
    "alora_invocation_tokens": "activated LoRA",
    "arrow_config": "Arrow routing",
    "use_bdlora": "block-diagonal LoRA",
    "use_qalora": "quantization-aware LoRA",
    "velora_config": "VeLoRA",
    "monteclora_config": "MonteCLoRA",
    "kasa_config": "KaSA",
}
# These initialisations rewrite the base weights when the adapter is made, so the adapter only fits that rewritten
# base, unless PEFT converted it at save time (save_pretrained(path_initial_model_for_weight_conversion=...), which
# records init_lora_weights as true).
BASE_CHANGING_INITS = ("pissa", "corda", "olora", "loftq", "lora_ga")
# A pattern key is a regular expression from someone else's file: bounded, and no quantified group holding a
# quantifier (the shape of catastrophic backtracking, e.g. `(a+)+`).
MAX_PATTERN_KEYS = 10_000
MAX_PATTERN_CHARS = 256
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)\s*[+*{]")


def refuse_unsupported(adapter: AdapterConfig) -> None:
    """A one-line ThetaError naming the config and the first option of a LoRA merge this module does not make."""
    values, where = adapter.values, adapter.path
    peft_type = values.get("peft_type", "LORA")
    if peft_type != "LORA":
        raise ThetaError(f"{where}: peft_type is {str(peft_type)[:40]!r}: a low-rank update takes a LORA adapter")
    for option in sorted(UNSUPPORTED):
        if values.get(option) not in (None, False, [], {}):
            raise ThetaError(
                f"{where}: {option} ({UNSUPPORTED[option]}) is not supported by --update-type low-rank; merge the "
                "adapter with PEFT's merge_and_unload() and add the merged checkpoint instead"
            )
    if values.get("bias", "none") != "none":
        raise ThetaError(f"{where}: bias {str(values['bias'])[:20]!r} (trained biases) is not supported; use 'none'")
    init = values.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        raise ThetaError(
            f"{where}: init_lora_weights {init[:20]!r} rewrote the base weights when the adapter was made; save it "
            "with PEFT's path_initial_model_for_weight_conversion to get an adapter for the original base"
        )
    for name in ("rank_pattern", "alpha_pattern"):
        _patterns(adapter, name)


def uses_dora(adapter: AdapterConfig, has_magnitude: bool) -> bool:
    """True when the module's update is DoRA: it has a magnitude vector, and the config (if any) says use_dora."""
    if adapter.path is not None and (adapter.values.get("use_dora") is True) != has_magnitude:
        if has_magnitude:
            raise ThetaError(f"a DoRA magnitude vector, but {adapter.path} does not set use_dora")
        raise ThetaError(f"no lora_magnitude_vector entry, but {adapter.path} sets use_dora")
    if has_magnitude and fan_in_fan_out(adapter):
        raise ThetaError(f"{adapter.path}: use_dora with fan_in_fan_out (DoRA on (in, out) weights) is not supported")
    return has_magnitude


def fan_in_fan_out(adapter: AdapterConfig) -> bool:
    """True for layers that store their weight as (in, out) (GPT-2's Conv1D): PEFT adds (B @ A) transposed."""
    return adapter.values.get("fan_in_fan_out") is True


def module_scale(adapter: AdapterConfig, module: str, alpha_option: float | None, rank: int) -> float:
    """PEFT's scale for `module` with factors of rank `rank`; --lora-alpha (`alpha_option`) replaces every alpha.

    Without a config: alpha defaults to r (scale 1)."""
    values, where = adapter.values, adapter.path
    rank_key = _matching_key(adapter, "rank_pattern", module)
    expected = _patterns(adapter, "rank_pattern")[rank_key] if rank_key is not None else values.get("r")
    if expected is not None and (isinstance(expected, bool) or expected != rank):
        source = f"rank_pattern[{rank_key!r}]" if rank_key is not None else "r"
        raise ThetaError(f"the factors have rank {rank}, but {where} gives {source} = {str(expected)[:20]}")
    if alpha_option is not None:
        alpha: Any = alpha_option
        source = "--lora-alpha"
    else:
        alpha_key = _matching_key(adapter, "alpha_pattern", module)
        if alpha_key is not None:
            alpha, source = _patterns(adapter, "alpha_pattern")[alpha_key], f"{where}: alpha_pattern[{alpha_key!r}]"
        else:
            alpha, source = values.get("lora_alpha", rank), f"{where}: lora_alpha"
    # A NaN or infinite scale would commit a checkpoint of NaNs "exactly"; a bool is not a number here.
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ThetaError(f"{source} must be a finite number, not {str(alpha)[:40]!r}")
    if values.get("use_rslora") is True:
        return float(alpha / math.sqrt(rank))
    return float(alpha / rank)


def _matching_key(adapter: AdapterConfig, name: str, module: str) -> str | None:
    """The first key of pattern `name` matching `module` as PEFT matches it, or None."""
    for key in _patterns(adapter, name):
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


def _patterns(adapter: AdapterConfig, name: str) -> dict[str, Any]:
    """The pattern mapping `name` of the config ({} when absent), each key a regular expression safe to run."""
    patterns = adapter.values.get(name) or {}
    where = adapter.path
    if not isinstance(patterns, dict):
        raise ThetaError(f"{where}: {name} must be a JSON object of module patterns, not a {type(patterns).__name__}")
    if len(patterns) > MAX_PATTERN_KEYS:
        raise ThetaError(f"{where}: {name} has {len(patterns)} keys, more than the {MAX_PATTERN_KEYS} allowed")
    for key in patterns:
        if len(key) > MAX_PATTERN_CHARS or _NESTED_QUANTIFIER.search(key):
            raise ThetaError(
                f"{where}: {name} key {key[:40]!r} is longer than {MAX_PATTERN_CHARS} characters or nests quantifiers"
            )
        try:
            re.compile(key)
        except re.error as error:
            raise ThetaError(f"{where}: {name} key {key[:40]!r} is not a regular expression: {error}") from None
    return patterns
