"""PyTorch checkpoints through real git: add, commit, checkout; tensors, order, types and ties come back exactly."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import git

from git_theta.checkpoints.pytorch import PytorchFormat
from git_theta.errors import CheckpointError

ALL_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]


def _bits(dtype: torch.dtype, values: list[int]) -> torch.Tensor:
    """A tensor of `dtype` holding exactly these bit patterns (NaN payloads, -0.0, ...)."""
    size = torch.empty(0, dtype=dtype).element_size()
    carrier = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]
    signed = [v - (1 << (8 * size)) if v >= 1 << (8 * size - 1) else v for v in values]
    return torch.tensor(signed, dtype=carrier).view(dtype)


def _checkpoint(version: int) -> dict[str, Any]:
    """A training-style checkpoint: nested dicts, lists, tuples, odd values, ties, views, every dtype."""
    generator = torch.Generator().manual_seed(version)
    embed = torch.randn(8, 4, generator=generator).to(torch.bfloat16)
    weight = torch.randn(4, 6, generator=generator)
    model = OrderedDict()
    model["z_last.weight"] = weight  # keys deliberately not sorted
    model["embed.weight"] = embed
    model["lm_head.weight"] = embed.detach()  # tied: another tensor object on the same storage
    model["a.bias"] = _bits(torch.float32, [0x80000000, 0x7FC00001, 0xFFC12345, version])  # -0.0, NaN payloads
    model["half"] = _bits(torch.float16, [0x8000, 0x7E01, version])
    model["bf16.nan"] = _bits(torch.bfloat16, [0x7FC1, 0xFF81, 0x8000])
    model["weight_t"] = weight.t()  # non-contiguous view of z_last.weight
    model["row_slice"] = weight[1:3]  # offset view
    for dtype in ALL_DTYPES:
        model[f"dtypes.{str(dtype)[6:]}"] = (torch.arange(6) + version).reshape(2, 3).to(dtype)
    model["scalar"] = torch.tensor(3.5 + version)
    model["empty"] = torch.zeros(0, 3)
    model["strided_only"] = torch.arange(10, dtype=torch.int32)[::3]  # a view whose storage is larger than it
    optimizer = {
        "state": {0: {"step": torch.tensor(float(version)), "exp_avg": torch.randn(4, generator=generator)}},
        "param_groups": [
            {"lr": 1e-3 * version, "betas": (0.9, 0.999), "amsgrad": False, "params": [0], "foreach": None}
        ],
    }
    return {
        "model": model,
        "optimizer": optimizer,
        "epoch": version,
        "name": f"run-{version}",
        "losses": [float("nan"), -0.0, float("inf"), 0.1],
        "shape": torch.Size([2, 3]),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
        "blob": b"\x00\x01",
        "dotted.key": {"a.b": torch.ones(2)},
        "param": torch.nn.Parameter(torch.ones(3) * version),
    }


def _raw(tensor: torch.Tensor) -> bytes:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_same(expected: Any, actual: Any, where: str = "root") -> None:
    """Deep equality: types, key order, tensor dtype/shape/stride/offset and raw bytes."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, torch.Tensor):
        assert (actual.dtype, actual.shape, actual.stride(), actual.storage_offset()) == (
            expected.dtype,
            expected.shape,
            expected.stride(),
            expected.storage_offset(),
        ), where
        assert actual.requires_grad == expected.requires_grad, where
        assert _raw(actual) == _raw(expected), f"{where}: tensor bytes differ"
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys or their order differ"
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (e, a) in enumerate(zip(expected, actual)):
            assert_same(e, a, f"{where}.{index}")
    elif isinstance(expected, float):
        assert repr(actual) == repr(expected), where  # -0.0, nan and inf compare by repr
    else:
        assert actual == expected, where


def _load(path: Path) -> Any:
    return torch.load(path, weights_only=True, map_location="cpu")


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


def _line(metadata: str, name: str) -> str:
    return next(line for line in metadata.splitlines() if line.startswith(f'"{name}":'))


def test_three_versions_round_trip(repo: Path) -> None:
    """model.pt in the zip layout, old.pth in the legacy (pre-1.6) pickle layout; one git command handles both."""
    commits, originals = [], []
    for version in (1, 2, 3):
        torch.save(_checkpoint(version), repo / "model.pt")
        legacy = OrderedDict(b=torch.randn(3, dtype=torch.float64) * version, a=torch.tensor([True, False]), n=version)
        torch.save(legacy, repo / "old.pth", _use_new_zipfile_serialization=False)
        originals.append((_load(repo / "model.pt"), legacy))
        git(repo, "add", "model.pt", "old.pth")
        git(repo, "commit", "-q", "-m", f"v{version}")
        commits.append(git(repo, "rev-parse", "HEAD").stdout.strip())
    metadata = [git(repo, "show", f"{commit}:model.pt").stdout for commit in commits]
    assert metadata[0].startswith('{"version":"git-theta/2",\n"format":"pytorch"')
    for name in (
        '"model.embed.weight":',
        '"optimizer.state.0.exp_avg":',
        '"dotted.key.a.b":',
        '"model.strided_only@storage":',
    ):
        assert name in metadata[0]
    # Tied and view tensors are not stored again: they point into their storage's group.
    assert '"model.lm_head.weight":' not in metadata[0] and '"storage":"model.embed.weight"' in metadata[0]
    # An unchanged tensor keeps its entry (and object); a changed one gets a new one.
    assert _line(metadata[0], "model.empty") == _line(metadata[2], "model.empty")
    assert _line(metadata[0], "model.embed.weight") != _line(metadata[1], "model.embed.weight")
    assert '"serialization":"legacy"' in git(repo, "show", f"{commits[0]}:old.pth").stdout
    for commit, (original, legacy) in zip(commits, originals):
        (repo / "model.pt").unlink()
        (repo / "old.pth").unlink()
        git(repo, "checkout", "-q", "--force", commit)
        assert (repo / "old.pth").read_bytes()[:2] == b"\x80\x02"  # still the legacy pickle layout
        assert_same(legacy, _load(repo / "old.pth"))
        rebuilt = _load(repo / "model.pt")
        assert_same(original, rebuilt)
        model = rebuilt["model"]
        assert _shares_storage(model["embed.weight"], model["lm_head.weight"])
        assert _shares_storage(model["z_last.weight"], model["weight_t"])
        assert _shares_storage(model["z_last.weight"], model["row_slice"])
        assert isinstance(rebuilt["param"], torch.nn.Parameter) and rebuilt["param"].requires_grad
        assert git(repo, "status", "--porcelain").stdout == ""
        if commit == commits[0]:
            # Make git clean the rebuilt file again (once: each clean pays for importing torch).
            os.utime(repo / "model.pt", (1, 1))
            os.utime(repo / "old.pth", (1, 1))
            assert git(repo, "status", "--porcelain").stdout == ""
            assert git(repo, "diff", "--stat").stdout == ""


