"""The compiled decode of small dense members: the bytes objects.decode gives, or None (and objects.decode decides).

Members are written by objects.encode_dense, the real encoder. Every byte of a member is flipped and every
length cut or extended: whatever objects.decode refuses, the extension refuses too; whatever it accepts, the
extension gives the same bytes or refuses (it is stricter: nothing after the frame). A real checkout of a repository
with one damaged member still fails with the one-line message naming the object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git

from git_theta import densecodec, dtypes, objects, packs
from git_theta.errors import ThetaError
from git_theta.tensor import Tensor
from git_theta.updates.dense import DenseUpdate

sys.path.insert(0, str(Path(__file__).parent / "workflows"))
sys.path.insert(0, str(Path(__file__).parent))
from hostile_support import RepoState, assert_refused, run_bounded  # noqa: E402
from workflow_support import blob_metadata, save_small, store_path  # noqa: E402

MODEL = "model.safetensors"
REPAIR = "run `git theta fetch --repair` to download a good copy, or `git theta fsck` to list all"
LARGEST_F32 = packs.MEMBER_MAX_BYTES // 4  # elements of the largest fp32 tensor that goes into a pack


def test_the_extension_is_built_here() -> None:
    # CI installs libzstd's headers (bin/setup); without the extension a checkout decodes every member in Python.
    assert densecodec.IMPLEMENTATION == "c"


def _tensor(dtype: str, shape: tuple[int, ...], compressible: bool, seed: int = 0) -> Tensor:
    size = dtypes.nbytes(dtype, shape)
    if compressible:  # few distinct values: zstd finds matches, not only literals
        data = bytes(np.random.default_rng(seed).integers(0, 3, size, dtype=np.uint8))
    else:
        data = np.random.default_rng(seed).bytes(size)
    return Tensor(dtype, shape, data)


def _member(tensor: Tensor) -> bytes:
    return b"".join(objects.encode_dense(tensor))


def _python(member: bytes | bytearray, dtype: str, shape: tuple[int, ...]) -> bytes | None:
    """The value the Python path (smudge.rebuild: objects.decode, the dense update, the dtype and shape check) gives
    for a dense member, or None when it refuses it."""
    try:
        value = DenseUpdate().apply(objects.decode(member), None)
    except ThetaError:
        return None
    return bytes(value.data) if (value.dtype, value.shape) == (dtype, shape) else None


CASES = [
    ("F32", (32, 32)),
    ("BF16", (7, 3)),
    ("F16", (5,)),
    ("F8_E4M3", (100,)),
    ("I64", (3, 1, 2)),
    ("U8", (17,)),
    ("F32", ()),  # 0-d: one element, an empty shape list in the header
    ("I64", (1,)),
    ("F4", (6,)),  # packed: half a byte per element, codec unit 1
    ("F32", (LARGEST_F32,)),
    ("U8", (objects.chunk_step(1),)),  # the largest object of one chunk
    ("F64", (objects.chunk_step(8) // 8,)),
]


@pytest.mark.parametrize("compressible", [False, True, "zeros"])
def test_members_decode_to_the_bytes_objects_decode_gives(compressible: bool | str) -> None:
    if compressible == "zeros":  # run-length blocks, which the frame walk in _densecodec.c steps over too
        tensors = [Tensor(dtype, shape, bytes(dtypes.nbytes(dtype, shape))) for dtype, shape in CASES]
    else:
        tensors = [_tensor(dtype, shape, bool(compressible), seed) for seed, (dtype, shape) in enumerate(CASES)]
    members = [_member(t) for t in tensors]
    names, shapes = [t.dtype for t in tensors], [t.shape for t in tensors]
    # as smudge passes them: views into one read of the pack
    pack = memoryview(b"".join(members))
    offsets = np.cumsum([0] + [len(m) for m in members])
    views = [pack[offsets[i] : offsets[i + 1]] for i in range(len(members))]
    for decoded in (densecodec.decode_dense(views, names, shapes), densecodec.decode_dense(members, names, shapes)):
        assert [type(d) for d in decoded] == [bytearray] * len(members)
        assert [bytes(d) for d in decoded if d is not None] == [
            _python(m, t.dtype, t.shape) for m, t in zip(members, tensors)
        ]
        assert [bytes(d) for d in decoded if d is not None] == [bytes(t.data) for t in tensors]
    assert [densecodec.decode_one(m, n, s) for m, n, s in zip(members, names, shapes)] == [t.data for t in tensors]
    assert densecodec.decode_dense([], [], []) == []


def test_large_tensors_decode_into_buffers_the_caller_gives() -> None:
    from git_theta import _densecodec

    tensors = [_tensor("F32", (256,), False, 1), _tensor("U8", (5000,), True, 2), _tensor("BF16", (9,), False, 3)]
    members = [_member(t) for t in tensors]
    names, shapes = [t.dtype for t in tensors], [t.shape for t in tensors]
    given: list[bytearray] = []

    def take(size: int) -> bytearray:
        given.append(bytearray(b"\xee" * size))  # old contents: every byte must be overwritten
        return given[-1]

    args = (dtypes.BITS, objects.MAGIC, objects.DENSE_HEADER_PARTS, objects.CHUNK_BYTES)
    decoded = _densecodec.decode_dense(members, names, shapes, *args, take, 1024)
    assert [bytes(d) for d in decoded if d is not None] == [bytes(t.data) for t in tensors]
    assert [len(b) for b in given] == [1024, 5000]  # only the tensors of take_min bytes or more
    assert decoded[0] is given[0] and decoded[1] is given[1]
    for wrong in (lambda size: bytes(size), lambda size: bytearray(size + 1)):
        with pytest.raises(TypeError, match="must return a bytearray of that size"):
            _densecodec.decode_dense(members, names, shapes, *args, wrong, 1024)


def test_a_member_of_another_dtype_or_shape_is_not_fast() -> None:
    member = _member(_tensor("F32", (4, 8), False))
    specs = [("I32", (4, 8)), ("F32", (8, 4)), ("F32", (32,)), ("F32", (4, 8, 1)), ("F16", (8, 8)), ("NOPE", (4, 8))]
    specs += [("F32", (4, -8)), ("F32", (0,)), ("F32", (2**70, 4))]
    for dtype, shape in specs:
        assert densecodec.decode_dense([member], [dtype], [shape]) == [None], (dtype, shape)
        assert densecodec.decode_one(member, dtype, shape) is None, (dtype, shape)
    # a shape of more dimensions than encode_dense's header pattern allows, and a tensor of more than one chunk
    deep = (1,) * 65 + (4,)
    assert densecodec.decode_dense([_member(_tensor("F32", deep, False))], ["F32"], [deep]) == [None]
    big = (objects.chunk_step(4) // 4 + 1,)
    assert densecodec.decode_dense([_member(_tensor("F32", big, True))], ["F32"], [big]) == [None]


def _regions(member: bytes) -> dict[str, range]:
    """Where each part of an encode_dense member lies."""
    start = len(objects.MAGIC) + 4
    header_len = int.from_bytes(member[len(objects.MAGIC) : start], "little")
    header = member[start : start + header_len]
    frame = start + header_len

    def field(name: bytes) -> range:
        at = header.index(name) + len(name)
        return range(
            start + at, start + header.index(b'"', at) if name.endswith(b'"') else start + header.index(b"]", at)
        )

    return {
        "magic": range(0, len(objects.MAGIC)),
        "length": range(len(objects.MAGIC), start),
        "chunk digits": field(b'"chunk_bytes":['),
        "dtype": field(b'"dtype":"'),
        "frame digits": field(b'"frame_bytes":['),
        "shape": field(b'"shape":['),
        "frame header": range(frame, frame + 6),
        "frame body": range(frame + 6, len(member)),
    }


@pytest.mark.parametrize("dtype,shape", [("F32", (4, 4)), ("BF16", (3, 5)), ("U8", (40,)), ("F16", (30,))])
@pytest.mark.parametrize("compressible", [False, True])
def test_every_damage_objects_decode_refuses_is_not_fast(
    dtype: str, shape: tuple[int, ...], compressible: bool
) -> None:
    tensor = _tensor(dtype, shape, compressible)
    good = _member(tensor)
    regions = _regions(good)
    damaged: list[tuple[str, int | None, bytes]] = []
    for position in range(len(good)):
        for mask in (*(1 << bit for bit in range(8)), 0xFF):
            data = bytearray(good)
            data[position] ^= mask
            damaged.append((f"byte {position} ^ {mask:#x}", position, bytes(data)))
    damaged += [(f"cut to {n} bytes", None, good[:n]) for n in range(len(good))]
    damaged += [("a trailing byte", None, good + b"\x00"), ("a trailing frame", None, good + good[-(len(good) // 2) :])]
    decoded = densecodec.decode_dense([d for *_, d in damaged], [dtype] * len(damaged), [shape] * len(damaged))
    refused_in = {name: 0 for name in [*regions, "header text"]}
    for (how, position, data), fast in zip(damaged, decoded):
        region = next((name for name, where in regions.items() if position in where), "header text")
        reference = _python(data, dtype, shape)
        if reference is None:
            refused_in[region] += position is not None
            if region == "frame body" and fast is not None:
                # A damaged entropy-coded stream that python-zstandard's zstd detects, the system's may decode, to
                # other bytes: the tensor's hash then refuses them and smudge takes the Python path.
                assert bytes(fast) != tensor.data, how
            else:
                assert fast is None, how
        else:  # the hash decides (smudge); whatever is decoded here is what the reference decodes
            assert fast is None or bytes(fast) == reference, how
        assert densecodec.decode_one(data, dtype, shape) == (None if reference is None else fast), how
    # every region held damage the reference refuses
    assert all(refused_in.values()), refused_in
    assert decoded[-2:] == [None, None]  # bytes after the frame: not fast (python-zstandard would ignore them)


def test_the_fallback_decodes_the_same_without_the_extension(tmp_path: Path) -> None:
    tensors = [_tensor(dtype, shape, seed % 2 == 0, seed) for seed, (dtype, shape) in enumerate(CASES[:9])]
    members = [_member(t) for t in tensors]
    members.append(members[0][:-1])
    script = f"""
