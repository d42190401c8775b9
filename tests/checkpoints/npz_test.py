"""NumPy .npz archives through real git: every checkout is byte-identical to what was added."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git

from git_theta.checkpoints.npz import NpzFormat
from git_theta.clean import StoringSink
from git_theta.smudge import StoreSource
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor

Saver = Callable[..., None]


def _arrays(version: int) -> dict[str, Any]:
    rng = np.random.default_rng(version)
    bits = np.array([0x80000000, 0x7FC00001, 0xFFC12345, version], dtype=np.uint32).view(
        np.float32
    )  # -0.0, NaN payloads
    return {
        "weight": rng.normal(size=(16, 8)).astype(np.float32),
        "bias": bits,
        "half": rng.normal(size=7).astype(np.float16),
        "ids": np.arange(10, dtype=np.int64) * version,
        "mask": rng.random(9) > 0.5,
        "fortran": np.asfortranarray(rng.normal(size=(3, 5))),
        "frozen": np.linspace(0, 1, 33),  # the same in every version
        "scalar": np.float64(version),
        "empty": np.zeros((0, 4), dtype=np.int8),
        "labels": np.array(["cat", "dog"]),  # a string array: kept whole in the skeleton
    }


@pytest.mark.parametrize("saver", [np.savez, np.savez_compressed], ids=["savez", "savez_compressed"])
def test_three_versions_are_byte_identical(repo: Path, saver: Saver) -> None:
    commits, originals = [], []
    for version in (1, 2, 3):
        saver(repo / "arrays.npz", **_arrays(version))
        originals.append((repo / "arrays.npz").read_bytes())
        git(repo, "add", "arrays.npz")
        git(repo, "commit", "-q", "-m", f"v{version}")
        commits.append(git(repo, "rev-parse", "HEAD").stdout.strip())
    first = git(repo, "show", f"{commits[0]}:arrays.npz").stdout
    assert '"format":"npz"' in first and '"kept":["labels.npy"]' in first
    for name in ("weight", "bias", "fortran", "scalar", "empty"):
        assert f'\n"{name}":' in first
    third = git(repo, "show", f"{commits[2]}:arrays.npz").stdout
    # unchanged: the same tensor hash (its link may point to a copy: the repack policy, docs/formats.md 3a)
    assert _hash(first, "frozen") == _hash(third, "frozen") and _hash(first, "weight") != _hash(third, "weight")
    for commit, original in zip(commits, originals):
        (repo / "arrays.npz").unlink()
        git(repo, "checkout", "-q", "--force", commit)
        assert (repo / "arrays.npz").read_bytes() == original
        assert git(repo, "status", "--porcelain").stdout == ""
    with np.load(repo / "arrays.npz") as loaded:
        assert loaded["fortran"].flags.f_contiguous and loaded["fortran"].shape == (3, 5)


def _line(metadata: str, name: str) -> str:
    return next(line for line in metadata.splitlines() if line.startswith(f'"{name}":'))


def _hash(metadata: str, name: str) -> str:
    return json.loads("{" + _line(metadata, name).rstrip(",") + "}")[name]["hash"]


def test_fortran_array_is_stored_in_its_logical_shape(repo: Path) -> None:
    array = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    np.savez(repo / "f.npz", a=array)
    git(repo, "add", "f.npz")
    assert '"shape":[2,3]' in _line(git(repo, "show", ":f.npz").stdout, "a")


def _level1_archive(path: Path) -> None:
    """Deflated at level 1, not numpy's default: re-deflating cannot reproduce it, so it is kept whole."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("w.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.tile(np.arange(64, dtype=np.float32), 64))


def test_unusual_archives_are_byte_identical(repo: Path) -> None:
    _level1_archive(repo / "level1.npz")
    np.savez(repo / "empty.npz")
    np.savez(
        repo / "odd.npz", big=np.arange(4, dtype=">f4"), obj=np.array([{"a": 1}, None], dtype=object), ok=np.ones(3)
    )
    originals = {name: (repo / name).read_bytes() for name in ("level1.npz", "empty.npz", "odd.npz")}
    git(repo, "add", *originals)
    git(repo, "commit", "-q", "-m", "unusual")
    assert '"kept":["w.npy"]' in git(repo, "show", "HEAD:level1.npz").stdout
    odd = git(repo, "show", "HEAD:odd.npz").stdout
    assert '"kept":["big.npy","obj.npy"]' in odd and '\n"ok":' in odd
    for name, _data in originals.items():
        (repo / name).unlink()
    git(repo, "checkout", "--", *originals)
    for name, data in originals.items():
        assert (repo / name).read_bytes() == data, name
    assert git(repo, "status", "--porcelain").stdout == ""


def _index(repo: Path) -> str:
    return git(repo, "ls-files", "-s").stdout


def test_corrupt_archives_fail_add(repo: Path) -> None:
    np.savez(repo / "a.npz", w=np.arange(100, dtype=np.float32))
    good = (repo / "a.npz").read_bytes()
    git(repo, "add", "a.npz")
    before = _index(repo)
    flipped = bytearray(good)
    flipped[good.index(b"w.npy") + 200] ^= 0x01  # inside the array data
    cases = {
        bytes(flipped): "CRC-32 mismatch",
        good[:-40]: "not a valid zip archive",
        good[:300]: "not a valid zip archive",
    }
    for broken, reason in cases.items():
        (repo / "a.npz").write_bytes(broken)
        result = git(repo, "add", "a.npz", check=False)
        assert result.returncode != 0
        assert "a.npz" in result.stderr and reason in result.stderr, result.stderr
        assert _index(repo) == before


def test_sniff() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones(2))
    assert NpzFormat.sniff(buffer.getvalue()[:4096], "x.npz")
    empty = io.BytesIO()
    np.savez(empty)
    assert NpzFormat.sniff(empty.getvalue(), "x.npz") and not NpzFormat.sniff(empty.getvalue(), "x.zip")
    assert not NpzFormat.sniff(b"PK\x03\x04" + b"\x00" * 22 + b"\x10\x00\x00\x00archive/data.pkl", "x.npz")


def test_file_for_params_rebuilds_headers_for_new_values(tmp_path: Path) -> None:
    """A merge that changes values (CRCs!) or drops and adds arrays gets a valid archive back."""
    store = ObjectStore(tmp_path / "lfs")
    old = io.BytesIO()
    np.savez_compressed(old, b=np.arange(4.0), a=np.ones((2, 2), dtype=np.float32))
    sink = StoringSink(store, [])
    file = NpzFormat().read(io.BytesIO(old.getvalue()), "m.npz", sink)
    before = sink.finish()
    new_sink = StoringSink(store, [])
    new_sink.add("b", Tensor.from_numpy(np.arange(4.0) * -1))
    new_sink.add("c", Tensor.from_numpy(np.array([7], dtype=np.int16)))
    after = new_sink.finish()
    new_file = NpzFormat().file_for_params(file, before, after, StoreSource(store, after, "m.npz"), new_sink)
    out = io.BytesIO()
    NpzFormat().write(new_file, after, StoreSource(store, after, "m.npz"), out)
    out.seek(0)
    with np.load(out) as loaded:
        assert list(loaded) == ["b", "c"]
        assert np.array_equal(loaded["b"], np.arange(4.0) * -1) and loaded["c"].tolist() == [7]
    assert any("deflated" in segment for segment in new_file["layout"])  # stays compressed like the original
    again = NpzFormat().file_for_params(file, before, after, StoreSource(store, after, "m.npz"), new_sink)
    assert again == new_file  # deterministic: the same merge gives the same archive
