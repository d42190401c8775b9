"""benchmarks/merge_bench.py: the Llama-shaped model mergekit can read, and a tiny run without mergekit."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "merge_bench.py"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("merge_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_is_a_llama_as_transformers_names_it() -> None:
    specs, config = bench_module().llama(1.0)
    shapes = dict(specs)
    hidden, mlp, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    assert (config["architectures"], config["num_hidden_layers"], hidden, mlp, vocab) == (
        ["LlamaForCausalLM"],
        7,
        1024,
        2816,
        6144,
    )
    assert config["num_attention_heads"] * 64 == hidden and not config["tie_word_embeddings"]
    # LlamaForCausalLM(config).state_dict() of transformers 5 (checked once in mergekit's venv): 66 tensors
    expected = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    expected["lm_head.weight"] = (vocab, hidden)
    for i in range(7):
        layer = f"model.layers.{i}"
        expected.update({f"{layer}.self_attn.{p}_proj.weight": (hidden, hidden) for p in "qkvo"})
        expected.update({f"{layer}.mlp.gate_proj.weight": (mlp, hidden), f"{layer}.mlp.up_proj.weight": (mlp, hidden)})
        expected[f"{layer}.mlp.down_proj.weight"] = (hidden, mlp)
        expected.update({f"{layer}.{n}_layernorm.weight": (hidden,) for n in ("input", "post_attention")})
    assert shapes == expected and len(specs) == len(shapes)
    assert 400e6 < sum(math.prod(shape) for shape in shapes.values()) * 4 < 420e6  # "~400 MB" in fp32
    small, _ = bench_module().llama(0.1)
    assert 35e6 < sum(math.prod(shape) for _, shape in small) * 4 < 50e6


def test_a_tiny_run_skips_mergekit_with_a_message(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCH), "--scale", "0.002", "--workdir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "merge_bench: mergekit runs skipped (give --mergekit PYTHON" in result.stderr
    report = json.loads(result.stdout[: result.stdout.index("\n}\n") + 2])
    assert report["tensors"] == 66 and "mergekit" not in report
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ties |") or "| model-stock |" in line]
    assert [row.split(" | ")[1] for row in rows] == ["`git theta merge`", "`git theta merge`"]
