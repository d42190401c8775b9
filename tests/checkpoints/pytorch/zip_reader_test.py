"""The torch-free zip fast path: byte-identical checkouts, no torch in the filter, fallbacks, CRC patching."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import blake3
import pytest
import torch
from conftest import git
from format_test import _checkpoint, _load, assert_same

from git_theta.checkpoints.pytorch import zip_reader
from git_theta.checkpoints.pytorch.format import _DTYPE_NAMES, PytorchFormat
from git_theta.clean import StoringSink
from git_theta.smudge import StoreSource
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor


def _saved(obj: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _files() -> dict[str, bytes]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 4, generator=generator)
    views = OrderedDict(w=weight, t=weight.t(), rows=weight[2:4], tail=torch.arange(10, dtype=torch.int32)[3:])
    return {
        "flat.pt": _saved(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).state_dict()),
        "nested.pth": _saved(_checkpoint(1)),  # ties, views, every dtype, Parameter, Size, dtype, device, odd floats
        "views.bin": _saved(views),
        "small.pt": _saved(
            {
                "b16": torch.ones(3, dtype=torch.bfloat16),
                "h": torch.ones(2, dtype=torch.float16),
                "m": torch.tensor([True, False]),
                "i": torch.arange(3),
                "raw": bytearray(b"\x00\xff"),
                "c": 1 + 2j,
                "s": {3, 1},
            }
        ),
    }


def _metadata(repo: Path, name: str) -> dict[str, Any]:
    return json.loads(git(repo, "show", f"HEAD:{name}").stdout)


def test_checkout_is_byte_identical(repo: Path) -> None:
    files = _files()
    for name, data in files.items():
        (repo / name).write_bytes(data)
    (repo / "legacy.pt").write_bytes(_saved({"a": torch.ones(3)}, _use_new_zipfile_serialization=False))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1")
    for name in files:
        assert "layout" in _metadata(repo, name)["file"], name
    legacy = _metadata(repo, "legacy.pt")["file"]
    assert legacy["serialization"] == "legacy" and "layout" not in legacy  # still through torch
    views = _metadata(repo, "views.bin")
    assert set(views["params"]) == {"w", "tail@storage"}  # a view storage nobody owns: one U8 group
    assert (views["params"]["w"]["dtype"], views["params"]["w"]["shape"]) == ("F32", [6, 4])
    for name in [*files, "legacy.pt"]:
        (repo / name).unlink()
    git(repo, "checkout", "--", ".")
    for name, data in files.items():
        assert (repo / name).read_bytes() == data, name
    assert_same(_checkpoint(1), _load(repo / "nested.pth"))
    for name in files:
        os.utime(repo / name, (1, 1))  # make git clean them again: the metadata must not change
    assert git(repo, "status", "--porcelain").stdout == ""


def test_filter_never_imports_torch_on_the_fast_path(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch must not be imported on the zip fast path')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    data = _files()["nested.pth"]
    (repo / "model.pt").write_bytes(data)
    git(repo, "add", "model.pt")
    git(repo, "commit", "-q", "-m", "v1")
    (repo / "model.pt").unlink()
    git(repo, "checkout", "--", "model.pt")
    assert (repo / "model.pt").read_bytes() == data
    # The same environment does stop the torch path: a legacy file cannot be added.
    (repo / "old.pt").write_bytes(_saved({"a": torch.ones(2)}, _use_new_zipfile_serialization=False))
    result = git(repo, "add", "old.pt", check=False)
    assert result.returncode != 0 and "needs torch" in result.stderr


class _Sink:
    """Collects what `read` sends, to check that a fallback sent nothing twice."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, name: str, tensor: Tensor) -> None:
        self.names.append(name)

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return {"object": "0" * 64, "size": len(data)}


def _fast(data: bytes) -> Any:
    return zip_reader.read(io.BytesIO(data), len(data), blake3.blake3(data).hexdigest(), _Sink(), _DTYPE_NAMES)