def _index(repo: Path) -> str:
    return git(repo, "ls-files", "-s").stdout


def test_corrupt_file_fails_add(repo: Path) -> None:
    torch.save({"w": torch.randn(100)}, repo / "model.pt")
    good = (repo / "model.pt").read_bytes()
    git(repo, "add", "model.pt")
    before = _index(repo)
    for broken in (good[: len(good) // 2], good[:-30] + b"\xff" * 30):
        (repo / "model.pt").write_bytes(broken)
        result = git(repo, "add", "model.pt", check=False)
        assert result.returncode != 0
        assert "model.pt" in result.stderr and "torch.load failed" in result.stderr
        assert _index(repo) == before


class Custom:
    pass


def test_weights_only_refusal_is_reported(repo: Path) -> None:
    before = _index(repo)
    torch.save({"w": torch.ones(2), "evil": Custom()}, repo / "model.pt")
    result = git(repo, "add", "model.pt", check=False)
    assert result.returncode != 0
    assert "model.pt" in result.stderr and "weights_only=True" in result.stderr and "Custom" in result.stderr
    assert _index(repo) == before


def test_bin_holding_safetensors_is_detected_by_content(repo: Path) -> None:
    from safetensors.torch import save

    data = save({"w": torch.randn(3, 2).to(torch.bfloat16)})
    (repo / "pytorch_model.bin").write_bytes(data)
    git(repo, "add", "pytorch_model.bin")
    git(repo, "commit", "-q", "-m", "bin")
    assert '"format":"safetensors"' in git(repo, "show", "HEAD:pytorch_model.bin").stdout
    (repo / "pytorch_model.bin").unlink()
    git(repo, "checkout", "--", "pytorch_model.bin")
    assert (repo / "pytorch_model.bin").read_bytes() == data


def test_sniff() -> None:
    buffer = io.BytesIO()
    torch.save({"a": torch.ones(1)}, buffer)
    assert PytorchFormat.sniff(buffer.getvalue()[:4096], "x.bin")
    legacy = io.BytesIO()
    torch.save({"a": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    assert PytorchFormat.sniff(legacy.getvalue()[:4096], "x.bin")
    assert not PytorchFormat.sniff(b"PK\x03\x04" + b"\x00" * 22 + b"\x05\x00\x00\x00x.npy", "x.npz")
    assert not PytorchFormat.sniff(b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "x.bin")


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, git_theta.checkpoints.pytorch, git_theta.plugins as p; p.load_group('git_theta.checkpoints'); "
        "print('torch' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_missing_torch_is_a_clear_error(tmp_path: Path) -> None:
    code = (
        "import io, sys\n"
        "sys.modules['torch'] = None\n"
        "from git_theta.checkpoints.pytorch import PytorchFormat\n"
        "from git_theta.errors import CheckpointError\n"
        "try:\n"
        "    PytorchFormat().read(io.BytesIO(b''), 'm.pt', None)\n"
        "except CheckpointError as error:\n"
        "    print(error)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install git-theta[torch]" in output


def test_unsupported_tensor_kinds_are_refused() -> None:
    buffer = io.BytesIO()
    torch.save({"sparse": torch.eye(3).to_sparse()}, buffer)
    buffer.seek(0)
    with pytest.raises(CheckpointError, match="sparse: only dense CPU tensors"):
        PytorchFormat().read(buffer, "m.pt", None)  # type: ignore[arg-type]


def test_a_malformed_committed_structure_tree_fails_checkout_with_one_line(repo: Path) -> None:
    # Committed metadata is untrusted: a structure node that describes no value must not surface as a TypeError.
    from hostile_support import assert_refused, run_bounded

    torch.save({"w": torch.zeros(3)}, repo / "old.pth", _use_new_zipfile_serialization=False)
    git(repo, "add", "old.pth")
    meta = git(repo, "show", ":old.pth").stdout
    assert '"structure":{"dict":' in meta
    hostile = meta.replace('"structure":{"dict":', '"structure":{"list":5,"x":', 1)
    blob = git(repo, "hash-object", "-w", "--stdin", input=hostile.encode()).stdout.strip()
    git(repo, "update-index", "--cacheinfo", f"100644,{blob},old.pth")
    git(repo, "commit", "-q", "-m", "hostile structure")
    (repo / "old.pth").unlink()
    result = run_bounded(["git", "checkout", "--", "old.pth"], cwd=repo)
    line = assert_refused(result, "old.pth")  # the line itself names the file
    assert "old.pth" in result.stderr and "structure tree" in line and "TypeError" not in line
