"""Hostile checkpoints through real `git add`: each is refused with exit 1 from the filter (git says 128), one
`git-theta:` line naming the file and the field, no Python internal as the reason, bounded memory and time,
nothing executed, and the index, working tree and store as they were.

Cases are built from small valid files (safetensors by hand, `.pt` with torch.save, `.npz` with numpy) and then
broken in one place each; zip fields are forged in the central directory, which is what zipfile (and torch) trust.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git
from hostile_support import RepoState, assert_refused, run_bounded

MAX_RSS_MB = 300
# What an input-caused Python internal looks like when it leaks into the message.
PYTHON_INTERNAL = re.compile(
    r"\b(OverflowError|MemoryError|TypeError|KeyError|IndexError|AttributeError|RecursionError|UnicodeDecodeError|struct\.error)\b"
)


def _safetensors(header: Any, data: bytes = b"", raw: bytes | None = None) -> bytes:
    encoded = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def _one(shape: Any = (4,), dtype: Any = "F32", offsets: Any = (0, 16), data: bytes = bytes(16)) -> bytes:
    return _safetensors(
        {
            "w": {
                "dtype": dtype,
                "shape": list(shape) if isinstance(shape, tuple) else shape,
                "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets,
            }
        },
        data,
    )


def _raw_header(text: bytes, data: bytes = bytes(16)) -> bytes:
    return _safetensors(None, data, raw=text)


ENTRY = b'{"dtype":"F32","shape":[4],"data_offsets":[0,16]}'

SAFETENSORS: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated header": (lambda: _one()[:30], "ends early"),
    "header length 1": (lambda: struct.pack("<Q", 1) + b"{" + bytes(100), "not a checkpoint"),
    "header length 2^63": (lambda: struct.pack("<Q", 1 << 63) + b"{}" + bytes(100), "not a checkpoint"),
    "header not json": (lambda: _raw_header(b"{this is not json}"), "not valid JSON"),
    "entry not an object": (lambda: _raw_header(b'{"w":1}'), "malformed header entry"),
    "repeated tensor name": (lambda: _raw_header(b'{"w":' + ENTRY + b',"w":' + ENTRY + b"}"), "appears twice"),
    "NaN offset": (lambda: _raw_header(b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,NaN]}}'), "NaN"),
    "1e400 offset": (
        lambda: _raw_header(b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1e400]}}'),
        "data_offsets",
    ),
    "5000-digit offset": (
        lambda: _raw_header(b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,' + b"9" * 5000 + b"]}}"),
        "not valid JSON",
    ),
    "bool dimension": (lambda: _one(shape=[True, 4]), "invalid shape"),
    "float dimension": (lambda: _one(shape=[2.0, 2]), "invalid shape"),
    "negative dimension": (lambda: _one(shape=[-4]), "invalid shape"),
    "shape not a list": (lambda: _one(shape="4"), "invalid shape"),
    "65 dimensions": (lambda: _one(shape=[1] * 65, offsets=(0, 4), data=bytes(4)), "invalid shape"),
    "size overflows 64 bits": (lambda: _one(shape=[1 << 62, 1 << 62], offsets=(0, 1 << 126)), "exceeds"),
    "unknown dtype": (lambda: _one(dtype="F128"), "unsupported dtype"),
    "dtype not a string": (lambda: _one(dtype=["F32"]), "unsupported dtype"),
    "offsets a string": (lambda: _one(offsets="ab"), "data_offsets"),
    "offsets reversed": (lambda: _one(offsets=(16, 0)), "data_offsets"),
    "offsets not fitting the shape": (lambda: _one(offsets=(0, 12), data=bytes(12)), "do not fit"),
    "offsets with a gap": (lambda: _one(offsets=(8, 24), data=bytes(24)), "contiguous"),
    "overlapping tensors": (
        lambda: _safetensors(
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
            },
            bytes(24),
        ),
        "contiguous",
    ),
    "entry missing data_offsets": (lambda: _raw_header(b'{"w":{"dtype":"F32","shape":[4]}}'), "malformed header entry"),
    "declares a 2 GiB tensor": (
        lambda: _one(shape=[1 << 29], offsets=(0, 1 << 31), data=bytes(4000)),
        "file ends early",
    ),
    "last tensor truncated": (lambda: _one(data=bytes(10)), "file ends early"),
    "bytes after the last tensor": (lambda: _one(data=bytes(20)), "after the last tensor"),
    "name not UTF-8": (lambda: _raw_header(b'{"w\xff":' + ENTRY + b"}"), "not valid JSON"),
    "name a lone surrogate": (lambda: _raw_header(b'{"\\ud800":' + ENTRY + b"}"), "lone surrogate"),
    "__metadata__ nested 100,000 deep": (
        lambda: _raw_header(b'{"__metadata__":' + b"[" * 100_000 + b"]" * 100_000 + b',"w":' + ENTRY + b"}"),
        "nested too deeply",
    ),
    "__metadata__ not strings": (
        lambda: _raw_header(b'{"__metadata__":{"a":{"b":1}},"w":' + ENTRY + b"}"),
        "__metadata__",
    ),
}


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _forge(content: bytes, member: str, field: str, value: int) -> bytes:
    """`content` with one central-directory field of `member` replaced (what zipfile reads as the truth)."""
    offset = {"compress_size": 20, "file_size": 24}[field]
    data = bytearray(content)
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        name_length = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + name_length].decode() == member:
            data[at + offset : at + offset + 4] = value.to_bytes(4, "little")
            return bytes(data)
        at = data.find(b"PK\x01\x02", at + 46)
    raise AssertionError(f"no member {member}")


def _directory_moved(content: bytes, by: int = 100) -> bytes:
    """`content` whose end record puts the central directory `by` bytes later than it is: zipfile then places
    every member `by` bytes earlier, the first one before the start of the file."""
    data = bytearray(content)
    at, field, width = (
        (data.rindex(b"PK\x06\x06"), 48, 8) if b"PK\x06\x06" in data else (data.rindex(b"PK\x05\x06"), 16, 4)
    )
    offset = int.from_bytes(data[at + field : at + field + width], "little")
    data[at + field : at + field + width] = (offset + by).to_bytes(width, "little")
    return bytes(data)


def _torch_file(obj: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _shared_lists(levels: int) -> list[Any]:
    shared: list[Any] = [[]]
    for _ in range(levels):
        shared = [shared, shared]
    return shared


def _deep_list(levels: int) -> list[Any]:
    deep: list[Any] = []
    for _ in range(levels):
        deep = [deep]
    return deep


def _self_holding() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


class _RunsCommand:
    """Pickles as a call of os.system: what a hostile collaborator would put in a .pt file."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def _evil_zip(command: str) -> bytes:
    payload = pickle.dumps({"w": _RunsCommand(command)}, protocol=2)
    return _zip([("archive/data.pkl", payload), ("archive/byteorder", b"little"), ("archive/version", b"3\n")])


