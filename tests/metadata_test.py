"""The metadata file (docs/formats.md, "Metadata"), locked by golden bytes in tests/golden/."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import git

from git_theta import metadata, objects, packs
from git_theta.errors import MetadataError
from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.repo import Repo
from git_theta.tensor import tensor_hash

GOLDEN = Path(__file__).parent / "golden" / "metadata_v1.json"
GOLDEN_SHA256 = "7aed873034740878a9c258be38eb3b775d36ae7674e1e5d49d19528a6f896590"

HEADER_OID = "0" * 63 + "1"
OID_A = "a" * 64
OID_B = "b" * 64
OID_C = "c" * 64
HASH_1 = "1" * 64
HASH_2 = "2" * 64
HASH_3 = "3" * 64
HASH_4 = "4" * 64


def golden_metadata() -> Metadata:
    # Names given out of order; one needs escaping (quote, backslash, newline, non-ASCII, astral).
    params = {
        "encoder.layer.0.weight": ParamEntry("F32", (2, 3), HASH_1, (StoredLink("dense", OID_A, 99),)),
        "encoder.layer.0.bias": ParamEntry(
            "BF16", (3,), HASH_2, (StoredLink("dense", OID_B, 60), StoredLink("sparse", OID_C, 45))
        ),
        'emb\u00e9d "q"\\\n\U0001f600': ParamEntry("U8", (10,), HASH_3, (StoredLink("dense", OID_C, 45),)),
        "Z.scale": ParamEntry("F64", (), HASH_4, (StoredLink("dense", OID_A, 99),)),
    }
    return Metadata("safetensors", {"header": {"object": HEADER_OID, "size": 120}}, params)


EXPECTED_TEXT = (
    '{"version":"git-theta/1",\n'
    '"format":"safetensors",\n'
    '"file":{"header":{"object":"' + HEADER_OID + '","size":120}},\n'
    '"params":{\n'
    '"Z.scale":{"dtype":"F64","hash":"'
    + HASH_4
    + '","shape":[],"stored":[{"object":"'
    + OID_A
    + '","size":99,"update":"dense"}]},\n'
    '"emb\\u00e9d \\"q\\"\\\\\\n\\ud83d\\ude00":{"dtype":"U8","hash":"' + HASH_3 + '","shape":[10],'
    '"stored":[{"object":"' + OID_C + '","size":45,"update":"dense"}]},\n'
    '"encoder.layer.0.bias":{"dtype":"BF16","hash":"' + HASH_2 + '","shape":[3],'
    '"stored":[{"object":"'
    + OID_B
    + '","size":60,"update":"dense"},{"object":"'
    + OID_C
    + '","size":45,"update":"sparse"}]},\n'
    '"encoder.layer.0.weight":{"dtype":"F32","hash":"' + HASH_1 + '","shape":[2,3],'
    '"stored":[{"object":"' + OID_A + '","size":99,"update":"dense"}]}\n'
    "}}\n"
)


def test_serialize_matches_golden_bytes() -> None:
    data = golden_metadata().serialize()
    assert data == GOLDEN.read_bytes()
    assert data == EXPECTED_TEXT.encode("ascii")
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256


def test_one_line_per_parameter() -> None:
    lines = GOLDEN.read_bytes().split(b"\n")
    assert lines[0] == b'{"version":"git-theta/1",'
    assert lines[3] == b'"params":{'
    assert len(lines) == 4 + 4 + 1 + 1  # four header lines, one per parameter, "}}", empty after the final newline
    assert lines[-2:] == [b"}}", b""]


def test_empty_params() -> None:
    data = Metadata("safetensors", {}, {}).serialize()
    assert data == b'{"version":"git-theta/1",\n"format":"safetensors",\n"file":{},\n"params":{\n}}\n'
    assert metadata.parse(data).params == {}


def test_parse_round_trip() -> None:
    data = GOLDEN.read_bytes()
    parsed = metadata.parse(data)
    assert parsed == golden_metadata()
    assert parsed.serialize() == data
    assert parsed.objects() == {HEADER_OID, OID_A, OID_B, OID_C}
    assert parsed.params["encoder.layer.0.bias"].stored_size == 105


def test_non_canonical_input_is_accepted_and_canonicalized() -> None:
    doc = json.loads(GOLDEN.read_bytes())
    text = '{{"version":"git-theta/1", "params": {}, "file": {}, "format": "safetensors", "later": 1}}'.format(
        json.dumps(doc["params"], indent=2, ensure_ascii=False),
        json.dumps(doc["file"]),
    )
    assert metadata.parse(text.encode("utf-8")).serialize() == GOLDEN.read_bytes()


def test_looks_like_metadata() -> None:
    assert metadata.looks_like_metadata(GOLDEN.read_bytes()[:30])
    assert not metadata.looks_like_metadata(b' {"version":"git-theta/1"}')
    assert not metadata.looks_like_metadata(b'{"format":"x","version":"git-theta/1"}')
    assert not metadata.looks_like_metadata(b"version https://git-lfs.github.com/spec/v1\n")


# --- rejection of malformed metadata --------------------------------------------------


def rejects(data: bytes, message: str) -> None:
    with pytest.raises(MetadataError, match=message) as caught:
        metadata.parse(data, "model.safetensors")
    assert str(caught.value).startswith("model.safetensors: ")


def with_entry(change: object) -> bytes:
    doc = json.loads(GOLDEN.read_bytes())
    change(doc["params"]["encoder.layer.0.weight"])  # type: ignore[operator]
    return json.dumps(doc).replace('{"version": "git-theta/1", ', '{"version":"git-theta/1",', 1).encode()


def test_unknown_version_asks_for_a_newer_git_theta() -> None:
    data = GOLDEN.read_bytes().replace(b"git-theta/1", b"git-theta/3", 1)
    rejects(
        data,
        r"unsupported metadata version 'git-theta/3'; this git-theta reads git-theta/1 and git-theta/2 \(a newer "
        r"version needs a newer git-theta\)",
    )


def test_not_metadata() -> None:
    rejects(b"\x08\x00\x00\x00\x00\x00\x00\x00{}", "not git-theta metadata")


def test_not_json() -> None:
    rejects(GOLDEN.read_bytes()[:-3], "not valid JSON")
    rejects(b'{"version":"git-theta/1","format":"x"', "not valid JSON")


def test_size_cap_is_checked_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "MAX_BYTES", 100)
    rejects(b'{"version":"git-theta/1",' + b"x" * 100, "exceeds the 100 byte limit")


def test_default_size_cap() -> None:
    assert metadata.MAX_BYTES == 256 << 20


def test_duplicate_parameter() -> None:
    data = GOLDEN.read_bytes()
    line = data.split(b"\n")[4]
    rejects(data.replace(line, line + b"\n" + line, 1), "'Z.scale' appears twice")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(dtype="F128"), "unknown dtype 'F128'"),
        (lambda e: e.update(shape=[2, -3]), "invalid shape"),
        (lambda e: e.update(shape=[2, True]), "invalid shape"),
        (lambda e: e.update(shape="2,3"), "invalid shape"),
        (lambda e: e.update(hash="1" * 63), "invalid hash"),
        (lambda e: e.update(hash="A" * 64), "invalid hash"),
        (lambda e: e.update(hash="1" * 64 + "\n"), "invalid hash"),  # `$` alone matches before a final newline
        (lambda e: e.update(stored=[]), "no stored objects"),
        (lambda e: e.update(stored=[{"object": OID_A, "size": 1}]), "malformed stored entry"),
        (lambda e: e["stored"][0].update(object="A" * 64), "invalid object id 'AAAA"),
        (lambda e: e["stored"][0].update(object=OID_A[:40]), "invalid object id"),
        (lambda e: e["stored"][0].update(object=OID_A + "\n"), "invalid object id"),
        (lambda e: e["stored"][0].update(object=None), "invalid object id None"),
        (lambda e: e["stored"][0].update(size=-1), "invalid object size -1"),
        (lambda e: e["stored"][0].update(size=True), "invalid object size True"),
    ],
)
def test_malformed_entries(change: object, message: str) -> None:
    data = with_entry(change)
    with pytest.raises(MetadataError, match=message) as caught:
        metadata.parse(data, "model.safetensors")
    assert "parameter 'encoder.layer.0.weight'" in str(caught.value)


def test_missing_sections() -> None:
    rejects(b'{"version":"git-theta/1","format":"x","file":{}}', "lacks a params section")
    rejects(b'{"version":"git-theta/1","format":"","file":{},"params":{}}', "lacks a format or file section")
    rejects(b'{"version":"git-theta/1","format":"x","file":[],"params":{}}', "lacks a format or file section")
    rejects(b'{"version":"git-theta/1","format":"x","file":{},"params":{"a":5}}', "parameter 'a' is not an object")


def test_bad_object_id_in_file_section() -> None:
    data = GOLDEN.read_bytes().replace(HEADER_OID.encode(), b"0" * 63 + b"g")
    rejects(data, "file section: invalid object id")


def test_escaping_of_control_and_non_ascii_characters() -> None:
    entry = ParamEntry("U8", (1,), HASH_1, (StoredLink("dense", OID_A, 1),))
    data = Metadata("safetensors", {}, {"a/\t\x01\x7f\u2028~": entry}).serialize()
    line = data.split(b"\n")[4]
    assert line.startswith(b'"a/\\t\\u0001\\u007f\\u2028~":{"dtype":"U8",')
    assert metadata.parse(data).params == {"a/\t\x01\x7f\u2028~": entry}


# --- end to end: a fixed checkpoint through `git add` -----------------------------------------


def test_clean_of_a_fixed_checkpoint_matches_golden_metadata(repo: Path) -> None:
    """tests/golden/tiny.safetensors (BF16, U8 and F32 tensors, `__metadata__`, header padding) through the
    real filter gives tests/golden/tiny.safetensors.metadata-v2 byte for byte (its three tensors members of one
    pack), and checks out identical. tests/packs_test.py checks out the version-1 metadata earlier versions wrote."""
    checkpoint = (GOLDEN.parent / "tiny.safetensors").read_bytes()
    (repo / "tiny.safetensors").write_bytes(checkpoint)
    git(repo, "add", "tiny.safetensors")
    staged = subprocess.run(["git", "show", ":tiny.safetensors"], cwd=repo, capture_output=True, check=True).stdout
    assert staged == (GOLDEN.parent / "tiny.safetensors.metadata-v2").read_bytes()

    meta = metadata.parse(staged)
    store = Repo.discover(repo).store
    header_size = 8 + struct.unpack_from("<Q", checkpoint)[0]
    blob = objects.decode(store.get(meta.file["header"]["object"], verify=True))
    assert (blob.kind, bytes(blob.buffers["bytes"].data)) == ("blob", checkpoint[:header_size])
    offsets = {"b": (0, 12), "mask": (12, 22), "w": (22, 46)}
    for name, (begin, end) in offsets.items():
        entry = meta.params[name]
        raw = checkpoint[header_size + begin : header_size + end]
        assert entry.hash == tensor_hash(entry.dtype, entry.shape, raw)
        (link,) = entry.stored
        assert link.update == "dense" and link.packed and link.size == len(store.get(link.object, verify=True))
        assert bytes(objects.decode(packs.link_bytes(store, link)).buffers["value"].data) == raw

    (repo / "tiny.safetensors").unlink()
    git(repo, "checkout", "--", "tiny.safetensors")
    assert (repo / "tiny.safetensors").read_bytes() == checkpoint


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    assert metadata.json_depth(b'{"a":[1,{"b":[]}]}', 64) == 4
    assert metadata.json_depth(b'[[],[[]],{"a":{}}]', 64) == 3
    assert metadata.json_depth(b'{"a":"[[[{{\\"[[","b":[1]}', 64) == 2  # brackets and an escaped quote inside a string
    assert metadata.json_depth(b"[" * 100_000 + b"]" * 100_000, 64) == 65  # deeper than the limit
    assert metadata.json_depth(b"[" * 100_000, 64) == 65  # unbalanced: json.loads would still recurse on each
    assert metadata.json_depth(b"[[]", 64) == 2


def test_parse_refuses_deep_nesting_before_decoding() -> None:
    def nested(arrays: int) -> bytes:  # the top object, the file section, then `arrays` arrays
        return b'{"version":"git-theta/1","format":"x","file":{"x":' + b"[" * arrays + b"]" * arrays + b'},"params":{}}'

    with pytest.raises(MetadataError, match="nested more than 64 levels deep"):
        metadata.parse(nested(63), "m")
    assert metadata.parse(nested(62), "m").file["x"]  # 64 levels: accepted
