"""Pack objects and version-2 metadata (docs/formats.md, sections 2.4 and 3a), locked by golden bytes."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from metadata_test import GOLDEN as GOLDEN_V1
from metadata_test import golden_metadata
from safetensors.numpy import save_file

from git_theta import metadata, objects, packs
from git_theta.errors import MetadataError, StoreError
from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.repo import Repo
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor

GOLDEN_DIR = Path(__file__).parent / "golden"
PACK_SHA256 = "f97c7fd4634f56cb0ef6933871c89cbc18f4ee44d9b631958940e472645dfe57"
# (offset, length) of the two members of tests/golden/pack_two.bin
MEMBERS = ((0, 177), (177, 165))
TENSOR_A = Tensor("F32", (2, 2), struct.pack("<4f", 1.0, -2.0, 0.5, float("inf")))
TENSOR_B = Tensor("BF16", (3,), bytes([0x80, 0x3F, 0x00, 0xC0, 0x01, 0x00]))  # -0.0 -> 1.0... raw bits, any


def test_a_pack_is_its_members_objects_back_to_back(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    # A member given encoded (put_link) and one encoded only when the pack is written (put_dense): the same bytes.
    for put in ("put_link", "put_dense"):
        writer = packs.PackWriter()
        if put == "put_link":
            links = [writer.put_link("dense", objects.encode_dense(t)) for t in (TENSOR_A, TENSOR_B)]
        else:
            links = [writer.put_dense(t) for t in (TENSOR_A, TENSOR_B)]
        assert all(link.object == packs.UNWRITTEN for link in links)
        assert writer.write(store) == (PACK_SHA256, sum(length for _, length in MEMBERS))
        data = bytes(store.get(PACK_SHA256))
        assert data == (GOLDEN_DIR / "pack_two.bin").read_bytes()
        assert hashlib.sha256(data).hexdigest() == PACK_SHA256
        written = [writer.resolve_link(link) for link in links]
        assert [(link.object, link.offset, link.length) for link in written] == [(PACK_SHA256, *m) for m in MEMBERS]
        for (offset, length), tensor in zip(MEMBERS, (TENSOR_A, TENSOR_B)):
            member = objects.decode(data[offset : offset + length])
            assert member.kind == "dense" and bytes(member.buffers["value"].data) == bytes(tensor.data)


def test_encode_dense_writes_what_the_general_encoder_writes() -> None:
    rng = np.random.default_rng(3)
    for shape, dtype in [((32, 32), np.float32), ((), np.float64), ((5, 0), np.float32), ((7,), np.uint8)]:
        tensor = Tensor.from_numpy(rng.standard_normal(shape).astype(dtype))
        assert objects.encode_dense(tensor) == objects.encode(objects.Bundle("dense", {"value": tensor}))
        # The batch encoder (one zstd call for a pack's members) writes the same bytes, alone and among others.
        assert objects.encode_dense_many([tensor, TENSOR_A]) == [
            objects.encode_dense(tensor),
            objects.encode_dense(TENSOR_A),
        ]
        if tensor.nbytes:
            header = objects.encode_dense(tensor)[2]
            assert objects._one_buffer_header(header) == json.loads(header)  # the fast header reader agrees


def test_the_fast_header_reader_takes_only_the_exact_spelling() -> None:
    header = objects.encode_dense(TENSOR_A)[2]
    assert objects._one_buffer_header(header) is not None
    for variant in (header.replace(b"[16]", b"[016]"), header.replace(b'"kind"', b' "kind"'), header + b" "):
        assert objects._one_buffer_header(variant) is None


def packed_golden() -> Metadata:
    meta = golden_metadata()
    entry = meta.params["Z.scale"]
    link = StoredLink("dense", "d" * 64, 300, 20, 99)
    meta.params["Z.scale"] = ParamEntry(entry.dtype, entry.shape, entry.hash, (link,))
    return meta


def test_version_2_metadata_matches_golden_bytes() -> None:
    data = packed_golden().serialize()
    assert data == (GOLDEN_DIR / "metadata_v2.json").read_bytes()
    assert data.startswith(b'{"version":"git-theta/2",\n')
    assert metadata.parse(data) == packed_golden()
    # Without a pack member the same metadata is version 1, byte for byte what earlier versions wrote.
    assert golden_metadata().serialize() == GOLDEN_V1.read_bytes()


def test_serialize_writes_what_json_dumps_writes() -> None:
    names = ["a", 'q"uote', "back\\slash", "new\nline", "\u00e9\U0001f600", "tab\t\x01", ""]
    params = {
        name: ParamEntry(
            "BF16",
            (i, 3),
            f"{i:064x}",
            (StoredLink("dense", "a" * 64, 10, 0, 5), StoredLink('x\u00e9"\\', "b" * 64, 7)),
        )
        for i, name in enumerate(names)
    }
    data = Metadata("safetensors", {"header": {"object": "c" * 64, "size": 1}}, params).serialize()
    lines = data.decode().split("\n")[4:-2]
    for line, name in zip(lines, sorted(names)):
        expected = metadata._dump(name) + ":" + metadata._dump(params[name].to_json())
        assert line.rstrip(",") == expected
    assert metadata.parse(data).params == params


def with_link(change: dict[str, object], version: str = "git-theta/2") -> bytes:
    doc = json.loads(GOLDEN_V1.read_bytes())
    doc["version"] = version
    doc["params"]["Z.scale"]["stored"][0].update(change)
    return json.dumps(doc).encode().replace(b'{"version": ', b'{"version":', 1)


@pytest.mark.parametrize(
    ("change", "version", "message"),
    [
        ({"offset": 0, "length": 10}, "git-theta/1", "names a pack member .* which version git-theta/1 metadata"),
        ({"offset": 0}, "git-theta/2", "pack member outside its object: offset 0, length None"),
        ({"length": 5}, "git-theta/2", "pack member outside its object: offset None, length 5"),
        ({"offset": 0, "length": 0}, "git-theta/2", "pack member outside its object"),
        ({"offset": 90, "length": 10}, "git-theta/2", "offset 90, length 10, object size 99"),
        ({"offset": -1, "length": 10}, "git-theta/2", "pack member outside its object"),
        ({"offset": True, "length": 10}, "git-theta/2", "pack member outside its object"),
    ],
)
def test_malformed_pack_links_are_refused(change: dict[str, object], version: str, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        metadata.parse(with_link(change, version), "m.safetensors")


def test_a_member_past_the_end_of_its_pack_is_refused(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    oid, size = store.put([(GOLDEN_DIR / "pack_two.bin").read_bytes()[:300]])  # cut short
    assert packs.link_bytes(store, StoredLink("dense", oid, size, *MEMBERS[0]))
    with pytest.raises(StoreError, match=f"object {oid} is truncated: its member at offset 177 needs 165 bytes"):
        packs.link_bytes(store, StoredLink("dense", oid, 342, *MEMBERS[1]))


def entry(pack: str, size: int, offset: int, length: int, digest: str) -> ParamEntry:
    return ParamEntry("U8", (length,), digest, (StoredLink("dense", pack, size, offset, length),))


def test_members_of_mostly_dead_packs_are_copied_byte_for_byte(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    data = (GOLDEN_DIR / "pack_two.bin").read_bytes()
    oid, size = store.put([data + bytes(400)])  # 342 live bytes of 742: under half
    full, full_size = store.put([data])
    entries = {
        "a": entry(oid, size, *MEMBERS[0], "1" * 64),
        "b": entry(oid, size, *MEMBERS[1], "2" * 64),
        "c": entry(full, full_size, *MEMBERS[0], "3" * 64),  # all of its pack is used: stays
    }
    assert packs.sparse_packs(entries.values()) == {oid}
    assert packs.repack(store, entries, {full}) == entries  # not eligible: left as it is
    moved = packs.repack(store, entries, {oid, full})
    assert moved["c"] == entries["c"]
    new_a, new_b = moved["a"].stored[0], moved["b"].stored[0]
    assert new_a.object == new_b.object != oid
    for old, new in ((entries["a"].stored[0], new_a), (entries["b"].stored[0], new_b)):
        assert packs.link_bytes(store, new) == packs.link_bytes(store, old)
    assert packs.sparse_packs(moved.values()) == set()


def small_model(path: Path, seed: int, changed: set[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors = {f"layer.{i:02d}": rng.standard_normal((8, 8)).astype(np.float32) for i in range(40)}
    tensors["big"] = rng.standard_normal((300, 1000)).astype(np.float32)  # over MEMBER_MAX_BYTES: its own object
    for i in changed:
        tensors[f"layer.{i:02d}"] = tensors[f"layer.{i:02d}"] + np.float32(seed)
    save_file(tensors, str(path))
    return tensors


def staged(repo: Path, path: str) -> Metadata:
    blob = subprocess.run(["git", "show", f":{path}"], cwd=repo, capture_output=True, check=True).stdout
    return metadata.parse(blob)


def test_small_tensors_share_a_pack_and_a_change_writes_only_its_members(repo: Path) -> None:
    model = repo / "model.safetensors"
    small_model(model, 0, set())
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    v1 = staged(repo, "model.safetensors")
    first_packs = {link.object for name, e in v1.params.items() if name != "big" for link in e.stored}
    assert len(first_packs) == 1 and all(link.packed for n, e in v1.params.items() if n != "big" for link in e.stored)
    assert not v1.params["big"].stored[0].packed
    store = Repo.discover(repo).store
    assert len(list(store.all_oids())) == 3  # the pack, the big tensor, the header

    original = model.read_bytes()
    small_model(model, 1, {3, 17})
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v2")
    v2 = staged(repo, "model.safetensors")
    new = {name for name in v2.params if v2.params[name] != v1.params[name]}
    assert new == {"layer.03", "layer.17"}
    (second_pack,) = {v2.params[name].stored[-1].object for name in new}
    assert second_pack not in first_packs and v2.params["layer.05"] == v1.params["layer.05"]
    assert store.path(second_pack).stat().st_size < 2000  # the two changed members only

    changed = model.read_bytes()
    model.unlink()
    git(repo, "checkout", "HEAD~1", "--", "model.safetensors")
    assert model.read_bytes() == original
    git(repo, "checkout", "HEAD", "--", "model.safetensors")
    assert model.read_bytes() == changed
    assert "ok" in theta(repo, "fsck").stdout


def test_a_version_using_under_half_of_a_pack_copies_its_members_out(repo: Path) -> None:
    model = repo / "model.safetensors"
    small_model(model, 0, set())
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "v1")
    first = {e.stored[0].object for n, e in staged(repo, "model.safetensors").params.items() if n != "big"}
    changed: set[int] = set()
    for version in range(1, 5):  # 7 more tensors changed each time: 28 of 40 by the end
        changed |= set(range(version * 7 - 7, version * 7))
        small_model(model, version, changed)
        git(repo, "add", "model.safetensors")
        git(repo, "commit", "-q", "-m", f"v{version + 1}")
    newest = staged(repo, "model.safetensors")
    used = packs.live_bytes(e for n, e in newest.params.items() if n != "big")
    assert not set(used) & first  # the first pack fell under half live: its last members were copied
    assert packs.sparse_packs(newest.params.values()) == set()
    expected = model.read_bytes()
    model.unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert model.read_bytes() == expected


def test_metadata_an_earlier_git_theta_wrote_still_checks_out(repo: Path) -> None:
    """tests/golden/tiny.safetensors.metadata is version 1 (one object per tensor), as git-theta wrote before
    packs: with its objects in the store (rebuilt here from the checkpoint, the same bytes), it checks out."""
    checkpoint = (GOLDEN_DIR / "tiny.safetensors").read_bytes()
    old = (GOLDEN_DIR / "tiny.safetensors.metadata").read_bytes()
    meta = metadata.parse(old)
    store = Repo.discover(repo).store
    header_size = 8 + struct.unpack_from("<Q", checkpoint)[0]
    assert store.put(objects.encode_blob(checkpoint[:header_size]))[0] == meta.file["header"]["object"]
    offsets = {"b": (0, 12), "mask": (12, 22), "w": (22, 46)}
    for name, (begin, end) in offsets.items():
        param = meta.params[name]
        tensor = Tensor(param.dtype, param.shape, checkpoint[header_size + begin : header_size + end])
        assert store.put(objects.encode_dense(tensor))[0] == param.stored[0].object
    blob = (
        subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=old, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},tiny.safetensors")
    git(repo, "checkout", "--", "tiny.safetensors")
    assert (repo / "tiny.safetensors").read_bytes() == checkpoint


@pytest.mark.parametrize("span", ["read", "mapped"])
def test_a_batch_reads_its_members_of_a_pack_at_once_with_the_same_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, span: str
) -> None:
    if span == "mapped":  # a span of megabytes is mapped, not read: the same bytes and checks
        monkeypatch.setattr(packs, "MAP_SPAN_BYTES", 1)
    store = ObjectStore(tmp_path / "lfs")
    whole = (GOLDEN_DIR / "pack_two.bin").read_bytes()
    oid, size = store.put([whole])
    links = [StoredLink("dense", oid, size, *member) for member in MEMBERS]
    reads = packs.MemberReads(store, links)
    assert oid in reads._spans  # one read for both
    assert [bytes(reads.link_bytes(link)) for link in links] == [bytes(packs.link_bytes(store, link)) for link in links]
    short, _ = store.put([whole[:300]])  # cut short: the second member is truncated
    cut = [StoredLink("dense", short, 342, *member) for member in MEMBERS]
    reads = packs.MemberReads(store, cut)
    assert bytes(reads.link_bytes(cut[0])) == whole[:177]
    with pytest.raises(StoreError) as alone:
        packs.link_bytes(store, cut[1])
    with pytest.raises(StoreError) as batched:
        reads.link_bytes(cut[1])
    assert str(batched.value) == str(alone.value)
    # span_bytes: a member read ahead whole, else None (a truncated one too: link_bytes names it)
    assert bytes(reads.span_bytes(cut[0]) or b"") == whole[:177]
    assert reads.span_bytes(cut[1]) is None


def test_members_far_apart_are_read_one_by_one(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    oid, size = store.put([b"a" * 10, b"-" * 1000, b"b" * 10])
    links = [StoredLink("dense", oid, size, 0, 10), StoredLink("dense", oid, size, 1010, 10)]
    reads = packs.MemberReads(store, links)
    assert reads._spans == {}  # 1020 bytes to read for 20 used: each member alone
    assert [bytes(reads.link_bytes(link)) for link in links] == [b"a" * 10, b"b" * 10]
    assert [reads.span_bytes(link) for link in links] == [None, None]


def test_a_batch_over_a_missing_pack_fails_where_each_member_is_read(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    links = [StoredLink("dense", "ab" * 32, 342, *member) for member in MEMBERS]
    reads = packs.MemberReads(store, links)  # nothing raised here: the caller names the parameter
    with pytest.raises(StoreError) as alone:
        packs.link_bytes(store, links[0])
    with pytest.raises(StoreError) as batched:
        reads.link_bytes(links[0])
    assert str(batched.value) == str(alone.value)


def test_a_clean_links_equal_tensors_of_batches_in_flight_to_one_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 8 members, compressed and written on the pool while the next batch is linked: a tensor equal to
    # one of a batch still being written must wait for that entry (as a clean storing batch after batch would),
    # so every run gives the same metadata, whatever the pool's timing.
    from git_theta.clean import StoringSink

    monkeypatch.setattr(packs, "MAX_MEMBERS", 8)
    rng = np.random.default_rng(5)
    shared = [Tensor.from_numpy(rng.standard_normal((4, 4)).astype(np.float32)) for _ in range(3)]
    tensors = {
        f"t{i:03d}": shared[i % 3] if i % 4 == 0 else Tensor.from_numpy(rng.standard_normal((4, 4)).astype(np.float32))
        for i in range(200)
    }
    runs = []
    for run in range(3):
        store = ObjectStore(tmp_path / f"lfs{run}")
        sink = StoringSink(store, [])
        for name, tensor in tensors.items():
            sink.add(name, tensor)
        entries = sink.finish()
        by_hash: dict[str, set[StoredLink]] = {}
        for entry in entries.values():
            by_hash.setdefault(entry.hash, set()).add(entry.stored[-1])
        assert all(len(links) == 1 for links in by_hash.values())  # one member per distinct tensor
        assert all(link.object != packs.UNWRITTEN and link.length for link in entries["t000"].stored)
        for name, tensor in tensors.items():
            link = entries[name].stored[0]
            member = objects.decode(bytes(store.get(link.object))[link.offset : link.offset + link.length])  # type: ignore[operator]
            assert bytes(member.buffers["value"].data) == bytes(tensor.data)
        runs.append(Metadata("safetensors", {}, entries).serialize())
    assert runs[0] == runs[1] == runs[2]