def _evil_legacy(command: str) -> bytes:
    import torch

    head = b"".join(
        pickle.dumps(value, protocol=2)
        for value in (
            torch.serialization.MAGIC_NUMBER,
            torch.serialization.PROTOCOL_VERSION,
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
        )
    )
    return head + pickle.dumps({"w": _RunsCommand(command)}, protocol=2) + pickle.dumps([], protocol=2)


def _small_pt() -> bytes:
    import torch

    return _torch_file({"w": torch.arange(4, dtype=torch.float32)})


PYTORCH: dict[str, tuple[Callable[[], bytes], str]] = {
    "containers shared 25 levels (2^25 nodes)": (
        lambda: _torch_file({"w": _torch_zeros(), "x": _shared_lists(25)}),
        "structure nodes",
    ),
    "containers shared 20 levels (2^21 copied nodes)": (
        lambda: _torch_file({"w": _torch_zeros(), "x": _shared_lists(20)}),
        "copying them adds",
    ),
    "lists nested 40 deep": (lambda: _torch_file({"w": _torch_zeros(), "x": _deep_list(40)}), "more than 32 deep"),
    "a list holding itself": (lambda: _torch_file({"w": _torch_zeros(), "x": _self_holding()}), "more than 32 deep"),
    "data.pkl declares 300 MiB": (lambda: _forge(_small_pt(), "archive/data.pkl", "file_size", 300 << 20), "limit"),
    "storage runs past the end": (
        lambda: _forge(_small_pt(), "archive/data/0", "compress_size", 1 << 30),
        "outside the",
    ),
    "truncated zip": (lambda: _small_pt()[:400], "pytorch"),
    "members placed before the file starts": (lambda: _directory_moved(_small_pt()), "outside the"),
}


