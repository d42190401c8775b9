"""Side-loaded PEFT adapters, made and saved by PEFT itself, against PEFT's own merge_and_unload().

Small real architectures (a BERT classifier, a GPT-2) with random weights are made here; each adapter is saved
with PEFT's save_pretrained, side-loaded in one `git theta add --update-type low-rank` (ia3 for IA3), and the
staged checkpoint is compared with what merge_and_unload() gives: saved modules (modules_to_save) bit for bit,
merged weights within the rounding docs/updates.md states, every other tensor untouched. A checkout then rebuilds
the staged bytes exactly.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import git
from hostile_support import RepoState, assert_refused, run_bounded
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
from update_helpers import chain, staged

# docs/updates.md: a LoRA-merged float32 entry is within this of PEFT's (its matmul sums in another order).
RELATIVE_TOLERANCE = 1e-6


def _bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=3,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # transformers starts biases at 0, which would hide IA3's scaling of them
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0, 0.1)
    return model


def _gpt2() -> torch.nn.Module:
    torch.manual_seed(1)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()


CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    # A classification head trained whole beside LoRA on attention: PEFT's usual sequence-classification set-up.
    "modules_to_save": (
        _bert,
        {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"], "modules_to_save": ["classifier"]},
    ),
    # rsLoRA's alpha / sqrt(r), per-module ranks and alphas (a plain suffix, a regular expression, first key wins).
    "rslora_rank_and_alpha_patterns": (
        _bert,
        {
            "r": 4,
            "lora_alpha": 8,
            "use_rslora": True,
            "target_modules": ["query", "value", "dense"],
            "rank_pattern": {"layer.1.attention.self.query": 2, r"layer\.0\..*output\.dense": 3},
            "alpha_pattern": {"value": 3, r"encoder\.layer\.\d\.intermediate\.dense": 5, "dense": 6},
        },
    ),
    # DoRA: a magnitude vector per module, with rsLoRA's scale; the head saved whole beside it.
    "dora": (
        _bert,
        {
            "r": 2,
            "lora_alpha": 6,
            "use_dora": True,
            "use_rslora": True,
            "target_modules": ["query", "value", "intermediate.dense"],
            "modules_to_save": ["classifier"],
        },
    ),
    # IA3 (PEFT's IA3Config, `--update-type ia3`): attention outputs scaled (their biases too), a feed-forward layer's
    # inputs scaled, the head saved whole.
    "ia3_modules_to_save": (
        _bert,
        {
            "peft_type": "IA3",
            "target_modules": ["key", "value", "output.dense"],
            "feedforward_modules": ["output.dense"],
            "modules_to_save": ["classifier"],
        },
    ),
    # GPT-2's Conv1D keeps weights as (in, out): PEFT adds (B @ A) transposed (c_proj is square, c_attn is not).
    "fan_in_fan_out": (
        _gpt2,
        {"r": 2, "lora_alpha": 4, "target_modules": ["c_attn", "c_proj"], "fan_in_fan_out": True},
    ),
}


def _adapter(base: torch.nn.Module, options: dict[str, Any], folder: Path) -> dict[str, torch.Tensor]:
    """Save a PEFT adapter of `base` (random factors, saved modules changed); PEFT's merge of the saved adapter.

    The reference is the adapter PEFT loads back from `folder`, the files git-theta reads: save_pretrained writes the
    config's keys sorted, so where two pattern keys match one module the model before saving may have used the
    other one (the "first key wins" rule runs over the file's order once loaded)."""
    if options.get("peft_type") == "IA3":
        config: Any = IA3Config(**{k: v for k, v in options.items() if k != "peft_type"})
    else:
        config = LoraConfig(init_lora_weights=False, **options)
    model = get_peft_model(copy.deepcopy(base), config)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modules_to_save" in name:  # a trained head: anything but the base's values
                param.add_(torch.randn(param.shape, generator=generator))
            if "ia3_l" in name:  # trained scales: PEFT starts them at 1
                param.uniform_(0.5, 1.5, generator=generator)
    model.save_pretrained(str(folder))
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), str(folder))
    return {name: t.detach().clone() for name, t in loaded.merge_and_unload().state_dict().items()}


