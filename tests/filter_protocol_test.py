"""The long-running filter, spoken to directly over pkt-lines and driven through real git."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import delete_object, git
from safetensors.numpy import save

from git_theta import metadata, pktline
from git_theta.installation import SETTINGS
from git_theta.pktline import PacketWriter


def checkpoint(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return save(
        {
            "layer.weight": rng.standard_normal((4, 3)).astype("<f4"),
            "layer.mask": rng.integers(0, 2, (5,), dtype=np.uint8),
        },
        metadata={"seed": str(seed)},
    )


class FilterClient:
    """Plays git's side of the filter protocol against a real `git-theta filter-process`."""

    def __init__(self, repo: Path, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "GIT_THETA_SKIP_SMUDGE"} | extra_env
        self.process = subprocess.Popen(
            ["git-theta", "filter-process"],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def handshake(self, capabilities: list[str]) -> tuple[list[str], list[str]]:
        pktline.write_text_list(self.stdin, ["git-filter-client", "version=2"])
        pktline.write_text_list(self.stdin, [f"capability={name}" for name in capabilities])
        return pktline.read_text_list(self.stdout), pktline.read_text_list(self.stdout)

    def request(self, command: str, pathname: str, content: bytes) -> tuple[list[str], bytes, list[str]]:
        """Send one request; returns (status list, content, final status list)."""
        pktline.write_text_list(self.stdin, [f"command={command}", f"pathname={pathname}"])
        writer = PacketWriter(self.stdin)
        writer.write(content)
        writer.close_stream()
        status = pktline.read_text_list(self.stdout)
        if status != ["status=success"]:
            return status, b"", []
        output = b"".join(iter(lambda: pktline.read_packet(self.stdout) or b"", b""))
        return status, output, pktline.read_text_list(self.stdout)

    def close(self) -> tuple[int, str]:
        self.stdin.close()
        code = self.process.wait(timeout=30)
        assert self.process.stderr is not None
        return code, self.process.stderr.read().decode()


@pytest.fixture
def client(repo: Path) -> Iterator[FilterClient]:
    started = FilterClient(repo)
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def test_handshake_agrees_on_clean_and_smudge_only(client: FilterClient) -> None:
    welcome, capabilities = client.handshake(["clean", "smudge", "delay"])
    assert welcome == ["git-filter-server", "version=2"]
    assert capabilities == ["capability=clean", "capability=smudge"]
    assert client.close() == (0, "")


def test_handshake_only_offers_what_git_asked_for(client: FilterClient) -> None:
    assert client.handshake(["smudge"])[1] == ["capability=smudge"]
    assert client.close()[0] == 0


def test_clean_then_smudge_gives_identical_bytes(client: FilterClient) -> None:
    client.handshake(["clean", "smudge"])
    original = checkpoint(1)
    status, meta, final = client.request("clean", "model.safetensors", original)
    assert status == ["status=success"] and final == []
    assert meta.startswith(b'{"version":"git-theta/2",\n"format":"safetensors",\n')
    assert b'"layer.weight":{"dtype":"F32"' in meta and b'"layer.mask":{"dtype":"U8"' in meta
    status, rebuilt, final = client.request("smudge", "model.safetensors", meta)
    assert status == ["status=success"] and final == []
    assert rebuilt == original
    # Metadata given to clean again (a checkout made without the filter) stays as it is.
    assert client.request("clean", "model.safetensors", meta)[1] == meta
    # Content that is not metadata passes through smudge untouched.
    assert client.request("smudge", "notes.bin", b"plain bytes\n")[1] == b"plain bytes\n"
    assert client.close() == (0, "")


def test_large_content_spans_many_packets(client: FilterClient) -> None:
    client.handshake(["clean", "smudge"])
    original = save({"big": np.arange(100_000, dtype="<f4")})  # 400 kB: seven packets each way
    meta = client.request("clean", "big.safetensors", original)[1]
    assert client.request("smudge", "big.safetensors", meta)[1] == original
    assert client.close()[0] == 0


def test_a_checkout_process_loads_neither_numpy_nor_clean_nor_what_other_commands_use(
    client: FilterClient, repo: Path
) -> None:
    # Python's start is most of a small checkout's cost: numpy alone adds ~0.1 s.
    client.handshake(["clean", "smudge"])
    original = checkpoint(3)
    meta = client.request("clean", "model.safetensors", original)[1]
    assert client.close()[0] == 0
    checkout = FilterClient(repo, PYTHONPROFILEIMPORTTIME="1")
    checkout.handshake(["clean", "smudge"])
    assert checkout.request("smudge", "model.safetensors", meta)[1] == original
    code, imports = checkout.close()
    imported = {line.rsplit("|", 1)[-1].strip() for line in imports.splitlines() if line.startswith("import time:")}
    assert code == 0 and "git_theta.smudge" in imported
    assert not {"numpy", "git_theta.clean", "importlib.metadata"} & imported
    # Nor what only other commands use (each a few ms of every filter's start): no git runs, no parser is built.
    unused = {"argparse", "subprocess", "tempfile", "concurrent.futures", "logging", "git_theta.api"}
    assert not unused & imported, unused & imported


def test_metadata_larger_than_a_packet_passes_clean_whole(client: FilterClient) -> None:
    client.handshake(["clean", "smudge"])
    many = save({f"layer.{i}.weight": np.full((2,), i, dtype="<f4") for i in range(400)})
    meta = client.request("clean", "many.safetensors", many)[1]
    assert len(meta) > pktline.MAX_PAYLOAD  # two packets or more
    assert client.request("clean", "many.safetensors", meta)[1] == meta
    assert client.request("smudge", "many.safetensors", meta)[1] == many
    assert client.close()[0] == 0


def test_bad_file_answers_error_and_the_process_carries_on(client: FilterClient) -> None:
    client.handshake(["clean", "smudge"])
    truncated = checkpoint(2)[:-7]
    assert client.request("clean", "broken.safetensors", truncated)[0] == ["status=error"]
    assert client.request("clean", "text.safetensors", b"hello, not a model\n")[0] == ["status=error"]
    assert client.request("smudge", "bad.safetensors", b'{"version":"git-theta/9"}')[0] == ["status=error"]
    status, meta, _ = client.request("clean", "good.safetensors", checkpoint(3))
    assert status == ["status=success"]
    assert client.request("smudge", "good.safetensors", meta)[1] == checkpoint(3)
    code, stderr = client.close()
    assert code == 0
    lines = stderr.splitlines()
    assert len(lines) == 3, stderr  # one line per failed file, no traceback
    assert lines[0].startswith("git-theta: broken.safetensors: cannot read as safetensors: ")
    assert lines[1].startswith("git-theta: text.safetensors: not a checkpoint")
    assert lines[2].startswith("git-theta: bad.safetensors: unsupported metadata version 'git-theta/9'")


def test_missing_objects_make_smudge_fail_with_a_hint(client: FilterClient, repo: Path) -> None:
    client.handshake(["clean", "smudge"])
    meta = client.request("clean", "model.safetensors", checkpoint(4))[1]
    for path in (repo / ".git" / "lfs" / "objects").glob("??/??/*"):
        delete_object(repo, path.name)
    assert client.request("smudge", "model.safetensors", meta)[0] == ["status=error"]
    stderr = client.close()[1]
    count = len(metadata.parse(meta).objects())  # the pack of the small tensors, the header blob
    assert f"model.safetensors: {count} object(s) missing from the store" in stderr
    assert "fetch them from a remote or run `git theta fsck`" in stderr
    assert stderr.count("\n") == 1, stderr


def test_failure_after_output_started_sends_error_after_the_content(client: FilterClient, repo: Path) -> None:
    # The safetensors header goes out before the tensors are rebuilt, so status=success is already sent
    # when the corrupt object is found: the protocol then ends the content and sends status=error.
    client.handshake(["clean", "smudge"])
    meta = client.request("clean", "model.safetensors", checkpoint(9))[1]
    (oid,) = [link.object for link in metadata.parse(meta).params["layer.weight"].stored]
    (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).write_bytes(b"gtheta\x00\x01 truncated")
    status, partial, final = client.request("smudge", "model.safetensors", meta)
    assert status == ["status=success"] and final == ["status=error"]
    assert checkpoint(9).startswith(partial) and len(partial) < len(checkpoint(9))
    assert client.request(
        "smudge", "other.safetensors", client.request("clean", "other.safetensors", checkpoint(10))[1]
    )[1] == checkpoint(10)
    code, stderr = client.close()
    assert code == 0
    assert stderr.startswith(f"git-theta: model.safetensors: parameter 'layer.weight': object {oid} is corrupt (")
    assert stderr.count("\n") == 1, stderr


def test_unknown_command_answers_error(client: FilterClient) -> None:
    client.handshake(["clean", "smudge"])
    assert client.request("frobnicate", "model.safetensors", b"some content")[0] == ["status=error"]
    assert client.request("clean", "model.safetensors", checkpoint(5))[0] == ["status=success"]
    code, stderr = client.close()
    assert code == 0
    assert stderr == "git-theta: unsupported filter command 'frobnicate'\n"


def test_bad_handshake_fails_the_process(repo: Path) -> None:
    client = FilterClient(repo)
    pktline.write_text_list(client.stdin, ["git-filter-client", "version=3"])
    client.stdin.flush()
    code, stderr = client.close()
    assert code == 1
    assert stderr == "git-theta: error: unexpected filter handshake ['git-filter-client', 'version=3']\n"


# --- through real git ---------------------------------------------------------------------

ONLY_PROCESS = ("-c", "filter.theta.clean=false", "-c", "filter.theta.smudge=false")


def test_git_add_with_one_corrupt_file_fails_and_stages_nothing(repo: Path) -> None:
    (repo / "good.safetensors").write_bytes(checkpoint(6))
    (repo / "bad.safetensors").write_bytes(checkpoint(7)[:-5])
    index_before = (repo / ".git" / "index").read_bytes()
    result = git(repo, *ONLY_PROCESS, "add", "good.safetensors", "bad.safetensors", check=False)
    assert result.returncode != 0
    assert "bad.safetensors" in result.stderr
    assert "cannot read as safetensors" in result.stderr
    assert "good.safetensors" not in result.stderr
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert git(repo, "diff", "--cached", "--name-only").stdout == ""
    assert git(repo, "ls-files", "good.safetensors").stdout == ""
    # The same process filter, alone on the good file, stages it.
    git(repo, *ONLY_PROCESS, "add", "good.safetensors")
    assert git(repo, "diff", "--cached", "--name-only").stdout == "good.safetensors\n"
    assert git(repo, "show", ":good.safetensors").stdout.startswith('{"version":"git-theta/2",')


def test_git_checkout_runs_smudge_through_the_process_filter(repo: Path) -> None:
    data = checkpoint(8)
    (repo / "model.safetensors").write_bytes(data)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "model")
    (repo / "model.safetensors").unlink()
    # With the one-shot filters broken, only the long-running process can have done the work.
    git(repo, *ONLY_PROCESS, "checkout", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == data
    assert git(repo, "config", "filter.theta.process").stdout.strip() == SETTINGS["filter.theta.process"]


def _quiet_end(client: FilterClient) -> str:
    """git is gone: the process must end by itself, saying nothing of a bug."""
    client.stdin.close()
    client.stdout.close()
    client.process.wait(timeout=60)
    assert client.process.stderr is not None
    stderr = client.process.stderr.read().decode()
    for text in ("Traceback", "internal error", "git-theta-crash-", "Exception ignored"):
        assert text not in stderr, stderr
    return stderr


@pytest.mark.parametrize("cut", ["between packets", "inside a packet"])
def test_git_gone_in_the_middle_of_the_content(client: FilterClient, cut: str) -> None:
    client.handshake(["clean", "smudge"])
    pktline.write_text_list(client.stdin, ["command=clean", "pathname=model.safetensors"])
    data = checkpoint(6)
    pktline.write_packet(client.stdin, data[:100])
    client.stdin.write(b"0100" + data[100:150] if cut == "inside a packet" else b"")
    assert _quiet_end(client) == ""


def test_git_gone_while_the_checkpoint_streams_out(client: FilterClient) -> None:
    client.handshake(["clean", "smudge"])
    big = save(
        {f"layer{i}": np.random.default_rng(i).standard_normal(1 << 20).astype("<f4") for i in range(8)}
    )  # 32 MB
    meta = client.request("clean", "big.safetensors", big)[1]
    pktline.write_text_list(client.stdin, ["command=smudge", "pathname=big.safetensors"])
    writer = PacketWriter(client.stdin)
    writer.write(meta)
    writer.close_stream()
    assert pktline.read_text_list(client.stdout) == ["status=success"]
    assert pktline.read_packet(client.stdout)  # the output has started; then git dies
    assert _quiet_end(client) == ""


def test_git_killed_during_checkout_leaves_a_quiet_filter(repo: Path) -> None:
    big = save({f"layer{i}": np.random.default_rng(i).standard_normal(1 << 20).astype("<f4") for i in range(24)})
    (repo / "big.safetensors").write_bytes(big)
    git(repo, "add", "big.safetensors")
    (repo / "big.safetensors").unlink()
    checkout = subprocess.Popen(["git", "checkout", "--", "big.safetensors"], cwd=repo, stderr=subprocess.PIPE)
    # kill git once its filter has started answering (the file's first bytes are written by git)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _filter_children(checkout.pid):
        time.sleep(0.005)
    time.sleep(0.3)
    checkout.kill()
    assert checkout.stderr is not None
    stderr = checkout.stderr.read().decode()  # EOF only once the orphaned filter has ended too
    checkout.wait()
    for text in ("Traceback", "internal error", "git-theta-crash-", "Exception ignored"):
        assert text not in stderr, stderr


def _filter_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status and b"filter-process" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_bug_while_filtering_names_the_file_and_hides_credentials() -> None:
    # The traceback of an internal error goes to git's stderr: a frame's message may quote a URL with a token.
    import io

    from git_theta import filter_protocol

    stdin = io.BytesIO()
    pktline.write_text_list(stdin, ["git-filter-client", "version=2"])
    pktline.write_text_list(stdin, ["capability=clean", "capability=smudge"])
    pktline.write_text_list(stdin, ["command=smudge", "pathname=model.safetensors"])
    pktline.write_packet(stdin, b"content")
    stdin.write(pktline.FLUSH)
    stdin.seek(0)

    def broken(path: str, content: object, out: object) -> None:
        raise RuntimeError("GET https://alice:s3cret-token@lfs.example.com/objects?access_token=abc123 failed")

    stdout, stderr = io.BytesIO(), io.StringIO()
    filter_protocol.serve(stdin, stdout, {"smudge": broken}, stderr)
    said = stderr.getvalue()
    assert "internal error while filtering model.safetensors" in said and "RuntimeError" in said
    assert "s3cret-token" not in said and "abc123" not in said and "alice" not in said
    assert b"status=error" in stdout.getvalue()
