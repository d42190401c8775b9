"""low-rank (LoRA) updates: PEFT's formula, deterministic bits, side-loading with PEFT names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import git, theta
from update_helpers import NUMPY, chain, checkout_bytes, commit, load, save, staged, weights

from git_theta import objects
from git_theta.errors import StoreError
from git_theta.tensor import Tensor
from git_theta.updates import low_rank


def test_apply_matches_peft_merge_formula() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.02, (24, 16)).astype(np.float32)
    a, b = rng.normal(0, 0.1, (4, 16)).astype(np.float32), rng.normal(0, 0.1, (24, 4)).astype(np.float32)
    base = Tensor.from_numpy(w)
    out = low_rank.LowRankUpdate().apply(
        low_rank.make_bundle(base, Tensor.from_numpy(a), Tensor.from_numpy(b), 16 / 4), base
    )
    reference = torch.from_numpy(w) + (torch.from_numpy(b) @ torch.from_numpy(a)) * (16 / 4)  # PEFT's merge
    np.testing.assert_allclose(out.numpy(), reference.numpy(), rtol=0, atol=1e-6)
    again = low_rank.LowRankUpdate().apply(
        low_rank.make_bundle(base, Tensor.from_numpy(a), Tensor.from_numpy(b), 4.0), base
    )
    assert bytes(again.data) == bytes(out.data)


def test_factors_that_do_not_fit_are_rejected() -> None:
    base = Tensor.from_numpy(np.zeros((8, 6), np.float32))
    a, b = Tensor.from_numpy(np.zeros((2, 8), np.float32)), Tensor.from_numpy(np.zeros((8, 2), np.float32))
    with pytest.raises(StoreError, match=r"expected A \(r, 6\) and B \(8, r\)"):
        low_rank.make_bundle(base, a, b, 1.0)


def _peft_adapter(
    rng: np.random.Generator, shapes: dict[str, tuple[int, int]], rank: int, dtype: str = "F32"
) -> dict[str, np.ndarray]:
    found = {}
    for module, (out_features, in_features) in shapes.items():
        found[f"base_model.model.{module}.lora_A.weight"] = (
            rng.normal(0, 0.1, (rank, in_features)).astype(np.float32).astype(NUMPY[dtype])
        )
        found[f"base_model.model.{module}.lora_B.weight"] = (
            rng.normal(0, 0.1, (out_features, rank)).astype(np.float32).astype(NUMPY[dtype])
        )
    return found


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
def test_peft_adapter_round_trips_through_commit_and_checkout(repo: Path, tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(1)
    model = weights(rng, dtype, {"q.weight": (32, 16), "q.bias": (32,), "o.weight": (16, 32)})
    save(repo / "model.safetensors", model)
    commit(repo, "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    save(adapter / "adapter_model.safetensors", _peft_adapter(rng, {"q": (32, 16), "o": (16, 32)}, 4, "F32"))
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "peft_type": "LORA"}))
    theta(
        repo,
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--update-data",
        str(adapter / "adapter_model.safetensors"),
    )
    params = staged(repo)
    assert chain(params, "q.weight") == ["dense", "low-rank"] and chain(params, "o.weight") == ["dense", "low-rank"]
    assert chain(params, "q.bias") == ["dense"]
    assert git(repo, "diff", "--name-only").stdout == ""  # the working tree equals what is staged
    written = (repo / "model.safetensors").read_bytes()
    a, b = (load(adapter / "adapter_model.safetensors")[f"base_model.model.q.lora_{x}.weight"] for x in "AB")
    expected = model["q.weight"].astype(np.float32) + 2.0 * (b @ a)
    np.testing.assert_allclose(
        load(repo / "model.safetensors")["q.weight"].astype(np.float32), expected, rtol=0.01, atol=1e-3
    )
    git(repo, "commit", "-q", "-m", "lora")
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD") == written
    assert checkout_bytes(repo, "HEAD~1") != written


def test_torch_update_file_with_plain_names_and_alpha_flag(repo: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    model = weights(rng, "F32", {"fc.weight": (8, 6)})
    save(repo / "model.safetensors", model)
    commit(repo, "base")
    a, b = torch.randn(2, 6, dtype=torch.bfloat16), torch.randn(8, 2, dtype=torch.bfloat16)
    torch.save({"fc.weight.lora_A": a, "fc.weight.lora_B": b}, tmp_path / "lora.pt")
    theta(
        repo,
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--update-data",
        str(tmp_path / "lora.pt"),
        "--lora-alpha",
        "1",
    )
    expected = (torch.from_numpy(model["fc.weight"]) + 0.5 * (b.float() @ a.float())).numpy()
    np.testing.assert_allclose(load(repo / "model.safetensors")["fc.weight"], expected, atol=1e-6)
    assert chain(staged(repo), "fc.weight") == ["dense", "low-rank"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            {"nope.lora_A.weight": (2, 6), "nope.lora_B.weight": (8, 2)},
            "is for parameter 'nope.weight', which the checkpoint does not have",
        ),
        (
            {"fc.lora_A.weight": (2, 7), "fc.lora_B.weight": (8, 2)},
            r"parameter 'fc.weight' \(F32\[8, 6\]\): LoRA factors A\[2, 7\]",
        ),
        ({"fc.lora_A.weight": (2, 6)}, "parameter 'fc.weight' has no lora_B entry"),
        (
            {"idx.lora_A.weight": (2, 6), "idx.lora_B.weight": (8, 2)},
            "low-rank updates need a float parameter, not I64",
        ),
    ],
)
def test_mismatches_fail_clearly_and_stage_nothing(
    repo: Path, tmp_path: Path, entries: dict[str, tuple[int, int]], message: str
) -> None:
    save(
        repo / "model.safetensors",
        {"fc.weight": np.zeros((8, 6), np.float32), "idx.weight": np.zeros((8, 6), np.int64)},
    )
    commit(repo, "base")
    before = (repo / "model.safetensors").read_bytes()
    save(tmp_path / "lora.safetensors", {name: np.ones(shape, np.float32) for name, shape in entries.items()})
    result = theta(
        repo,
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--update-data",
        str(tmp_path / "lora.safetensors"),
        check=False,
    )
    assert result.returncode == 1
    assert "lora.safetensors" in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert (repo / "model.safetensors").read_bytes() == before
    assert git(repo, "status", "--porcelain").stdout == ""
    assert not list((repo / ".git" / "theta" / "pending").glob("*.json"))


def test_object_layout_is_locked() -> None:
    """The layout documented in docs/updates.md: lora_A (r, in), lora_B (out, r) as given, base hash and scale."""
    base = Tensor.from_numpy(np.zeros((3, 2), np.float32))
    a, b = Tensor.from_numpy(np.ones((1, 2), np.float16)), Tensor.from_numpy(np.ones((3, 1), np.float32))
    header, _ = objects.read_header(b"".join(objects.encode(low_rank.make_bundle(base, a, b, 0.5))))
    assert (header["kind"], header["fields"]) == ("low-rank", {"base": base.hash(), "scale": 0.5})
    assert [(x["name"], x["dtype"], x["shape"]) for x in header["buffers"]] == [
        ("lora_A", "F16", [1, 2]),
        ("lora_B", "F32", [3, 1]),
    ]