def _torch_zeros() -> Any:
    import torch

    return torch.zeros(4)


def _npz(compressed: bool = False, **arrays: Any) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _flip_byte(content: bytes, needle: bytes, delta: int = 1) -> bytes:
    at = content.rindex(needle)
    return content[:at] + bytes([(content[at] + delta) % 256]) + content[at + 1 :]


NPZ: dict[str, tuple[Callable[[], bytes], str]] = {
    "deflate bomb declares 4 GiB": (
        lambda: _forge(_npz(True, w=np.zeros(1000, np.float32)), "w.npy", "file_size", 0xFFFF0000),
        "more than deflate can hold",
    ),
    "member runs past the end": (
        lambda: _forge(_npz(w=np.zeros(4, np.float32)), "w.npy", "compress_size", 1 << 30),
        "outside the",
    ),
    "members placed before the file starts": (lambda: _directory_moved(_npz(w=np.zeros(4, np.float32))), "outside the"),
    "truncated archive": (lambda: _npz(w=np.zeros(256, np.float32))[:300], "not a valid zip archive"),
    "stored array CRC mismatch": (
        lambda: _flip_byte(_npz(w=np.arange(64, dtype=np.float32)), np.float32(63).tobytes()),
        "CRC-32",
    ),
    "corrupt deflate data": (lambda: _corrupt_deflate(), "w.npy"),
    "not a zip after its magic": (
        lambda: b"PK\x03\x04" + bytes(22) + struct.pack("<HH", 5, 0) + b"w.npy" + bytes(200),
        "not a valid zip archive",
    ),
}


def _corrupt_deflate() -> bytes:
    content = bytearray(_npz(True, w=np.arange(4096, dtype=np.float32)))
    start = 30 + len("w.npy") + 20  # inside the member's deflate stream (after its local header and zip64 extra)
    content[start + 10 : start + 30] = bytes(20)
    return bytes(content)


CASES = [("model.safetensors", name, case) for name, case in SAFETENSORS.items()]
CASES += [("model.pt", name, case) for name, case in PYTORCH.items()]
CASES += [("arrays.npz", name, case) for name, case in NPZ.items()]


@pytest.mark.parametrize("filename, name, case", CASES, ids=[f"{f}: {n}" for f, n, _ in CASES])
def test_hostile_checkpoint_is_refused_at_add(
    repo: Path, filename: str, name: str, case: tuple[Callable[[], bytes], str]
) -> None:
    build, reason = case
    (repo / filename).write_bytes(build())
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", filename], cwd=repo, max_rss_mb=MAX_RSS_MB, max_seconds=30)
    line = assert_refused(result, filename)
    assert reason in line, line
    assert not PYTHON_INTERNAL.search(line), f"a Python internal is the reason: {line}"
    state.assert_unchanged(repo)


