"""engine: merged metadata from real stored checkpoints, smudged back to real safetensors files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from git_theta import dtypes
from git_theta.checkpoints.safetensors import SafetensorsFormat, parse_header
from git_theta.clean import StoringSink
from git_theta.errors import StoreError
from git_theta.merge.engine import MergeError, from_float64, merge_metadata
from git_theta.merge.plan import Conflict
from git_theta.merge.policy import Choice, make_choice
from git_theta.metadata import Metadata
from git_theta.smudge import smudge
from git_theta.store import ObjectStore


def save(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """safetensors bytes (safetensors.numpy cannot write bf16)."""
    header: dict[str, object] = {"__metadata__": metadata}
    position = 0
    for name, array in tensors.items():
        header[name] = {
            "dtype": dtypes.from_numpy(array.dtype),
            "shape": list(array.shape),
            "data_offsets": [position, position + array.nbytes],
        }
        position += array.nbytes
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return (
        len(encoded).to_bytes(8, "little")
        + encoded
        + b"".join(np.ascontiguousarray(a).tobytes() for a in tensors.values())
    )


def load(data: bytes) -> dict[str, np.ndarray]:
    size = int.from_bytes(data[:8], "little")
    body = data[8 + size :]
    return {
        name: np.frombuffer(body[begin:end], dtypes.numpy_dtype(dtype)).reshape(shape)
        for name, dtype, shape, begin, end in parse_header(data[8 : 8 + size])
    }


def stored(store: ObjectStore, tensors: dict[str, np.ndarray]) -> Metadata:
    sink = StoringSink(store, [])
    file_section = SafetensorsFormat().read(io.BytesIO(save(tensors, metadata={"origin": "test"})), "m", sink)
    return Metadata("safetensors", file_section, sink.finish())


def checkout(store: ObjectStore, meta: Metadata) -> dict[str, np.ndarray]:
    out = io.BytesIO()
    smudge(store, "m.safetensors", meta.serialize(), out)
    return load(out.getvalue())


def everything(choice: Choice):  # type: ignore[no-untyped-def]
    return lambda conflicts: {c.name: choice for c in conflicts}


def test_cast_back_keeps_dtype() -> None:
    bf16 = from_float64(np.array([1.0 + 2**-9, -3.5]), "BF16")
    assert bf16.dtype == "BF16" and bf16.numpy().dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(bf16.numpy().astype(np.float64), [1.0, -3.5])  # 1 + 2^-9 rounds to even
    np.testing.assert_array_equal(from_float64(np.array([1.5, -200.0, 2.4]), "I8").numpy(), [2, -128, 2])
    np.testing.assert_array_equal(from_float64(np.array([0.5, 0.49]), "BOOL").numpy(), [True, False])


def test_bf16_average_with_added_and_deleted_groups(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    bf = ml_dtypes.bfloat16
    base = stored(store, {"w": np.array([1, 2, 3, 4], bf), "gone": np.zeros(2, bf), "keep": np.ones(3, np.float32)})
    ours = stored(
        store,
        {
            "w": np.array([3, 2, 3, 4], bf),
            "keep": np.ones(3, np.float32),
            "gone": np.zeros(2, bf),
            "new": np.full(5, 7, np.int64),
        },
    )
    theirs = stored(store, {"w": np.array([1, 2, 5, 8], bf), "keep": np.ones(3, np.float32)})
    result = merge_metadata(
        store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], everything(make_choice("average", {}, "t"))
    )
    assert sorted(result.metadata.params) == ["keep", "new", "w"]
    assert result.computed == ["w"] and sorted(result.one_sided) == ["gone", "new"]
    merged = checkout(store, result.metadata)
    assert merged["w"].dtype == bf and merged["w"].astype(np.float64).tolist() == [2, 2, 4, 6]
    np.testing.assert_array_equal(merged["new"], np.full(5, 7))


def test_shape_conflict_is_a_clear_error(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    base = stored(store, {"w": np.zeros((2, 2), np.float32)})
    ours = stored(store, {"w": np.ones((2, 2), np.float32)})
    theirs = stored(store, {"w": np.ones((4,), np.float32)})
    with pytest.raises(
        MergeError, match=r"parameter 'w' .*dtype or shape differ between sides \(ours F32\[2,2\], theirs F32\[4\]\)"
    ):
        merge_metadata(
            store,
            "m.safetensors",
            [ours, theirs],
            base,
            ["ours", "theirs"],
            everything(make_choice("average", {}, "t")),
        )
    # picking a side needs no common layout
    result = merge_metadata(
        store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], everything(make_choice("theirs", {}, "t"))
    )
    assert checkout(store, result.metadata)["w"].shape == (4,)


def test_delete_against_change_needs_a_pick(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    base = stored(store, {"w": np.zeros(2, np.float32), "v": np.zeros(1, np.float32)})
    ours = stored(store, {"v": np.zeros(1, np.float32)})
    theirs = stored(store, {"w": np.ones(2, np.float32), "v": np.zeros(1, np.float32)})
    with pytest.raises(MergeError, match="deleted in ours and changed elsewhere"):
        merge_metadata(
            store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], everything(make_choice("ties", {}, "t"))
        )
    result = merge_metadata(
        store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], everything(make_choice("ours", {}, "t"))
    )
    assert list(checkout(store, result.metadata)) == ["v"]


def test_result_equal_to_an_input_reuses_its_entry(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    base = stored(store, {"w": np.zeros(4, np.float32)})
    ours = stored(store, {"w": np.array([1, 0, 0, 0], np.float32)})
    theirs = stored(store, {"w": np.array([0.5, 0, 0, 0], np.float32)})
    before = set(store.all_oids())
    chooser = everything(make_choice("ties", {"k": 0.25}, "t"))
    result = merge_metadata(store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], chooser)
    np.testing.assert_array_equal(checkout(store, result.metadata)["w"], [0.75, 0, 0, 0])
    assert len(set(store.all_oids()) - before) == 1  # the merged tensor, nothing else

    def never(conflicts: list[Conflict]) -> dict[str, Choice]:
        raise AssertionError("no conflicts expected")

    same = merge_metadata(store, "m.safetensors", [ours, ours], base, ["ours", "theirs"], never)
    assert same.metadata.params == ours.params


def test_missing_object_fails_before_storing_anything(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    base = stored(store, {"w": np.zeros(4, np.float32), "v": np.zeros(4, np.float32)})
    ours = stored(store, {"w": np.ones(4, np.float32), "v": np.ones(4, np.float32)})
    theirs = stored(store, {"w": np.full(4, 3, np.float32), "v": np.full(4, 5, np.float32)})
    lost = theirs.params["w"].objects()[0]
    store.path(lost).unlink()
    before = set(store.all_oids())
    # w and v share a pack: the first parameter found to need it is named
    with pytest.raises(
        StoreError, match=f"parameter '[wv]' needs object {lost}, missing from the store; fetch it first"
    ):
        merge_metadata(
            store,
            "m.safetensors",
            [ours, theirs],
            base,
            ["ours", "theirs"],
            everything(make_choice("average", {}, "t")),
        )
    assert set(store.all_oids()) == before


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.uint8, np.uint64, np.bool_])
def test_integer_and_quantized_values_are_not_averaged(tmp_path: Path, dtype: type) -> None:
    store = ObjectStore(tmp_path / "lfs")
    base = stored(store, {"layer.qweight": np.array([0, 1, 0, 1], dtype), "w": np.zeros(2, np.float32)})
    ours = stored(store, {"layer.qweight": np.array([1, 1, 0, 1], dtype), "w": np.ones(2, np.float32)})
    theirs = stored(store, {"layer.qweight": np.array([0, 0, 1, 1], dtype), "w": np.full(2, 3, np.float32)})
    name = dtypes.from_numpy(np.dtype(dtype))
    for strategy in ("average", "ties"):
        with pytest.raises(
            MergeError,
            match=(
                rf"^m.safetensors: cannot merge parameter 'layer.qweight' with '{strategy}': {name} values are "
                r"quantized/integer data; pick ours, theirs or base"
            ),
        ):
            merge_metadata(
                store,
                "m.safetensors",
                [ours, theirs],
                base,
                ["ours", "theirs"],
                everything(make_choice(strategy, {}, "t")),
            )
    for strategy, expected in (("ours", ours), ("theirs", theirs), ("base", base)):
        result = merge_metadata(
            store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], everything(make_choice(strategy, {}, "t"))
        )
        assert result.metadata.params["layer.qweight"] == expected.params["layer.qweight"]


def test_a_strategy_refusal_names_the_file(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    base = stored(store, {"w": np.zeros(3, np.float32)})
    ours = stored(store, {"w": np.ones(3, np.float32)})
    theirs = stored(store, {"w": np.full(3, 2, np.float32)})
    chooser = everything(make_choice("della", {"density": 0.1, "epsilon": 0.2}, "t"))
    with pytest.raises(
        MergeError,
        match=r"^m.safetensors: merge strategy 'della', parameter 'w': density ± epsilon must lie in \(0, 1\]",
    ):
        merge_metadata(store, "m.safetensors", [ours, theirs], base, ["ours", "theirs"], chooser)
