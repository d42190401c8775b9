"""Hostile GGUF files: every count, size and offset is checked before memory is committed; each refusal is one
line naming the file. Built by hand (struct), since the gguf package writes only valid files."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from conftest import git, theta
from hostile_support import RepoState, assert_refused, run_bounded

from git_theta.checkpoints import gguf as fmt
from git_theta.errors import CheckpointError


def string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def kv_u32(key: bytes, value: int) -> bytes:
    return string(key) + struct.pack("<II", 4, value)


def info(name: bytes, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        string(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", n) for n in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def gguf_bytes(
    kvs: list[bytes], infos: list[bytes], data: bytes = b"", *, version: int = 3, counts: tuple[int, int] | None = None
) -> bytes:
    tensors, keys = counts or (len(infos), len(kvs))
    head = b"GGUF" + struct.pack("<IQQ", version, tensors, keys) + b"".join(kvs) + b"".join(infos)
    return head + bytes(-len(head) % 32) + data


def refused(content: bytes) -> str:
    with pytest.raises(CheckpointError) as caught:
        fmt.GgufFormat().read(io.BytesIO(content), "m.gguf", _NoSink())  # type: ignore[arg-type]
    return str(caught.value)


class _NoSink:
    def add(self, name: str, tensor: object) -> None:
        pass

    def put_blob(self, data: bytes) -> dict[str, object]:
        return {"object": "0", "size": len(data)}


VALID = gguf_bytes([kv_u32(b"general.alignment", 32)], [info(b"w", [4])], bytes(16))


@pytest.mark.parametrize("version", [2, 3])
def test_a_hand_built_file_is_valid_in_versions_2_and_3(version: int) -> None:
    content = VALID[:4] + struct.pack("<I", version) + VALID[8:]
    found = fmt.GgufFormat().read(io.BytesIO(content), "m.gguf", _NoSink())  # type: ignore[arg-type]
    assert found == {"skeleton": {"object": "0", "size": len(VALID) - 16}}


CASES = [
    ("huge tensor count", gguf_bytes([], [], counts=(1 << 40, 0)), "1099511627776 tensors, more than the limit"),
    ("huge KV count", gguf_bytes([], [], counts=(0, 1 << 40)), "metadata keys, more than the limit"),
    ("huge key length", b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1 << 50), "string of 1125899906842624 bytes"),
    ("huge array", gguf_bytes([string(b"a") + struct.pack("<IIQ", 9, 0, 1 << 40)], []), "array items in 'a'"),
    (
        "nested arrays",
        gguf_bytes([string(b"a") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) * 9], []),
        "deeper than the limit of 8",
    ),
    ("truncated header", VALID[:30], "file ends early, inside the GGUF header"),
    ("truncated data", VALID[:-3], "tensor 'w' (data offset 0, 16 bytes): file ends early"),
    (
        "overlapping tensors",
        gguf_bytes([], [info(b"a", [4]), info(b"b", [4], offset=8)], bytes(24)),
        "tensor 'b' (offset 8) overlaps 'a', which ends at 16",
    ),
    (
        "duplicate tensor",
        gguf_bytes([], [info(b"a", [4]), info(b"a", [4], offset=16)], bytes(32)),
        "tensor name 'a' appears twice",
    ),
    ("duplicate key", gguf_bytes([kv_u32(b"k", 1), kv_u32(b"k", 2)], []), "metadata key 'k' appears twice"),
    ("alignment 3", gguf_bytes([kv_u32(b"general.alignment", 3)], []), "general.alignment 3 is not a power of two"),
    ("alignment 2^30", gguf_bytes([kv_u32(b"general.alignment", 1 << 30)], []), "up to the limit of 1048576"),
    (
        "alignment as a string",
        gguf_bytes([string(b"general.alignment") + struct.pack("<I", 8) + string(b"32")], []),
        "value type 8, not UINT32",
    ),
    ("rank 65", gguf_bytes([], [info(b"w", [1] * 65)]), "65 dimensions, more than the limit of 64"),
    ("unknown ggml type", gguf_bytes([], [info(b"w", [4], ggml_type=99)]), "unknown ggml type 99"),
    ("unknown value type", gguf_bytes([string(b"k") + struct.pack("<I", 77)], []), "unknown GGUF value type 77"),
    ("Q8_0 not whole blocks", gguf_bytes([], [info(b"q", [33], ggml_type=8)]), "Q8_0 needs dims[0] a multiple of 32"),
    ("size past 2^63", gguf_bytes([], [info(b"w", [1 << 62, 8])]), "exceeds"),
    ("offset past 2^63", gguf_bytes([], [info(b"w", [4], offset=1 << 63)]), "past any file"),
    ("gaps past the skeleton limit", gguf_bytes([], [info(b"w", [4], offset=1 << 40)]), "gaps between tensors take"),
    ("version 1", VALID[:4] + struct.pack("<I", 1) + VALID[8:], "GGUF version 1 is not supported"),
    ("big-endian", VALID[:4] + struct.pack(">I", 3) + VALID[8:], "big-endian GGUF files are not supported"),
    ("name not UTF-8", gguf_bytes([], [info(b"\xff", [4])], bytes(16)), "is not valid UTF-8"),
]


@pytest.mark.parametrize("content, message", [(c, m) for _, c, m in CASES], ids=[case for case, _, _ in CASES])
def test_hostile_headers_are_refused_with_the_reason(content: bytes, message: str) -> None:
    assert message in refused(content)


def test_hostile_files_are_refused_by_git_add_in_bounded_memory(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    theta(repo, "install", "--local")
    theta(repo, "track", "*.gguf")
    declared_2_gib = gguf_bytes([], [info(b"w", [1 << 29])], bytes(4000))
    for content, message in (
        (declared_2_gib, "file ends early"),
        (CASES[0][1], CASES[0][2]),
        (CASES[3][1], CASES[3][2]),
    ):
        (repo / "model.gguf").write_bytes(content)
        state = RepoState.capture(repo)
        result = run_bounded(["git", "add", "model.gguf"], cwd=repo, max_rss_mb=300, max_seconds=30)
        assert message in assert_refused(result, "model.gguf")
        state.assert_unchanged(repo)


def test_the_format_is_found_from_content_and_can_be_forced(tmp_path: Path) -> None:
    assert fmt.GgufFormat.sniff(VALID[:4096], "weights.bin")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    theta(repo, "install", "--local")
    theta(repo, "track", "*.bin")
    (repo / ".gitattributes").write_text((repo / ".gitattributes").read_text() + "forced.bin theta-format=gguf\n")
    (repo / "weights.bin").write_bytes(VALID)
    (repo / "forced.bin").write_bytes(VALID)
    git(repo, "add", ".gitattributes", "weights.bin", "forced.bin")
    for name in ("weights.bin", "forced.bin"):
        assert '"format":"gguf"' in git(repo, "cat-file", "-p", f":{name}").stdout
    (repo / "forced.bin").write_bytes(b"\x08" + bytes(7) + b'{"a":1}')  # sniffs as safetensors: forced, it is not GGUF
    result = run_bounded(["git", "add", "forced.bin"], cwd=repo)
    assert "not a GGUF file" in assert_refused(result, "forced.bin")