@pytest.mark.parametrize(
    "filename, build", [("model.pt", _evil_zip), ("model.pt", _evil_legacy)], ids=["zip", "legacy"]
)
def test_a_pickle_calling_os_system_never_runs(
    repo: Path, tmp_path: Path, filename: str, build: Callable[[str], bytes]
) -> None:
    marker = tmp_path / "ran"
    (repo / filename).write_bytes(build(f"touch {marker}"))
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", filename], cwd=repo, max_rss_mb=MAX_RSS_MB, max_seconds=30)
    line = assert_refused(result, filename)
    assert not marker.exists(), "the pickle ran a command"
    assert not PYTHON_INTERNAL.search(line), line
    state.assert_unchanged(repo)


def test_an_npy_header_numpy_cannot_parse_stays_whole(repo: Path) -> None:
    # numpy's header parser raised tokenize.TokenError here, which became the reason `git add` failed.
    member = (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", 118)
        + b"{'descr': '<f4', 'fortran_order': False, 'shape': (4,"
        + b" " * 66
        + b"\n"
        + bytes(16)
    )
    (repo / "arrays.npz").write_bytes(_zip([("w.npy", member)]))
    result = run_bounded(["git", "add", "arrays.npz"], cwd=repo, max_rss_mb=MAX_RSS_MB, max_seconds=30)
    assert result.returncode == 0, result.describe()
    assert '"kept":["w.npy"]' in git(repo, "show", ":arrays.npz").stdout


def test_an_npy_header_declaring_a_huge_array_stays_whole_and_costs_nothing(repo: Path) -> None:
    # The member's size, not its .npy header, says how much data there is: a lying header keeps the member whole.
    header = np.lib.format.header_data_from_array_1_0(np.zeros(4, np.float32))
    header["shape"] = (1 << 40,)
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    (repo / "arrays.npz").write_bytes(_zip([("w.npy", npy.getvalue() + bytes(16))]))
    result = run_bounded(["git", "add", "arrays.npz"], cwd=repo, max_rss_mb=MAX_RSS_MB, max_seconds=30)
    assert result.returncode == 0, result.describe()
    assert '"kept":["w.npy"]' in git(repo, "show", ":arrays.npz").stdout


def test_the_documented_limits_are_the_code_s() -> None:
    # docs/formats.md 2a: one block per format, its header naming the module(s) (`checkpoints/x.py`) whose
    # constants the block documents as `MAX_NAME` = value. Formats reuse names (MAX_HEADER_BYTES), so each
    # documented value is checked against its own block's modules.
    text = (Path(__file__).parents[2] / "docs" / "formats.md").read_text()
    section = text[text.index("## 2a. Checkpoint files") : text.index("## 3. Objects")]
    blocks = re.split(r"^(?=\*\*)", section, flags=re.M)[1:]
    checked = 0
    for block in blocks:
        header = block.split("\n", 1)[0]
        paths = re.findall(r"`(?:git_theta/)?(checkpoints/[a-z_/]+)\.py`", header)
        modules = [importlib.import_module("git_theta." + path.replace("/", ".")) for path in paths]
        for name, value in re.findall(r"`(MAX_[A-Z_]+)` = (2\^\d+ - 1|[0-9,]+(?: [KM]iB)?)", block):
            power = re.fullmatch(r"2\^(\d+) - 1", value)
            if power:
                documented = (1 << int(power.group(1))) - 1
            elif value.endswith(" MiB"):
                documented = int(value.removesuffix(" MiB")) << 20
            elif value.endswith(" KiB"):
                documented = int(value.removesuffix(" KiB")) << 10
            else:
                documented = int(value.replace(",", ""))
            code = [getattr(module, name) for module in modules if hasattr(module, name)]
            # (a module may import another's constant: every module of the block that has it must agree)
            assert code and set(code) == {documented}, (
                f"{header[:40]}: {name} = {value} in docs/formats.md, {code} in {paths}"
            )
            checked += 1
    assert checked >= 24  # every block found (safetensors, GGUF, PyTorch, ONNX, Flax, zip, every format)
