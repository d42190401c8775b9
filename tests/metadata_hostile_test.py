"""Hostile committed metadata and store objects, through real checkout, fsck, `git diff`, merge and push.

A collaborator can commit any metadata blob and push any object whose name is its sha256. Each case here
commits such a thing straight into git (past the filters) and checks what a user sees: exit 1 (git's own
failure code when a filter refused), one `git-theta:` line naming the file, no traceback, bounded memory and
time, and the index, working tree and store as they were.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from conftest import git
from hostile_support import (
    RepoState,
    assert_nothing_internal,
    assert_refused,
    commit_blob,
    put_object,
    run_bounded,
    store_path,
)
from safetensors.numpy import save_file

from git_theta import objects

MODEL = "model.safetensors"
GOOD = {"tiny": np.arange(4, dtype=np.float32), "w": np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)}


def commit_good(repo: Path, tensors: dict[str, np.ndarray] = GOOD, path: str = MODEL) -> dict[str, Any]:
    """Add and commit a real checkpoint; returns its committed metadata."""
    save_file(tensors, str(repo / path))
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", f"add {path}")
    return json.loads(git(repo, "cat-file", "blob", f"HEAD:{path}").stdout)


def dump(meta: dict[str, Any]) -> bytes:
    """Metadata as JSON text that starts with the detection prefix (so it is parsed, not passed through)."""
    body = json.dumps({k: v for k, v in meta.items() if k != "version"}, separators=(",", ":"))
    return b'{"version":' + json.dumps(meta.get("version", "git-theta/1")).encode() + b"," + body[1:].encode()


def commit_hostile(repo: Path, data: bytes, path: str = MODEL) -> RepoState:
    """Commit `data` at `path`, remove the working file (so checkout must write it) and capture the state."""
    commit_blob(repo, path, data)
    (repo / path).unlink(missing_ok=True)
    return RepoState.capture(repo)


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def deep_bytes(levels: int) -> bytes:
    return b"[" * levels + b"0" + b"]" * levels


def checkout_refused(repo: Path, state: RepoState, path: str = MODEL, **bounds: Any) -> str:
    result = run_bounded(["git", "checkout", "--", path], cwd=repo, **bounds)
    line = assert_refused(result, path)
    state.assert_unchanged(repo)
    return line


def fsck_refused(repo: Path, path: str = MODEL, **bounds: Any) -> str:
    result = run_bounded(["git-theta", "fsck"], cwd=repo, **bounds)
    return assert_refused(result, path)


def raw_object(header: dict[str, Any], frames: list[bytes]) -> bytes:
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return objects.MAGIC + struct.pack("<I", len(head)) + head + b"".join(frames)


# 1. Nesting 100,000 levels deep: one bound in metadata.parse, seen from every entry point.


def deep_file_section(meta: dict[str, Any]) -> bytes:
    """The metadata with its file section nested 100,000 levels deep (json.dumps itself would recurse)."""
    text = dump(meta)
    start = text.index(b'"file":') + len(b'"file":')
    end = text.index(b',"params":')
    return text[:start] + b'{"header":' + text[start:end] + b',"x":' + deep_bytes(100_000) + b"}" + text[end:]


def test_deep_metadata_at_checkout(repo: Path) -> None:
    state = commit_hostile(repo, deep_file_section(commit_good(repo)))
    assert "nested more than 64 levels deep" in checkout_refused(repo, state)


def test_deep_metadata_in_fsck(repo: Path) -> None:
    commit_hostile(repo, deep_file_section(commit_good(repo)))
    assert "levels deep" in fsck_refused(repo)


def test_deep_metadata_in_git_diff(repo: Path) -> None:
    commit_hostile(repo, deep_file_section(commit_good(repo)))
    result = run_bounded(["git", "diff", "HEAD~1", "HEAD", "--", MODEL], cwd=repo)
    assert_nothing_internal(result)
    # textconv fails for that version: git says so and stops, naming the file
    assert result.returncode != 0 and MODEL in result.stderr and "levels deep" in result.stderr, result.describe()
    assert len([line for line in result.stderr.splitlines() if line.startswith("git-theta:")]) == 1, result.describe()


def test_deep_metadata_in_the_merge_driver(repo: Path) -> None:
    good = commit_good(repo)
    git(repo, "checkout", "-q", "-b", "theirs")
    commit_blob(repo, MODEL, deep_file_section(good))
    git(repo, "checkout", "-q", "-f", "main")
    commit_good(repo, {**GOOD, "tiny": np.ones(4, dtype=np.float32)})
    result = run_bounded(["git", "merge", "-q", "--no-edit", "theirs"], cwd=repo)
    assert result.returncode == 1, result.describe()
    assert_nothing_internal(result)
    lines = [line for line in result.stderr.splitlines() if line.startswith("git-theta:")]
    assert len(lines) == 1 and MODEL in lines[0] and "levels deep" in lines[0], result.describe()
    git(repo, "merge", "--abort")
    assert git(repo, "status", "--porcelain").stdout == ""


def test_deep_metadata_does_not_block_a_push(repo: Path, tmp_path: Path) -> None:
    """Metadata no checkout can read is pushed as the blob it is (the history already holds it), with a warning
    naming the blob; it must not make every push fail."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    good = commit_good(repo)
    bad = deep_file_section(good)
    commit_blob(repo, MODEL, bad)
    blob = (
        subprocess.run(["git", "hash-object", "--stdin"], input=bad, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    result = run_bounded(["git", "push", "-q", "origin", "main"], cwd=repo)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("git-theta: warning:")]
    assert len(warnings) == 1 and blob in warnings[0] and "levels deep" in warnings[0], result.describe()
    assert git(remote, "rev-parse", "main").stdout == git(repo, "rev-parse", "HEAD").stdout


# 2. An object whose header declares far more than its entry holds.


def two_gib_object() -> bytes:
    """A valid 75 KB object of 512 real zstd frames, each declaring 4 MiB of zeros: 2 GiB of F32."""
    frame = zstandard.ZstdCompressor(level=1).compress(bytes(objects.CHUNK_BYTES))
    count = 512
    header = {
        "buffers": [
            {
                "chunk_bytes": [objects.CHUNK_BYTES] * count,
                "codec": "bgzstd",
                "dtype": "F32",
                "frame_bytes": [len(frame)] * count,
                "name": "value",
                "shape": [count * objects.CHUNK_BYTES // 4],
            }
        ],
        "fields": {},
        "kind": "dense",
    }
    return raw_object(header, [frame] * count)


def test_object_declaring_2_gib_behind_4_floats(repo: Path) -> None:
    meta = commit_good(repo)
    data = two_gib_object()
    assert len(data) < 100_000
    meta["params"]["tiny"]["stored"] = [{"object": put_object(repo, data), "size": len(data), "update": "dense"}]
    state = commit_hostile(repo, dump(meta))
    line = checkout_refused(repo, state, max_rss_mb=300, max_seconds=20)
    assert "'tiny'" in line and "more than the" in line
    assert "more than the" in fsck_refused(repo, max_seconds=20)


# 3. A file-level blob replaced by another valid blob under the same name.


def test_swapped_header_blob_is_refused_at_checkout_and_in_fsck(repo: Path) -> None:
    meta = commit_good(repo)
    other = commit_good(
        repo,
        {
            "tiny": np.zeros(4, dtype=np.float32),
            "w": np.zeros((4, 6), dtype=np.float32),
            "extra": np.ones(2, dtype=np.float32),
        },
        "other.safetensors",
    )
    header_oid = meta["file"]["header"]["object"]
    other_header = store_path(repo, other["file"]["header"]["object"]).read_bytes()
    assert other_header != store_path(repo, header_oid).read_bytes()
    store_path(repo, header_oid).write_bytes(other_header)  # a valid blob, under the wrong name
    (repo / MODEL).unlink()
    state = RepoState.capture(repo)
    result = run_bounded(["git", "checkout", "--", MODEL], cwd=repo)
    assert_refused(result, [MODEL, header_oid, "git theta fetch --repair"])
    assert not (repo / MODEL).exists()
    assert state.files == RepoState.capture(repo).files
    assert header_oid in fsck_refused(repo)


def test_swapped_zip_skeleton_is_refused_at_checkout_and_in_fsck(repo: Path) -> None:
    np.savez(repo / "a.npz", x=np.arange(6, dtype=np.float32), note=np.array(["first"]))
    np.savez(repo / "b.npz", x=np.zeros(6, dtype=np.float32), note=np.array(["second, longer"]))
    git(repo, "add", "a.npz", "b.npz")
    git(repo, "commit", "-q", "-m", "two archives")
    skeletons = [
        json.loads(git(repo, "cat-file", "blob", f"HEAD:{name}").stdout)["file"]["skeleton"]["object"]
        for name in ("a.npz", "b.npz")
    ]
    assert skeletons[0] != skeletons[1]
    store_path(repo, skeletons[0]).write_bytes(store_path(repo, skeletons[1]).read_bytes())
    (repo / "a.npz").unlink()
    state = RepoState.capture(repo)
    result = run_bounded(["git", "checkout", "--", "a.npz"], cwd=repo)
    assert_refused(result, ["a.npz", skeletons[0], "git theta fetch --repair"])
    assert not (repo / "a.npz").exists() and state.files == RepoState.capture(repo).files
    assert skeletons[0] in fsck_refused(repo, "a.npz")


# 5. Hostile committed metadata: each refused at checkout, in fsck and in `git diff`.


def edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], bytes]:
    def make(meta: dict[str, Any]) -> bytes:
        change(meta)
        return dump(meta)

    return make


