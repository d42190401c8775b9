"""Hostile bytes on the stdin of a real `git-theta filter-process` (what a broken or killed git, or anything that
speaks to the filter, could send): framing errors, protocol errors, hostile paths and hostile content.

Each case runs the real console script with all of its input at once (tests/hostile_support.run_bounded: peak RSS
and wall time bounded), then reads its answer back as git would. The rules:
- a broken handshake or broken framing ends the process: exit 1, one `git-theta:` line, nothing half-answered;
- a bad file (hostile content, unknown command) is answered status=error with one `git-theta:` line naming the
  path, and the process carries on with the next request;
- stdin closing (git killed) ends the process quietly: no traceback, no "internal error".
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import git
from hostile_support import BoundedResult, assert_nothing_internal, assert_refused, git_theta_lines, run_bounded
from safetensors.numpy import save

from git_theta import pktline
from git_theta.pktline import PacketWriter

FILTER = ["git-theta", "filter-process"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "GIT_THETA_SKIP_SMUDGE"}


def text_list(lines: list[str]) -> bytes:
    out = io.BytesIO()
    pktline.write_text_list(out, lines)
    return out.getvalue()


HANDSHAKE = text_list(["git-filter-client", "version=2"]) + text_list(["capability=clean", "capability=smudge"])


def request(command: str, pathname: str, content: bytes) -> bytes:
    out = io.BytesIO()
    out.write(text_list([f"command={command}", f"pathname={pathname}"]))
    writer = PacketWriter(out)
    writer.write(content)
    writer.close_stream()
    return out.getvalue()


def checkpoint(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(save({"layer.weight": rng.standard_normal((4, 3)).astype("<f4")}))


def safetensors_with_header(header: dict[str, object], body: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + body


def answers(result: BoundedResult) -> list[tuple[list[str], bytes]]:
    """(status list, content) for each request answered after the handshake, read as git reads them."""
    stream = io.BytesIO(result.stdout_bytes)
    assert pktline.read_text_list(stream) == ["git-filter-server", "version=2"], result.describe()
    assert pktline.read_text_list(stream) == ["capability=clean", "capability=smudge"], result.describe()
    found = []
    while stream.tell() < len(result.stdout_bytes):
        status = pktline.read_text_list(stream)
        content = b""
        if status == ["status=success"]:
            content = b"".join(iter(lambda: pktline.read_packet(stream) or b"", b""))
            final = pktline.read_text_list(stream)
            status = final or status  # an empty list keeps the status; status=error after content revokes it
        found.append((status, content))
    return found


def run_filter(repo: Path, data: bytes) -> BoundedResult:
    return run_bounded(FILTER, cwd=repo, input=data, env=_env(), max_rss_mb=300, max_seconds=30)


# --- the handshake and framing: the process refuses and ends --------------------------------------------------


@pytest.mark.parametrize(
    "data, names",
    [
        pytest.param(b"", "handshake", id="empty-stdin"),
        pytest.param(
            text_list(["git-filter-foo", "version=2"]) + text_list(["capability=clean"]),
            "handshake",
            id="wrong-welcome",
        ),
        pytest.param(
            text_list(["git-filter-client", "version=3"]) + text_list(["capability=clean"]),
            "handshake",
            id="wrong-version",
        ),
        pytest.param(text_list(["git-filter-client"]) + text_list(["capability=clean"]), "handshake", id="no-version"),
        pytest.param(text_list([]), "handshake", id="flush-only"),
        pytest.param(b"fff1" + b"x" * 100, "pkt-line", id="length-fff1-over-65520"),
        pytest.param(b"ffff" + b"x" * 100, "pkt-line", id="length-ffff"),
        pytest.param(b"0001", "pkt-line", id="length-0001"),
        pytest.param(b"0002", "pkt-line", id="length-0002"),
        pytest.param(b"0003" + text_list(["git-filter-client", "version=2"]), "pkt-line", id="length-0003"),
        pytest.param(b"00g4abcd", "pkt-line", id="non-hex-length"),
        pytest.param(b" 00a" + b"x" * 6, "pkt-line", id="space-in-length"),
        pytest.param(b"+00a" + b"x" * 6, "pkt-line", id="sign-in-length"),
        pytest.param(b"0_0a" + b"x" * 6, "pkt-line", id="underscore-in-length"),
        pytest.param(b"00", "pkt-line", id="truncated-length"),
        pytest.param(b"0020git-filter-cl", "pkt-line", id="truncated-packet"),
    ],
)
def test_a_broken_handshake_or_framing_ends_the_process_with_one_line(repo: Path, data: bytes, names: str) -> None:
    result = run_filter(repo, data)
    assert_refused(result, names=names)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(text_list(["git-filter-client", "version=2"]), id="eof-before-capabilities"),
        pytest.param(text_list(["git-filter-client", "version=2"])[:-4], id="eof-before-welcome-flush"),
        pytest.param(text_list(["git-filter-client", "version=2"]) + b"0014capability=clea", id="eof-mid-capability"),
    ],
)
def test_stdin_closed_during_the_handshake_exits_quietly(repo: Path, data: bytes) -> None:
    """git went away: exit without a traceback (and with at most one line)."""
    result = run_filter(repo, data)
    assert result.returncode in (0, 1), result.describe()
    assert_nothing_internal(result)
    assert len(git_theta_lines(result.stderr)) <= 1, result.describe()


# --- stdin closed mid-request (git killed): a quiet exit ------------------------------------------------------


@pytest.mark.parametrize("cut", ["after-command", "before-content-flush", "mid-content-packet", "mid-content-header"])
@pytest.mark.parametrize("command", ["clean", "smudge"])
def test_stdin_closed_mid_request_exits_quietly(repo: Path, command: str, cut: str) -> None:
    full = request(
        command,
        "model.safetensors",
        checkpoint() * 3 if command == "clean" else b'{"version":"git-theta/1"' + b" " * 70000,
    )
    header_only = text_list([f"command={command}", "pathname=model.safetensors"])
    data = {
        "after-command": header_only,
        "before-content-flush": full[:-4],
        "mid-content-packet": full[: len(header_only) + 50],
        "mid-content-header": full[: len(header_only) + 2],
    }[cut]
    result = run_filter(repo, HANDSHAKE + data)
    assert result.returncode in (0, 1), result.describe()
    assert_nothing_internal(result)
    assert len(git_theta_lines(result.stderr)) <= 1, result.describe()
    for status, _ in answers(result):
        assert status != ["status=success"], f"a cut request was answered success\n{result.describe()}"


# --- one bad request: status=error naming the path, and the process carries on --------------------------------

HOSTILE_CHECKPOINTS = {
    "header-not-json": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    "shape-true": safetensors_with_header(
        {"w": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}}, b"\0" * 16
    ),
    "dtype-list": safetensors_with_header({"w": {"dtype": ["F32"], "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
    "offsets-null": safetensors_with_header(
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [None, None]}}, b"\0" * 16
    ),
    "declares-2gib-tensor": safetensors_with_header(
        {"w": {"dtype": "F32", "shape": [1 << 29], "data_offsets": [0, 1 << 31]}}, b"\0" * 64
    ),
    "declares-2^62-elements": safetensors_with_header(
        {"w": {"dtype": "U8", "shape": [1 << 62], "data_offsets": [0, 1 << 62]}}, b"\0" * 64
    ),
    "header-length-past-eof": struct.pack("<Q", 1 << 20) + b'{"w":1}',
    "truncated-body": checkpoint()[:-5],
    "bytes-after-last-tensor": checkpoint() + b"extra",
    "deep-metadata-section": struct.pack("<Q", 200_017) + b'{"__metadata__":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CHECKPOINTS))
def test_a_hostile_checkpoint_is_answered_error_and_the_next_file_is_cleaned(repo: Path, case: str) -> None:
    data = (
        HANDSHAKE
        + request("clean", "bad.safetensors", HOSTILE_CHECKPOINTS[case])
        + request("clean", "good.safetensors", checkpoint())
    )
    result = run_filter(repo, data)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    (bad_status, _), (good_status, good_content) = answers(result)
    assert bad_status == ["status=error"], result.describe()
    assert good_status == ["status=success"] and good_content.startswith(b'{"version":"git-theta/'), result.describe()
    lines = git_theta_lines(result.stderr)
    assert len(lines) == 1 and "bad.safetensors" in lines[0], result.describe()


def _metadata_for(repo: Path) -> bytes:
    """Real metadata of a committed checkpoint (its objects are in the store)."""
    (repo / "model.safetensors").write_bytes(checkpoint(7))
    git(repo, "add", "model.safetensors")
    return git(repo, "show", ":model.safetensors").stdout.encode()


def _hostile_metadata(repo: Path, case: str) -> bytes:
    good = json.loads(_metadata_for(repo))
    oid = "0" * 64
    if case == "deeply-nested":
        return (
            b'{"version":"git-theta/1","format":"safetensors","file":{"x":'
            + b"[" * 100_000
            + b"]" * 100_000
            + b'},"params":{}}'
        )
    if case == "missing-object":
        entry = next(iter(good["params"].values()))
        entry["stored"][0]["object"] = oid
        entry["hash"] = oid
    elif case == "object-id-escapes":
        next(iter(good["params"].values()))["stored"][0]["object"] = "../../../../etc/passwd"
    elif case == "unknown-format":
        good["format"] = "no-such-format"
    elif case == "unknown-update":
        next(iter(good["params"].values()))["stored"][0]["update"] = "no-such-update"
    elif case == "duplicate-param":
        text = json.dumps(good, separators=(",", ":"))
        name = next(iter(good["params"]))
        entry = json.dumps(good["params"][name], separators=(",", ":"))
        return text.replace('"params":{', f'"params":{{{json.dumps(name)}:{entry},', 1).encode()
    elif case == "newer-version":
        return json.dumps({**good, "version": "git-theta/99"}, separators=(",", ":")).encode()
    elif case == "truncated":
        return json.dumps(good, separators=(",", ":")).encode()[:-10]
    elif case == "huge-shape":
        next(iter(good["params"].values()))["shape"] = [1 << 40, 1 << 40]
    return json.dumps(good, separators=(",", ":")).encode()


HOSTILE_METADATA = [
    "deeply-nested",
    "missing-object",
    "object-id-escapes",
    "unknown-format",
    "unknown-update",
    "duplicate-param",
    "newer-version",
    "truncated",
    "huge-shape",
]


@pytest.mark.parametrize("case", HOSTILE_METADATA)
def test_hostile_metadata_is_answered_error_and_the_next_file_is_smudged(repo: Path, case: str) -> None:
    hostile = _hostile_metadata(repo, case)
    good = _metadata_for(repo)
    data = HANDSHAKE + request("smudge", "bad.safetensors", hostile) + request("smudge", "good.safetensors", good)
    result = run_filter(repo, data)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    (bad_status, _), (good_status, good_content) = answers(result)
    assert bad_status == ["status=error"], result.describe()
    assert good_status == ["status=success"] and good_content == checkpoint(7), result.describe()
    lines = git_theta_lines(result.stderr)
    assert len(lines) == 1 and "bad.safetensors" in lines[0], result.describe()


@pytest.mark.parametrize("command", ["delay", "process", "", "clean\0smudge", "CLEAN"])
def test_an_unknown_command_is_answered_error_and_the_next_request_served(repo: Path, command: str) -> None:
    data = (
        HANDSHAKE
        + request(command, "model.safetensors", checkpoint())
        + request("clean", "model.safetensors", checkpoint())
    )
    result = run_filter(repo, data)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    (bad_status, _), (good_status, _) = answers(result)
    assert bad_status == ["status=error"] and good_status == ["status=success"], result.describe()
    assert len(git_theta_lines(result.stderr)) == 1, result.describe()


def test_a_request_without_a_pathname_is_answered_error(repo: Path) -> None:
    out = io.BytesIO()
    out.write(text_list(["command=clean"]))
    PacketWriter(out).close_stream()
    result = run_filter(repo, HANDSHAKE + out.getvalue() + request("clean", "model.safetensors", checkpoint()))
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    statuses = [status for status, _ in answers(result)]
    assert statuses == [["status=error"], ["status=success"]], result.describe()
    assert len(git_theta_lines(result.stderr)) == 1, result.describe()


def test_many_bad_requests_then_good_ones_in_one_process(repo: Path) -> None:
    """Forty requests alternating bad and good: every bad one error, every good one success, memory flat."""
    data = HANDSHAKE
    for index in range(20):
        data += request("clean", f"bad{index}.safetensors", HOSTILE_CHECKPOINTS["header-not-json"])
        data += request("clean", f"good{index}.safetensors", checkpoint(index))
    result = run_filter(repo, data)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    statuses = [status for status, _ in answers(result)]
    assert statuses == [["status=error"], ["status=success"]] * 20, result.describe()
    assert len(git_theta_lines(result.stderr)) == 20, result.describe()


# --- hostile pathnames: answered as git would need, nothing outside the repository touched ---------------------


@pytest.mark.parametrize(
    "pathname",
    [
        pytest.param("a\0b.safetensors", id="nul"),
        pytest.param("a\nb.safetensors", id="newline"),
        pytest.param("../outside.safetensors", id="dotdot"),
        pytest.param("../../../../tmp/x.safetensors", id="dotdot-deep"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("-rf.safetensors", id="leading-dash"),
        pytest.param("x" * 4000 + ".safetensors", id="very-long"),
        pytest.param("caf\udce9.safetensors", id="not-utf8"),
    ],
)
@pytest.mark.parametrize("command", ["clean", "smudge"])
def test_a_hostile_pathname_is_answered_and_the_process_carries_on(
    repo: Path, tmp_path: Path, command: str, pathname: str
) -> None:
    content = checkpoint(3) if command == "clean" else _metadata_for(repo)
    before = sorted(p.name for p in tmp_path.iterdir())
    data = HANDSHAKE + request(command, pathname, content) + request(command, "model.safetensors", content)
    result = run_filter(repo, data)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    (hostile_status, hostile_content), (good_status, good_content) = answers(result)
    assert good_status == ["status=success"], result.describe()
    if hostile_status == ["status=success"]:
        # content-based, as git's own filters are: the same answer as for an ordinary path
        assert hostile_content == good_content, result.describe()
    else:
        assert hostile_status == ["status=error"] and len(git_theta_lines(result.stderr)) == 1, result.describe()
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a file appeared outside the repository"