import json, sys
sys.modules["git_theta._densecodec"] = None  # as on a machine that built no extension
from pathlib import Path
from typing import Any
from git_theta import densecodec
members = [Path({str(tmp_path)!r}, str(i)).read_bytes() for i in range({len(members)})]
decoded = densecodec.decode_dense(members, {[t.dtype for t in tensors] + [tensors[0].dtype]!r},
                                  {[t.shape for t in tensors] + [tensors[0].shape]!r})
print(json.dumps([densecodec.IMPLEMENTATION, [None if d is None else d.hex() for d in decoded]]))
"""
    for i, member in enumerate(members):
        (tmp_path / str(i)).write_bytes(member)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    implementation, decoded = json.loads(result.stdout)
    assert implementation == "python"
    assert decoded == [bytes(t.data).hex() for t in tensors] + [None]


def test_two_threads_decode_at_once() -> None:
    # The tensor pool rebuilds batches on two threads; the GIL is released while decompressing.
    tensors = [_tensor("BF16", (64, 32), seed % 2 == 0, seed) for seed in range(64)]
    members = [_member(t) for t in tensors]
    names, shapes = [t.dtype for t in tensors], [t.shape for t in tensors]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: densecodec.decode_dense(members, names, shapes), range(40)))
    assert all(decoded == [t.data for t in tensors] for decoded in results)


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {f"layer.{i}.weight": rng.normal(0, 0.02, (8, 4)).astype(np.float32) for i in range(12)}


def _commit_model(repo: Path, tensors: dict[str, np.ndarray]) -> bytes:
    """The model saved, added and committed; its bytes."""
    original = save_small(repo / MODEL, tensors)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "model")
    return original


def _fast_path(repo: Path, meta: Any) -> tuple[Any, list[tuple[str, Any]], packs.MemberReads, list[Any]]:
    """The store, the file's entries as one batch (by name), its members read ahead, and what the compiled path
    rebuilt of each (None: left to rebuild)."""
    from git_theta import smudge
    from git_theta.repo import Repo

    store = Repo.discover(repo).store
    batch = sorted(meta.params.items())
    reads = packs.MemberReads(store, (link for _, entry in batch for link in entry.stored))
    return store, batch, reads, smudge._decode_dense_members(store, batch, reads)


def _assert_checkout_names_the_damage(repo: Path, name: str, oid: str, path: Path) -> None:
    """A checkout of the deleted model fails in one line naming the parameter, the object and the repair, and
    leaves the repository as it was."""
    (repo / MODEL).unlink()
    state = RepoState.capture(repo)
    line = assert_refused(run_bounded(["git", "checkout", "--", MODEL], cwd=repo), [MODEL, f"parameter {name!r}"])
    assert line.endswith(f"object {oid} is corrupt ({path.resolve()}); {REPAIR}"), line
    state.assert_unchanged(repo, known_damaged={oid})


@pytest.mark.parametrize("where", ["frame digits", "dtype", "frame body", "magic"])
def test_a_checkout_with_one_damaged_member_names_the_object(repo: Path, where: str) -> None:
    original = _commit_model(repo, _model())
    meta = blob_metadata(repo, f"HEAD:{MODEL}")
    name = "layer.5.weight"
    [link] = meta["params"][name]["stored"]
    path = store_path(repo, link["object"])
    pack = bytearray(path.read_bytes())
    member = bytes(pack[link["offset"] : link["offset"] + link["length"]])
    position = link["offset"] + _regions(member)[where][0]
    pack[position] ^= 0x01 if where != "frame body" else 0x55
    path.write_bytes(bytes(pack))
    # every other parameter of the file is in the same pack and rebuilt on the fast path
    assert {p["stored"][0]["object"] for p in meta["params"].values()} == {link["object"]}
    _assert_checkout_names_the_damage(repo, name, link["object"], path)
    # repaired (the good bytes back), the same checkout writes the original file
    pack[position] ^= 0x01 if where != "frame body" else 0x55
    path.write_bytes(bytes(pack))
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == original


def test_a_checkout_of_small_tensors_rebuilds_them_on_the_fast_path(repo: Path) -> None:
    from git_theta import metadata, smudge

    original = _commit_model(repo, _model())
    meta = metadata.parse(git(repo, "cat-file", "blob", f"HEAD:{MODEL}").stdout.encode())
    store, batch, _, fast = _fast_path(repo, meta)
    assert None not in fast  # every tensor, none left to the Python path
    assert fast == [smudge.rebuild(store, name, entry) for name, entry in batch]
    (repo / MODEL).unlink()
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == original


def test_chains_on_a_dense_member_take_the_fast_path_and_a_bad_link_leaves_its_entry_to_rebuild(repo: Path) -> None:
    # A small tensor changed a little is stored as its old dense member plus an xor member: the base is decoded
    # compiled with the others, the xor applied in place, the result checked against the entry's hash.
    from git_theta import metadata, smudge

    tensors = _model()
    _commit_model(repo, tensors)
    for i in (2, 5, 9):
        tensors[f"layer.{i}.weight"][0, :2] += 0.5
    changed = _commit_model(repo, tensors)
    meta = metadata.parse(git(repo, "cat-file", "blob", f"HEAD:{MODEL}").stdout.encode())
    chained = sorted(name for name, entry in meta.params.items() if len(entry.stored) > 1)
    assert chained == ["layer.2.weight", "layer.5.weight", "layer.9.weight"]
    assert {meta.params[name].stored[1].update for name in chained} == {"xor"}
    store, batch, _, fast = _fast_path(repo, meta)
    assert None not in fast and fast == [smudge.rebuild(store, name, entry) for name, entry in batch]
    # One byte of the xor member's frame flipped: that entry is left to rebuild (which names the damage), and
    # the other chains and tensors still come out of the fast path.
    link = meta.params["layer.5.weight"].stored[1]
    path = store_path(repo, link.object)
    pack = bytearray(path.read_bytes())
    assert link.offset is not None and link.length is not None
    pack[link.offset + link.length - 3] ^= 0x55
    path.write_bytes(bytes(pack))
    _, _, _, fast = _fast_path(repo, meta)
    assert [name for (name, _), value in zip(batch, fast) if value is None] == ["layer.5.weight"]
    _assert_checkout_names_the_damage(repo, "layer.5.weight", link.object, path)
    pack[link.offset + link.length - 3] ^= 0x55
    path.write_bytes(bytes(pack))
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == changed


def test_a_checkout_without_the_extension_writes_the_same_file(repo: Path, tmp_path: Path) -> None:
    # As on a machine that built no extension: every filter git starts imports this sitecustomize first.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text('import sys\nsys.modules["git_theta._densecodec"] = None\n')
    probe = [sys.executable, "-c", "from git_theta import densecodec; print(densecodec.IMPLEMENTATION)"]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "python"
    original = _commit_model(repo, _model())
    (repo / MODEL).unlink()
    subprocess.run(["git", "checkout", "--", MODEL], cwd=repo, env=env, check=True)
    assert (repo / MODEL).read_bytes() == original


def test_small_whole_objects_take_the_fast_path_and_are_read_once_a_batch(repo: Path) -> None:
    # `theta.packs false` (or a git-theta before packs) stores each tensor as an object of its own; equal tensors
    # share one. Such an object is one member: decoded compiled too, and read once per batch however many share it.
    from git_theta import metadata, smudge

    git(repo, "config", "theta.packs", "false")
    tensors = _model() | {f"zero.{i}": np.zeros((8, 4), np.float32) for i in range(20)}
    original = _commit_model(repo, tensors)
    meta = metadata.parse(git(repo, "cat-file", "blob", f"HEAD:{MODEL}").stdout.encode())
    assert all(entry.stored[0].offset is None for entry in meta.params.values())  # unpacked
    store, batch, reads, fast = _fast_path(repo, meta)
    assert None not in fast and fast == [smudge.rebuild(store, name, entry) for name, entry in batch]
    zero = meta.params["zero.0"].stored[0]
    assert reads.link_bytes(zero) is reads.link_bytes(meta.params["zero.7"].stored[0])  # one read for all 20
    (repo / MODEL).unlink()
    git(repo, "checkout", "--", MODEL)
    assert (repo / MODEL).read_bytes() == original


def test_a_damaged_whole_object_is_named_as_before(repo: Path) -> None:
    git(repo, "config", "theta.packs", "false")
    _commit_model(repo, _model())
    meta = blob_metadata(repo, f"HEAD:{MODEL}")
    name = "layer.3.weight"
    [link] = meta["params"][name]["stored"]
    path = store_path(repo, link["object"])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55  # the frame's body
    path.write_bytes(bytes(data))
    _assert_checkout_names_the_damage(repo, name, link["object"], path)


@pytest.mark.parametrize(("dtype", "count"), [("F32", 300_000), ("BF16", 70_000), ("U8", 5_000), ("F64", 1)])
def test_a_chunk_decompresses_in_place_to_what_the_reference_path_gives(dtype: str, count: int) -> None:
    from git_theta._densecodec import decompress_into

    tensor = _tensor(dtype, (count,), compressible=count % 2 == 0, seed=count)
    itemsize = dtypes.itemsize(dtype)
    frame = objects._compress_chunk(tensor.data, itemsize)
    target, scratch = bytearray(len(tensor.data)), bytearray(len(tensor.data))
    assert decompress_into(frame, memoryview(target), itemsize, scratch) is True
    assert bytes(target) == bytes(tensor.data)
    assert objects.decode(b"".join(objects.encode_dense(tensor))).buffers["value"].data == tensor.data


def test_in_place_decompression_refuses_every_frame_that_is_not_exactly_the_chunk() -> None:
    from git_theta._densecodec import decompress_into

    data = bytes(np.random.default_rng(5).integers(0, 4, 40_000, dtype=np.uint8))
    frame = objects._compress_chunk(data, 4)
    scratch = bytearray(len(data) + 8)
    refused = {
        "cut short": frame[:-3],
        "bytes after it": frame + b"\0",
        "two frames": frame + frame,
        "not zstd": b"\x00" * len(frame),
        "empty": b"",
    }
    for label, damaged in refused.items():
        assert decompress_into(damaged, bytearray(len(data)), 4, scratch) is False, label
    for size in (len(data) - 4, len(data) + 4):  # the frame declares another size than the target's
        assert decompress_into(frame, bytearray(size), 4, scratch) is False
    assert decompress_into(frame, bytearray(len(data)), 4, bytearray(10)) is False  # scratch too small
    assert decompress_into(frame, bytearray(len(data)), 3, scratch) is False  # size not a multiple of itemsize
    with pytest.raises(TypeError):
        decompress_into(frame, bytes(len(data)), 4, scratch)  # a target that cannot be written