def link(meta: dict[str, Any], **values: Any) -> None:
    meta["params"]["tiny"]["stored"][0].update(values)


def entry(meta: dict[str, Any], **values: Any) -> None:
    meta["params"]["tiny"].update(values)


def duplicate_key(meta: dict[str, Any]) -> bytes:
    text = dump(meta)
    first = text.index(b'"tiny":')
    line_end = text.index(b"}]}", first) + 3
    return text[:first] + text[first:line_end] + b"," + text[first:line_end] + text[line_end:]


METADATA_CASES: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "newer version": (edit(lambda m: m.update(version="git-theta/9")), "unsupported metadata version"),
    "duplicate parameter": (duplicate_key, "appears twice"),
    "not JSON": (lambda m: dump(m)[:-20], "not valid JSON"),
    "deep param field": (edit(lambda m: entry(m, extra=deep(200))), "levels deep"),
    "unknown dtype": (edit(lambda m: entry(m, dtype="F128")), "unknown dtype"),
    "shape with bools": (edit(lambda m: entry(m, shape=[True, 4])), "invalid shape"),
    "shape with floats": (edit(lambda m: entry(m, shape=[4.0])), "invalid shape"),
    "shape negative": (edit(lambda m: entry(m, shape=[-4])), "invalid shape"),
    "shape huge": (edit(lambda m: entry(m, shape=[1 << 40, 1 << 40])), "more than"),
    "shape of 100 dims": (edit(lambda m: entry(m, shape=[1] * 100)), "invalid shape"),
    "hash not hex": (edit(lambda m: entry(m, hash="z" * 64)), "invalid hash"),
    "stored empty": (edit(lambda m: entry(m, stored=[])), "no stored objects"),
    "chain over the maximum": (
        edit(lambda m: entry(m, stored=m["params"]["tiny"]["stored"] * 257)),
        "more than the limit",
    ),
    "../ in object id": (edit(lambda m: link(m, object="../../../../etc/passwd")), "invalid object id"),
    "../ in file object": (edit(lambda m: m["file"]["header"].update(object="../" * 20 + "x")), "invalid object id"),
    "negative size": (edit(lambda m: link(m, size=-1)), "invalid object size"),
    "huge size string": (edit(lambda m: link(m, size="9" * 100_000)), "invalid object size"),
    "unknown update type": (edit(lambda m: link(m, update="nonesuch")), "unknown updates plugin 'nonesuch'"),
    "unknown format": (edit(lambda m: m.update(format="nonesuch")), "unknown checkpoints plugin 'nonesuch'"),
    "missing params": (edit(lambda m: m.pop("params")), "lacks a params section"),
    "params not an object": (edit(lambda m: m.update(params=[])), "lacks a params section"),
    "entry not an object": (edit(lambda m: m["params"].update(tiny=7)), "is not an object"),
    "link not an object": (edit(lambda m: entry(m, stored=["x"])), "malformed stored entry"),
    "wrong hash for the value": (edit(lambda m: entry(m, hash="0" * 64)), "does not match its recorded hash"),
    "object of another parameter": (
        edit(lambda m: entry(m, stored=m["params"]["w"]["stored"])),
        "does not match its recorded hash",
    ),
}