def _deflated(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    return out.getvalue()


def test_unsupported_files_fall_back_to_torch() -> None:
    complex_tensor = _saved({"c": torch.ones(2, dtype=torch.complex64), "w": torch.ones(2)})
    not_a_plain_dict = _saved({"counts": Counter(a=1), "w": torch.ones(2)})
    for data in (complex_tensor, not_a_plain_dict, _deflated(_saved({"w": torch.ones(2)}))):
        assert _fast(data) is None
    assert _fast(_saved({"w": torch.ones(2)})) is not None
    sink = _Sink()
    section = PytorchFormat().read(io.BytesIO(complex_tensor), "m.pt", sink)  # type: ignore[arg-type]
    # complex64 is C64, a safetensors dtype: a parameter group of its own on the torch.load path
    assert "layout" not in section and sorted(sink.names) == ["c", "w"]


def test_corrupt_storage_fails_add(repo: Path) -> None:
    data = bytearray(_saved({"w": torch.arange(64, dtype=torch.float32)}))
    data[data.index(torch.arange(64, dtype=torch.float32).numpy().tobytes()) + 9] ^= 1
    (repo / "model.pt").write_bytes(data)
    result = git(repo, "add", "model.pt", check=False)
    assert result.returncode != 0 and "model.pt" in result.stderr and "CRC-32 mismatch" in result.stderr


def test_file_for_params_patches_crcs(tmp_path: Path) -> None:
    """A merge changing values in place: no torch, and the rebuilt zip's CRC-32s hold for the new bytes."""
    store = ObjectStore(tmp_path / "lfs")
    state = OrderedDict(w=torch.arange(6.0).reshape(2, 3), b=torch.ones(3, dtype=torch.bfloat16))
    state["w_t"] = state["w"].t()
    sink = StoringSink(store, [])
    file = PytorchFormat().read(io.BytesIO(_saved(state)), "m.pt", sink)  # type: ignore[arg-type]
    before = sink.finish()
    new_sink = StoringSink(store, [])
    new_sink.add("w", Tensor.from_numpy(-torch.arange(6.0).reshape(2, 3).numpy()))
    new_sink.add(
        "b", Tensor("BF16", (3,), torch.full((3,), 2.0, dtype=torch.bfloat16).view(torch.int16).numpy().tobytes())
    )
    after = new_sink.finish()
    fmt = PytorchFormat()
    assert fmt.file_for_params(file, before, before, StoreSource(store, before, "m.pt"), new_sink) == file
    new_file = fmt.file_for_params(file, before, after, StoreSource(store, after, "m.pt"), new_sink)
    assert new_file["skeleton"] != file["skeleton"] and new_file["layout"] == file["layout"]
    out = io.BytesIO()
    fmt.write(new_file, after, StoreSource(store, after, "m.pt"), out)
    assert zipfile.ZipFile(io.BytesIO(out.getvalue())).testzip() is None  # every CRC-32 matches
    loaded = torch.load(io.BytesIO(out.getvalue()), weights_only=True)
    assert torch.equal(loaded["w"], -torch.arange(6.0).reshape(2, 3)) and torch.equal(loaded["w_t"], loaded["w"].t())
    assert torch.equal(loaded["b"], torch.full((3,), 2.0, dtype=torch.bfloat16))


def test_merge_of_zip_checkpoints_has_valid_crcs(tmp_path: Path) -> None:
    """Through the merge engine: an averaged .pt checks out as a zip whose CRC-32s fit the merged values."""
    from git_theta.merge.engine import merge_metadata
    from git_theta.merge.policy import make_choice
    from git_theta.metadata import Metadata
    from git_theta.smudge import smudge

    store = ObjectStore(tmp_path / "lfs")

    def stored(w: list[float], b: list[int]) -> Metadata:
        sink = StoringSink(store, [])
        state = OrderedDict(w=torch.tensor(w, dtype=torch.bfloat16), b=torch.tensor(b, dtype=torch.int64))
        file = PytorchFormat().read(io.BytesIO(_saved(state)), "m.pt", sink)  # type: ignore[arg-type]
        assert "layout" in file
        return Metadata("pytorch", file, sink.finish())

    base, ours, theirs = stored([1, 2, 3], [1, 1]), stored([3, 2, 3], [1, 1]), stored([1, 2, 7], [1, 5])
    average = make_choice("average", {}, "t")
    result = merge_metadata(
        store, "m.pt", [ours, theirs], base, ["ours", "theirs"], lambda conflicts: {c.name: average for c in conflicts}
    )
    out = io.BytesIO()
    smudge(store, "m.pt", result.metadata.serialize(), out)
    assert zipfile.ZipFile(io.BytesIO(out.getvalue())).testzip() is None
    merged = torch.load(io.BytesIO(out.getvalue()), weights_only=True)
    assert merged["w"].tolist() == [2, 2, 5]  # both sides changed it: averaged, a value neither side had
    assert merged["b"].tolist() == [1, 5]  # one side changed it: taken


def test_fast_path_names_like_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same structure tree and parameter groups either way, so switching paths never changes metadata."""

    class Collect:
        def __init__(self) -> None:
            self.params: dict[str, tuple[str, tuple[int, ...], bytes]] = {}

        def add(self, name: str, tensor: Tensor) -> None:
            self.params[name] = (tensor.dtype, tuple(tensor.shape), bytes(tensor.data))

        def put_blob(self, data: bytes) -> dict[str, Any]:
            return {"object": "0" * 64, "size": len(data)}

    for name, data in _files().items():
        fast, slow = Collect(), Collect()
        fast_section = PytorchFormat().read(io.BytesIO(data), name, fast)  # type: ignore[arg-type]
        with monkeypatch.context() as patch:
            patch.setattr(zip_reader, "read", lambda *args: None)
            slow_section = PytorchFormat().read(io.BytesIO(data), name, slow)  # type: ignore[arg-type]
        assert "layout" in fast_section and "layout" not in slow_section
        assert fast_section["structure"] == slow_section["structure"], name
        assert fast.params == slow.params, name


def test_git_merge_of_a_zip_checkpoint_needs_no_torch(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git merge` through the merge driver: averaged storages, CRC-32s patched, the working file a valid zip."""
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torch here')\n")

    def commit(w: list[float], b: list[int], message: str) -> None:
        # w float (averaged), b int64 (changed on one side only: taken as is; an int average would be refused)
        state = OrderedDict(w=torch.tensor(w, dtype=torch.float32), b=torch.tensor(b))
        state["w_view"] = state["w"][1:]
        (repo / "model.pt").write_bytes(_saved(state))
        git(repo, "add", "model.pt")
        git(repo, "commit", "-q", "-m", message)

    commit([1, 2, 3], [1, 1], "base")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))  # torch was needed only to write the files above
    git(repo, "checkout", "-q", "-b", "other")
    commit([1, 2, 7], [1, 5], "theirs")
    git(repo, "checkout", "-q", "main")
    commit([3, 2, 3], [1, 1], "ours")
    git(repo, "config", "theta.merge.strategy", "average")
    git(repo, "merge", "-q", "other", "-m", "merge")
    assert git(repo, "status", "--porcelain").stdout == ""
    data = (repo / "model.pt").read_bytes()
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    merged = torch.load(io.BytesIO(data), weights_only=True)
    assert merged["w"].tolist() == [2, 2, 5] and merged["b"].tolist() == [1, 5] and merged["w_view"].tolist() == [2, 5]
