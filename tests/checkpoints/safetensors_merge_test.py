"""SafetensorsFormat.file_for_params: the header of a merged set of parameter groups."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import safetensors
from safetensors.numpy import load, save

from git_theta.checkpoints.safetensors import SafetensorsFormat
from git_theta.clean import StoringSink
from git_theta.metadata import Metadata
from git_theta.smudge import StoreSource, smudge
from git_theta.store import ObjectStore


def read(store: ObjectStore, data: bytes) -> Metadata:
    sink = StoringSink(store, [])
    file_section = SafetensorsFormat().read(io.BytesIO(data), "m", sink)
    return Metadata("safetensors", file_section, sink.finish())


def test_same_layout_keeps_the_header_object(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    meta = read(store, save({"a": np.zeros(3, np.float32)}))
    other = read(store, save({"a": np.ones(3, np.float32)}))
    section = SafetensorsFormat().file_for_params(
        meta.file, meta.params, other.params, StoreSource(store, meta.params, "m"), StoringSink(store, [])
    )
    assert section == meta.file


def test_new_header_keeps_order_metadata_and_is_valid(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    original = save(
        {"z": np.zeros(3, np.float32), "b": np.ones((2, 2), np.float16), "gone": np.zeros(1, np.int8)},
        metadata={"format": "pt"},
    )
    ours = read(store, original)
    offsets = json.loads(original[8 : 8 + int(np.frombuffer(original[:8], "<u8")[0])])
    old_order = sorted((v["data_offsets"][0], k) for k, v in offsets.items() if k not in ("__metadata__", "gone"))
    theirs = read(store, save({"added": np.arange(5, dtype=np.int64)}))
    after = {"z": ours.params["z"], "b": ours.params["b"], "added": theirs.params["added"]}
    section = SafetensorsFormat().file_for_params(
        ours.file, ours.params, after, StoreSource(store, ours.params, "m"), StoringSink(store, [])
    )
    merged = Metadata("safetensors", section, after)
    out = io.BytesIO()
    smudge(store, "m.safetensors", merged.serialize(), out)
    data = out.getvalue()
    (length,) = np.frombuffer(data[:8], "<u8")
    assert length % 8 == 0
    header = json.loads(data[8 : 8 + length])
    assert list(header) == [
        "__metadata__",
        *(name for _, name in old_order),
        "added",
    ]  # the old file order, then new names
    assert header["__metadata__"] == {"format": "pt"}
    tensors = load(data)
    np.testing.assert_array_equal(tensors["added"], np.arange(5))
    assert tensors["b"].dtype == np.float16 and sorted(tensors) == ["added", "b", "z"]
    (tmp_path / "x.safetensors").write_bytes(data)
    with safetensors.safe_open(str(tmp_path / "x.safetensors"), "np") as handle:
        assert handle.metadata() == {"format": "pt"}