@pytest.mark.parametrize("case", sorted(METADATA_CASES))
def test_hostile_metadata(repo: Path, case: str) -> None:
    make, message = METADATA_CASES[case]
    data = make(commit_good(repo))
    state = commit_hostile(repo, data)
    assert message in checkout_refused(repo, state)
    assert message in fsck_refused(repo)
    state.assert_unchanged(repo)


# Made by a child process: a child's peak RSS as wait4 reports it includes its parent's peak at fork/exec time, so
# 100 MB of metadata built in this worker would count against every later bounded command of the worker.
MAKE_LONG_CHAIN = """
import json, sys
meta = json.loads(sys.stdin.buffer.read())
link = json.dumps(meta["params"]["tiny"]["stored"][0], separators=(",", ":")).encode()
text = json.dumps(meta, separators=(",", ":")).encode()
start = text.index(b'"stored":[', text.index(b'"tiny":')) + len(b'"stored":[')
end = text.index(b"]", start)
sys.stdout.buffer.write(text[:start] + b",".join([link] * 1_000_000) + text[end:])
"""


def test_hostile_metadata_with_a_chain_of_a_million_links(repo: Path, tmp_path: Path) -> None:
    """100 MB of metadata, under the 256 MiB cap: its links are counted in the bytes and refused before decoding."""
    good = git(repo, "cat-file", "blob", f"{commit_good(repo) and 'HEAD'}:{MODEL}").stdout.encode()
    made = tmp_path / "long.json"
    with open(made, "wb") as out:
        subprocess.run([sys.executable, "-c", MAKE_LONG_CHAIN], input=good, stdout=out, check=True)
    blob = git(repo, "hash-object", "-w", str(made)).stdout.strip()
    made.unlink()
    git(repo, "update-index", "--cacheinfo", f"100644,{blob},{MODEL}")
    git(repo, "commit", "-q", "-m", "a million links")
    (repo / MODEL).unlink()
    state = RepoState.capture(repo)
    # refused by counting links before decoding: a million decoded links cost ~1 GB (measured before the count)
    assert "1000001 stored links for 2 parameter(s), more than the limit of 256" in checkout_refused(
        repo, state, max_rss_mb=400
    )
    assert "more than the limit of 256" in fsck_refused(repo, max_rss_mb=400)