def _ulp_close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return bool(((got - want).abs() <= RELATIVE_TOLERANCE * want.abs().clamp(min=1.0)).all())


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_peft_adapter_side_loads_to_peft_merge(repo: Path, tmp_path: Path, case: str) -> None:
    make, options = CASES[case]
    update_type = "ia3" if options.get("peft_type") == "IA3" else "low-rank"
    base = make()
    base.save_pretrained(str(tmp_path / "base"), safe_serialization=True)
    shutil.copy(tmp_path / "base" / "model.safetensors", repo / "model.safetensors")
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "base")
    before = load_file(str(repo / "model.safetensors"))
    merged = _adapter(base, options, tmp_path / "adapter")

    result = run_bounded(
        [
            "git-theta",
            "add",
            "model.safetensors",
            "--update-type",
            update_type,
            "--update-data",
            str(tmp_path / "adapter" / "adapter_model.safetensors"),
        ],
        cwd=repo,
    )
    assert result.returncode == 0, result.describe()
    got = load_file(str(repo / "model.safetensors"))
    assert sorted(got) == sorted(before)
    saved = {n for n in got if n.startswith("classifier.")} if "modules_to_save" in options else set()
    lora = {n for n in got if not torch.equal(merged[n], before[n])} - saved
    assert lora and all(n.endswith(".weight") or update_type == "ia3" for n in lora)  # the adapter changed weights
    assert f"{len(lora)} parameter(s) updated" in result.stdout
    params = staged(repo)
    assert {chain(params, n)[-1] for n in lora} == {"dora" if options.get("use_dora") else update_type}
    for name, tensor in got.items():
        if name in saved:
            assert torch.equal(tensor, merged[name]) and not torch.equal(tensor, before[name]), name
        elif name in lora:
            assert _ulp_close(tensor, merged[name]), (name, (tensor - merged[name]).abs().max())
        else:
            assert torch.equal(tensor, before[name]), name

    written = (repo / "model.safetensors").read_bytes()
    git(repo, "commit", "-q", "-m", "adapter merged")
    (repo / "model.safetensors").unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == written


def _saved_bert_adapter(repo: Path, tmp_path: Path, **options: Any) -> Path:
    base = _bert()
    base.save_pretrained(str(tmp_path / "base"), safe_serialization=True)
    shutil.copy(tmp_path / "base" / "model.safetensors", repo / "model.safetensors")
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "base")
    _adapter(base, {"r": 2, "lora_alpha": 4, "target_modules": ["query"], **options}, tmp_path / "adapter")
    return tmp_path / "adapter" / "adapter_model.safetensors"


def _refused(repo: Path, update: Path, names: list[str]) -> str:
    state = RepoState.capture(repo)
    result = run_bounded(
        ["git-theta", "add", "model.safetensors", "--update-type", "low-rank", "--update-data", str(update)], cwd=repo
    )
    line = assert_refused(result, [str(update), *names])
    state.assert_unchanged(repo)
    return line


def test_an_adapter_with_trained_lora_biases_is_refused_naming_the_option(repo: Path, tmp_path: Path) -> None:
    update = _saved_bert_adapter(repo, tmp_path, lora_bias=True)
    _refused(repo, update, [str(update.parent / "adapter_config.json"), "lora_bias"])


def test_dora_magnitudes_without_use_dora_in_the_config_are_refused(repo: Path, tmp_path: Path) -> None:
    update = _saved_bert_adapter(repo, tmp_path, use_dora=True)
    config_path = update.parent / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "use_dora": False}))
    line = _refused(repo, update, [str(config_path), "query.weight"])
    assert "does not set use_dora" in line


def test_a_saved_module_without_modules_to_save_in_the_config_is_refused(repo: Path, tmp_path: Path) -> None:
    """The same file with its config's modules_to_save removed: the classifier entries are no LoRA entries."""
    update = _saved_bert_adapter(repo, tmp_path, modules_to_save=["classifier"])
    config_path = update.parent / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["modules_to_save"] = None
    config_path.write_text(json.dumps(config))
    line = _refused(repo, update, ["base_model.model.classifier.bias", "modules_to_save"])
    assert "is not a low-rank entry" in line


def test_a_rank_pattern_that_does_not_fit_the_factors_is_refused(repo: Path, tmp_path: Path) -> None:
    """PEFT could not load this adapter (its layers would be made with rank 3): neither does git-theta merge it."""
    update = _saved_bert_adapter(repo, tmp_path)
    config_path = update.parent / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["rank_pattern"] = {"layer.1.attention.self.query": 3}
    config_path.write_text(json.dumps(config))
    line = _refused(repo, update, ["'bert.encoder.layer.1.attention.self.query.weight'", "rank_pattern"])
    assert "the factors have rank 2" in line
