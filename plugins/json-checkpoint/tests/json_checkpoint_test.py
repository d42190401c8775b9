"""The json checkpoint plugin, found through its entry point and driven by real git."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from git_theta_json_checkpoint import JsonFormat, decode_tensor, encode_tensor

from git_theta import plugins
from git_theta.testing import assert_round_trip, run


def _checkpoint(version: int) -> dict[str, Any]:
    return {
        "z.weight": {"dtype": "F32", "shape": [2, 2], "data": [0.1 * version, -0.0, "inf", "nan:0x7fc00001"]},
        "a.bias": {"dtype": "BF16", "shape": [3], "data": [1.0, "-inf", "nan:0xffc1"]},
        "half": {"dtype": "F16", "shape": [2], "data": [65504.0, 5.960464477539063e-08]},
        "step": {"dtype": "I64", "shape": [], "data": [1000 * version]},
        "big": {"dtype": "U64", "shape": [1], "data": [2**64 - 1]},
        "mask": {"dtype": "BOOL", "shape": [2], "data": [True, False]},
        "empty": {"dtype": "F64", "shape": [0, 3], "data": []},
    }


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in document.items()) + "\n}\n")


def _bits(document: dict[str, Any]) -> list[tuple[str, str, list[int], bytes]]:
    """Every tensor as raw bytes: compares NaN payloads and -0.0 exactly."""
    return [
        (name, t.dtype, list(t.shape), bytes(t.data))
        for name, t in ((n, decode_tensor(n, v)) for n, v in document.items())
    ]


def test_registered_through_the_entry_point() -> None:
    assert plugins.get(plugins.CHECKPOINTS, "json") is JsonFormat


def test_three_versions_round_trip_through_git(repo: Path) -> None:
    commits, originals = [], []
    for version in (1, 2, 3):
        _write(repo / "model.json", _checkpoint(version))
        originals.append(json.loads((repo / "model.json").read_text()))
        run(repo, "git", "add", "model.json")
        run(repo, "git", "commit", "-q", "-m", f"v{version}")
        commits.append(run(repo, "git", "rev-parse", "HEAD").stdout.strip())
    assert '"format":"json"' in run(repo, "git", "show", "HEAD:model.json").stdout
    for commit, original in zip(commits, originals):
        (repo / "model.json").unlink()
        run(repo, "git", "checkout", "-q", "--force", commit)
        rebuilt = json.loads((repo / "model.json").read_text())
        assert list(rebuilt) == list(original)  # file order kept
        assert _bits(rebuilt) == _bits(original)
        assert run(repo, "git", "status", "--porcelain").stdout == ""
        # The file is rewritten in canonical form: deleting and checking it out again gives the same bytes, and
        # cleaning it again gives the committed metadata.
        assert_round_trip(repo, "model.json")


def test_bad_file_fails_add_and_keeps_the_index(repo: Path) -> None:
    before = run(repo, "git", "ls-files", "-s").stdout
    _write(repo / "model.json", {"w": {"dtype": "F32", "shape": [3], "data": [1.0, 2.0]}})
    result = run(repo, "git", "add", "model.json", check=False)
    assert result.returncode != 0
    assert "model.json" in result.stderr and "needs 3 values, data has 2" in result.stderr
    assert run(repo, "git", "ls-files", "-s").stdout == before


def test_values_round_trip_exactly() -> None:
    document = _checkpoint(7)
    for name, value in document.items():
        assert encode_tensor(decode_tensor(name, value)) == _normalized(value)


def _normalized(value: dict[str, Any]) -> dict[str, Any]:
    """What the writer emits: floats as exact doubles, NaN bits padded to the element width."""
    if value["dtype"] in ("F32", "BF16", "F16", "F64"):
        width = {"F64": 16, "F32": 8, "F16": 4, "BF16": 4}[value["dtype"]]
        data = []
        for v in value["data"]:
            if isinstance(v, str) and v.startswith("nan:0x"):
                data.append(f"nan:0x{int(v[6:], 16):0{width}x}")
            elif isinstance(v, float) and value["dtype"] != "F64":
                data.append(float(decode_tensor("x", {"dtype": value["dtype"], "shape": [1], "data": [v]}).numpy()[0]))
            else:
                data.append(v)
        return {**value, "data": data}
    return value


def test_negative_zero_keeps_its_sign() -> None:
    tensor = decode_tensor("x", {"dtype": "F32", "shape": [1], "data": [-0.0]})
    assert math.copysign(1.0, float(tensor.numpy()[0])) == -1.0 and bytes(tensor.data) == b"\x00\x00\x00\x80"