def dense_object(values: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
    raw = values.tobytes()
    frame = zstandard.ZstdCompressor().compress(_grouped(raw, values.itemsize))
    header = {
        "buffers": [
            {
                "chunk_bytes": [len(raw)],
                "codec": "bgzstd",
                "dtype": "F32",
                "frame_bytes": [len(frame)],
                "name": "value",
                "shape": list(values.shape),
            }
        ],
        "fields": {},
        "kind": "dense",
    }
    return header, [frame]


def _grouped(raw: bytes, itemsize: int) -> bytes:
    return b"".join(raw[j::itemsize] for j in range(itemsize))


def lying(change: Callable[[dict[str, Any], list[bytes]], bytes]) -> Callable[[], bytes]:
    def make() -> bytes:
        header, frames = dense_object(np.arange(4, dtype=np.float32))
        return change(header, frames)

    return make


def frame_bomb() -> bytes:
    """A small frame declaring (and holding) 4 MiB, behind a header that says 16 bytes."""
    header, _ = dense_object(np.arange(4, dtype=np.float32))
    frame = zstandard.ZstdCompressor().compress(bytes(objects.CHUNK_BYTES))
    header["buffers"][0]["frame_bytes"] = [len(frame)]
    return raw_object(header, [frame])


def set_buffer(**values: Any) -> Callable[[dict[str, Any], list[bytes]], bytes]:
    def change(header: dict[str, Any], frames: list[bytes]) -> bytes:
        header["buffers"][0].update(values)
        return raw_object(header, frames)

    return change


OBJECT_CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated": (lambda: lying(lambda h, f: raw_object(h, f))()[:-3], "header describes"),
    "trailing bytes": (lambda: lying(lambda h, f: raw_object(h, f))() + b"xx", "header describes"),
    "bad magic": (lambda: b"version https://git-lfs.github.com/spec/v1\n", "bad magic"),
    "header length past the end": (lambda: objects.MAGIC + struct.pack("<I", 1000) + b"{}", "truncated"),
    "header length 4 GiB": (lambda: objects.MAGIC + struct.pack("<I", 0xFFFFFFFF), "exceeds"),
    "header nested deep": (lambda: objects.MAGIC + struct.pack("<I", 200_001) + deep_bytes(100_000), "levels deep"),
    "header not JSON": (lambda: objects.MAGIC + struct.pack("<I", 3) + b"{x}", "not JSON"),
    "chunk sizes lie about the shape": (lying(set_buffer(chunk_bytes=[20])), "do not match its shape"),
    "frame sizes lie": (lying(set_buffer(frame_bytes=[1])), "header describes"),
    "negative chunk size": (lying(set_buffer(chunk_bytes=[-16])), "positive integers"),
    "chunk count of a million": (lying(set_buffer(chunk_bytes=[4] * 1_000_000, shape=[1_000_000])), "do not match"),
    "unknown codec": (lying(set_buffer(codec="gzip")), "unknown codec"),
    "zstd frame bomb": (frame_bomb, "declares"),
    "2 GiB behind 4 floats": (two_gib_object, "more than the"),
    "not zstd": (lying(lambda h, f: raw_object(h, [b"\x00" * len(f[0])])), "corrupt"),
}


@pytest.mark.parametrize("case", sorted(OBJECT_CASES))
def test_hostile_object(repo: Path, case: str) -> None:
    make, message = OBJECT_CASES[case]
    meta = commit_good(repo)
    data = make()
    meta["params"]["tiny"]["stored"] = [{"object": put_object(repo, data), "size": len(data), "update": "dense"}]
    state = commit_hostile(repo, dump(meta))
    line = checkout_refused(repo, state, max_rss_mb=300)
    assert message in line and "'tiny'" in line, line
    assert message in fsck_refused(repo)  # fsck loads numpy and the update plugins: the default bound
