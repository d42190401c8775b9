"""The GGUF format: files written by the gguf package's own GGUFWriter, read back by our reader and by
gguf.GGUFReader, byte-identical through real git; quantized tensors as opaque packed groups."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from conftest import git, theta
from gguf.constants import GGMLQuantizationType as T

from git_theta.checkpoints.gguf import BLOCKS, PLAIN, GgufFormat, _Reader, read_header
from git_theta.dtypes import itemsize
from git_theta.tensor import Tensor

RNG = np.random.default_rng(7)


def q8(rows: int, columns: int, seed: int = 0) -> np.ndarray[Any, Any]:
    values = np.random.default_rng(seed).standard_normal((rows, columns)).astype(np.float32)
    return np.asarray(gguf.quants.quantize(values, T.Q8_0))


def base_tensors() -> dict[str, Any]:
    return {
        "token_embd.weight": RNG.standard_normal((6, 8)).astype(np.float32),
        "blk.0.attn_norm.weight": RNG.standard_normal(8).astype(np.float16),
        "blk.0.ffn_up.weight": q8(4, 64),
        "blk.0.ffn_down.weight": RNG.standard_normal((8, 3)).astype(np.float32),
        "blk.0.pos": np.arange(5, dtype=np.int32),
    }


def write_gguf(path: Path, tensors: Mapping[str, Any], alignment: int | None = None, **extra: Any) -> bytes:
    """A GGUF file written by the gguf package (Q8_0 arrays are passed as raw uint8 bytes)."""
    writer = gguf.GGUFWriter(path, "llama", **extra)
    writer.add_block_count(1)
    writer.add_token_list(["<s>", "hello", "world"])
    writer.add_array("test.floats", [0.5, -1.25])
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for name, array in tensors.items():
        if array.dtype == np.uint8:
            writer.add_tensor(name, array, raw_shape=array.shape, raw_dtype=T.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes() if path.exists() else b""  # a split writer writes model-0000k-of-0000n.gguf instead


class MemorySink:
    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.blobs: dict[str, bytes] = {}

    def add(self, name: str, tensor: Tensor) -> None:
        self.tensors[name] = Tensor(tensor.dtype, tensor.shape, bytes(tensor.data))

    def put_blob(self, data: bytes) -> dict[str, Any]:
        self.blobs[str(len(self.blobs))] = data
        return {"object": str(len(self.blobs) - 1), "size": len(data)}


class MemorySource:
    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        return (self.sink.tensors[name] for name in names)

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return self.sink.blobs[ref["object"]]


def round_trip(content: bytes) -> tuple[dict[str, Any], MemorySink, bytes]:
    from git_theta.metadata import ParamEntry

    sink = MemorySink()
    file = GgufFormat().read(io.BytesIO(content), "m.gguf", sink)
    params = {name: ParamEntry(t.dtype, t.shape, t.hash(), ()) for name, t in sink.tensors.items()}
    out = io.BytesIO()
    GgufFormat().write(file, params, MemorySource(sink), out)
    return file, sink, out.getvalue()


def test_groups_match_gguf_reader_and_the_file_comes_back_byte_for_byte(tmp_path: Path) -> None:
    content = write_gguf(tmp_path / "m.gguf", base_tensors())
    file, sink, rebuilt = round_trip(content)
    assert rebuilt == content
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert [t.name for t in reader.tensors] == list(sink.tensors)
    for info in reader.tensors:
        group = sink.tensors[info.name]
        assert bytes(group.data) == info.data.tobytes()
        if info.tensor_type in (T.F32, T.F16, T.I32):
            assert group.shape == info.data.shape  # numpy order: GGUF dims reversed
            assert group.shape == tuple(reversed([int(n) for n in info.shape]))
            assert group.dtype == info.tensor_type.name
        else:
            assert (group.dtype, group.shape) == ("U8", (info.n_bytes,))
    assert file["packed"] == {"blk.0.ffn_up.weight": {"shape": [4, 64], "type": "Q8_0"}}


def test_non_zero_padding_and_unusual_alignments_are_kept(tmp_path: Path) -> None:
    for alignment in (1, 8, 64, 4096):
        content = bytearray(write_gguf(tmp_path / f"a{alignment}.gguf", base_tensors(), alignment=alignment))
        header = read_header(_Reader(io.BytesIO(bytes(content))))
        content[header.header_end : header.data_start] = b"\xa5" * (header.data_start - header.header_end)
        ends = [header.data_start + t.offset + t.nbytes for t in header.tensors]
        starts = [header.data_start + t.offset for t in header.tensors[1:]] + [len(content)]
        for end, start in zip(ends, starts):
            content[end:start] = b"\x5a" * (start - end)
        content += b"\x77\x00\x01"  # bytes after the last tensor's padding
        assert alignment == 1 or content.count(b"\x5a") > 0
        _, _, rebuilt = round_trip(bytes(content))
        assert rebuilt == bytes(content), alignment


def test_every_ggml_type_of_the_gguf_package_is_known_with_its_block_size() -> None:
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        if qtype.value in PLAIN:
            assert (block, size) == (1, itemsize(PLAIN[qtype.value]))
        else:
            assert BLOCKS[qtype.value] == (qtype.name, block, size)


@pytest.fixture(scope="module")
def gguf_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "repo"
    path.mkdir()
    git(path, "init", "-q")
    theta(path, "install", "--local")
    theta(path, "track", "*.gguf")
    git(path, "add", ".gitattributes")
    git(path, "commit", "-q", "-m", "track gguf")
    return path


def objects(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".git" / "lfs" / "objects").rglob("*") if p.is_file()}


def test_round_trip_and_a_changed_tensor_stores_only_that_tensor_through_git(gguf_repo: Path) -> None:
    repo = gguf_repo
    tensors = base_tensors()
    content = write_gguf(repo / "model.gguf", tensors)
    git(repo, "add", "model.gguf")
    git(repo, "commit", "-q", "-m", "model")
    assert git(repo, "cat-file", "-p", "HEAD:model.gguf").stdout.startswith("{")  # metadata, not the model
    (repo / "model.gguf").unlink()
    git(repo, "checkout", "--", "model.gguf")
    assert (repo / "model.gguf").read_bytes() == content
    before = objects(repo)
    tensors["blk.0.ffn_down.weight"] = tensors["blk.0.ffn_down.weight"] + 1
    write_gguf(repo / "model.gguf", tensors)
    git(repo, "add", "model.gguf")
    git(repo, "commit", "-q", "-m", "change one tensor")
    assert len(objects(repo) - before) == 1  # the header skeleton and the other tensors are reused
    view = git(repo, "show", "HEAD", "--", "model.gguf").stdout
    assert "blk.0.ffn_down.weight" in view
    view = theta(repo, "textconv", "model.gguf").stdout
    assert f"5 groups, {48 + 8 + 4 * 64 + 24 + 5:,} parameters" in view.splitlines()[0]  # Q8_0 [4,64]: 256
    line = next(line for line in view.splitlines() if "ffn_up" in line)
    assert "Q8_0" in line and "[4,64]" in line and "(quantized: shown by hash only)" in line
    # A quantized change: shown by type, no numbers computed on its bytes.
    tensors["blk.0.ffn_up.weight"] = q8(4, 64, seed=1)
    write_gguf(repo / "model.gguf", tensors)
    shown = theta(repo, "diff").stdout
    row = next(line for line in shown.splitlines() if "ffn_up" in line)
    assert "Q8_0" in row and "[4,64]" in row and "quantized: shown by hash only" in row
    git(repo, "checkout", "--", "model.gguf")


def test_split_files_with_a_track_pattern(gguf_repo: Path, tmp_path: Path) -> None:
    repo = gguf_repo
    (repo / "split").mkdir()
    writer_tensors = base_tensors()
    write_gguf(repo / "split" / "model.gguf", writer_tensors, split_max_tensors=2)
    shards = sorted((repo / "split").iterdir())
    assert [p.name for p in shards] == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    contents = {p.name: p.read_bytes() for p in shards}
    assert gguf.GGUFReader(shards[0]).fields["split.count"].contents() == 3
    git(repo, "add", "split")
    git(repo, "commit", "-q", "-m", "split model")
    for name in contents:
        assert git(repo, "cat-file", "-p", f"HEAD:split/{name}").stdout.startswith("{")
        (repo / "split" / name).unlink()
    git(repo, "checkout", "--", "split")
    assert {p.name: p.read_bytes() for p in sorted((repo / "split").iterdir())} == contents


def test_merges_take_both_sides_and_refuse_averaging_a_q8_0_tensor(gguf_repo: Path) -> None:
    repo = gguf_repo
    tensors = base_tensors()
    write_gguf(repo / "merge.gguf", tensors)
    git(repo, "add", "merge.gguf")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "left")
    left = dict(tensors, **{"token_embd.weight": tensors["token_embd.weight"] * 2})
    write_gguf(repo / "merge.gguf", left)
    git(repo, "commit", "-q", "-am", "left")
    git(repo, "checkout", "-q", "-")
    git(repo, "checkout", "-q", "-b", "right")
    right = dict(tensors, **{"blk.0.ffn_down.weight": tensors["blk.0.ffn_down.weight"] - 3})
    write_gguf(repo / "merge.gguf", right)
    git(repo, "commit", "-q", "-am", "right")
    git(repo, "merge", "-q", "--no-edit", "left")
    merged = gguf.GGUFReader(repo / "merge.gguf")
    found = {t.name: t.data for t in merged.tensors}
    assert np.array_equal(found["token_embd.weight"], left["token_embd.weight"])
    assert np.array_equal(found["blk.0.ffn_down.weight"], right["blk.0.ffn_down.weight"])
    expected = dict(
        tensors,
        **{"token_embd.weight": left["token_embd.weight"], "blk.0.ffn_down.weight": right["blk.0.ffn_down.weight"]},
    )
    assert (repo / "merge.gguf").read_bytes() == write_gguf(repo / "expected.gguf", expected)
    (repo / "expected.gguf").unlink()
    # Both sides change the Q8_0 tensor: averaging its bytes is refused, naming it and its type.
    git(repo, "checkout", "-q", "-b", "q-left")
    q_left = write_gguf(repo / "merge.gguf", dict(expected, **{"blk.0.ffn_up.weight": q8(4, 64, seed=2)}))
    git(repo, "commit", "-q", "-am", "q left")
    git(repo, "checkout", "-q", "right")
    write_gguf(repo / "merge.gguf", dict(expected, **{"blk.0.ffn_up.weight": q8(4, 64, seed=3)}))
    git(repo, "commit", "-q", "-am", "q right")
    result = git(repo, "-c", "theta.merge.strategy=average", "merge", "--no-edit", "q-left", check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("git-theta: error:")]
    assert len(lines) == 1, result.stderr
    assert "'blk.0.ffn_up.weight' is a Q8_0 [4,64] tensor" in lines[0] and "average" in lines[0]
    git(repo, "merge", "--abort")
    # Picking a side needs no arithmetic: theirs is taken, byte for byte.
    git(repo, "-c", "theta.merge.strategy=theirs", "merge", "-q", "--no-edit", "q-left")
    assert (repo / "merge.gguf").read_bytes() == q_left


def test_the_skeleton_is_every_non_tensor_byte_in_file_order() -> None:
    # Locks the file section's layout: a Q8_0 tensor at data offset 0 (34 bytes), an F32 [2, 3] one at 40 (a
    # 6-byte gap of 0xEE), then 2 bytes after the last tensor; alignment 8 from general.alignment.
    def s(text: bytes) -> bytes:
        return struct.pack("<Q", len(text)) + text

    head = b"GGUF" + struct.pack("<IQQ", 3, 2, 1) + s(b"general.alignment") + struct.pack("<II", 4, 8)
    head += s(b"q") + struct.pack("<IQIQ", 1, 32, 8, 0) + s(b"w") + struct.pack("<IQQIQ", 2, 3, 2, 0, 40)
    head += b"\x01" * (-len(head) % 8)  # non-zero padding before the data section
    content = head + bytes(range(34)) + b"\xee" * 6 + np.arange(6, dtype=np.float32).tobytes() + b"\x00\x07"
    file, sink, rebuilt = round_trip(content)
    assert rebuilt == content
    assert file == {
        "skeleton": {"object": "0", "size": len(head) + 8},
        "packed": {"q": {"shape": [32], "type": "Q8_0"}},
    }
    assert sink.blobs["0"] == head + b"\xee" * 6 + b"\x00\x07"
    assert sink.tensors["q"] == Tensor("U8", (34,), bytes(range(34)))
    assert sink.tensors["w"].shape == (2, 3) and sink.tensors["w"].numpy().tolist() == [[0, 1, 2], [3, 4, 5]]
