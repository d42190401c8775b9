"""Every dtype safetensors 0.8 defines, through real git: byte-identical checkout, dedup, exact deltas, and the
numeric diff showing packed and integer-quantized groups by hash and size only.

Files are written by the safetensors library itself (its TensorSpec serializer takes every dtype but the 6-bit
ones); the F6 tensors are appended by hand per the specification and checked with the library's reader."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import safetensors
from conftest import git, theta
from hostile_support import RepoState, assert_refused, run_bounded

from git_theta import dtypes
from git_theta.testing import assert_round_trip

# Our names -> the names safetensors' serializer takes (None: it takes none, the file is built by hand).
LIBRARY_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32", "U32": "uint32",
    "I64": "int64", "U64": "uint64", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2": "float8_e5m2",
    "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn_x2", "C64": "complex64",
    "F6_E2M3": None, "F6_E3M2": None,
}  # fmt: skip
SHAPE = (4, 6)  # 24 values: whole bytes for 4- and 6-bit types too


def library_file(raw: dict[str, tuple[str, tuple[int, ...], bytes]], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors.serialize over raw bytes: {name: (our dtype, shape, bytes)}."""
    keep = {name: np.frombuffer(data, dtype=np.uint8).copy() for name, (_, _, data) in raw.items()}
    specs = {}
    for name, (dtype, shape, _) in raw.items():
        # the library's float4_e2m1fn_x2 counts byte pairs: its last dimension is half of F4's
        library_shape = (*shape[:-1], shape[-1] // 2) if dtype == "F4" else shape
        specs[name] = safetensors.TensorSpec(
            dtype=LIBRARY_NAMES[dtype],
            shape=list(library_shape),
            data_ptr=keep[name].ctypes.data,
            data_len=len(keep[name]),
        )
    return bytes(safetensors.serialize(specs, metadata=metadata))


def with_f6(content: bytes, extra: dict[str, tuple[str, bytes]]) -> bytes:
    """`content` with 6-bit tensors appended after its data, header rewritten as safetensors writes it."""
    (size,) = struct.unpack_from("<Q", content)
    header = json.loads(content[8 : 8 + size])
    data = content[8 + size :]
    for name, (dtype, raw) in extra.items():
        header[name] = {"dtype": dtype, "shape": list(SHAPE), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + data


def every_dtype_file(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    raw = {}
    for name in dtypes.BITS:
        data = rng.integers(0, 256, dtypes.nbytes(name, SHAPE), dtype=np.uint8).tobytes()
        raw[name] = (name, SHAPE, bytes(b & 1 for b in data) if name == "BOOL" else data)
    library = {f"t.{name}": value for name, value in raw.items() if LIBRARY_NAMES[name] is not None}
    content = library_file(library, {"format": "pt"})
    return with_f6(
        content, {f"t.{name}": (name, data) for name, (_, _, data) in raw.items() if LIBRARY_NAMES[name] is None}
    )


def objects(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".git" / "lfs" / "objects").glob("??/??/*")}


def test_every_dtype_checks_out_byte_identical_and_dedups(repo: Path) -> None:
    content = every_dtype_file()
    assert {info["dtype"] for _, info in safetensors.deserialize(content)} == set(dtypes.BITS)  # the library reads it
    (repo / "model.safetensors").write_bytes(content)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "every dtype")
    assert_round_trip(repo, "model.safetensors")
    listed = theta(repo, "show", "HEAD:model.safetensors").stdout
    assert all(f"t.{name}" in listed for name in dtypes.BITS)
    before = objects(repo)
    # The same tensors under other names in a second file: only its header is new.
    (repo / "copy.safetensors").write_bytes(content.replace(b'"t.', b'"u.'))
    git(repo, "add", "copy.safetensors")
    assert len(objects(repo) - before) == 1
    git(repo, "commit", "-q", "-m", "copy")
    assert_round_trip(repo, "copy.safetensors")


def quantized_model(rng: np.random.Generator, f4: bytes) -> bytes:
    raw = {
        "layer.weight": ("F4", (256, 512), f4),
        "q.qweight": ("I32", (64, 32), rng.integers(0, 256, 64 * 32 * 4, dtype=np.uint8).tobytes()),
        "bnb.weight": ("U8", (128, 1), rng.integers(0, 256, 128, dtype=np.uint8).tobytes()),
        "bnb.weight.absmax": ("F32", (4,), np.ones(4, np.float32).tobytes()),
        "plain": ("F32", (8,), np.arange(8, dtype=np.float32).tobytes()),
    }
    return library_file(raw)


def test_packed_and_quantized_groups_get_exact_deltas_and_a_diff_without_numbers(repo: Path) -> None:
    rng = np.random.default_rng(1)
    f4 = bytearray(rng.integers(0, 256, 256 * 256, dtype=np.uint8).tobytes())
    (repo / "model.safetensors").write_bytes(quantized_model(np.random.default_rng(2), bytes(f4)))
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    f4[1000] ^= 0x0F  # one 4-bit value changed
    rng2 = np.random.default_rng(3)
    changed = quantized_model(rng2, bytes(f4)).replace(
        np.arange(8, dtype=np.float32).tobytes(), np.ones(8, np.float32).tobytes()
    )
    (repo / "model.safetensors").write_bytes(changed)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v2")
    assert_round_trip(repo, "model.safetensors")
    meta = json.loads(git(repo, "show", "HEAD:model.safetensors").stdout)
    assert [link["update"] for link in meta["params"]["layer.weight"]["stored"]] == ["dense", "xor"]

    diff = theta(repo, "diff", "HEAD~1", "HEAD").stdout
    rows = {
        name: line
        for name in ("layer.weight", "q.qweight", "bnb.weight", "plain")
        for line in diff.splitlines()
        if f"  {name}  " in line
    }
    assert "modified (packed F4: values not compared)" in rows["layer.weight"]
    assert "modified (GPTQ/AWQ-packed I32: values not compared)" in rows["q.qweight"]
    assert "modified (bitsandbytes-quantized U8: values not compared)" in rows["bnb.weight"]
    assert "e+" in rows["plain"] and "values not compared" not in rows["plain"]  # real numbers for a real tensor
    shown = git(repo, "diff", "HEAD~1", "HEAD").stdout  # git's own diff (textconv): metadata only, no numbers
    assert "layer.weight" in shown and "F4" in shown and "Traceback" not in shown
    found = json.loads(theta(repo, "diff", "--json", "HEAD~1", "HEAD").stdout)
    groups = {g["name"]: g for g in found["files"][0]["groups"]}
    assert (groups["layer.weight"]["stats"], groups["layer.weight"]["not_compared"]) == (None, "packed F4")
    assert groups["plain"]["stats"]["changed_count"] == 7 and groups["plain"]["not_compared"] is None


def test_a_packed_count_that_does_not_fill_whole_bytes_is_refused_in_one_line(repo: Path) -> None:
    for dtype, shape, nbytes in (("F4", [3], 2), ("F6_E2M3", [2, 3], 5)):
        header = json.dumps({"w": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
        (repo / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(nbytes))
        state = RepoState.capture(repo)
        result = run_bounded(["git", "add", "model.safetensors"], cwd=repo, max_rss_mb=300, max_seconds=30)
        line = assert_refused(result, ["model.safetensors", dtype])
        assert "do not fill whole bytes" in line
        state.assert_unchanged(repo)


def test_a_value_merge_of_packed_or_complex_groups_is_refused_naming_them_and_ours_still_merges(repo: Path) -> None:
    def version(fill: int) -> bytes:
        return library_file({"w": ("F4", (2, 4), bytes([fill]) * 4), "c": ("C64", (1,), bytes([fill]) * 8)})

    (repo / "model.safetensors").write_bytes(version(0))
    (repo / ".thetamerge.toml").write_text('[default]\nstrategy = "average"\n')
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "model.safetensors").write_bytes(version(1))
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "model.safetensors").write_bytes(version(2))
    git(repo, "commit", "-q", "-am", "main")
    result = run_bounded(["git", "merge", "other"], cwd=repo, max_rss_mb=400, max_seconds=60)
    line = assert_refused(result, ["model.safetensors", "parameter 'c'", "C64 is complex", "'average'"])
    assert "use ours, theirs or base" in line
    git(repo, "merge", "--abort")
    (repo / ".thetamerge.toml").write_text(
        '[default]\nstrategy = "average"\n[[rule]]\nparams = "*"\nstrategy = "theirs"\n'
    )
    git(repo, "commit", "-q", "-am", "take theirs")
    git(repo, "merge", "-q", "other")
    assert (repo / "model.safetensors").read_bytes() == version(1)
