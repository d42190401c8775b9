"""Temp files named with their writer's pid: removed once stale, never while their writer lives."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from git_theta import files
from git_theta.errors import ThetaError


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"partial")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_only_old_temp_files_of_dead_writers_are_stale(tmp_path: Path) -> None:
    dead = _dead_pid()
    old = files.STALE_SECONDS + 60
    stale = _aged(tmp_path / f"theta-{dead}-abcd_123", old)  # written before names said their pid space
    fresh = _aged(tmp_path / f"theta-{dead}-abcd_124", 1)  # its pid may be another container's
    live = _aged(tmp_path / f"theta-{os.getpid()}-abcd_125", old)
    backup = _aged(tmp_path / f".model.safetensors.theta-{dead}-abcd_126.orig", old)  # the user's own file
    foreign = _aged(tmp_path / "lfs-tmp-object", old)
    assert files.remove_stale(tmp_path) == 1
    assert sorted(tmp_path.iterdir()) == sorted([fresh, live, backup, foreign])
    assert not stale.exists()


def test_a_dead_writer_of_this_pid_space_is_gone_at_once_one_of_another_only_once_old(tmp_path: Path) -> None:
    dead, here = _dead_pid(), files.pid_space()
    other = "0" * 8 if here != "0" * 8 else "1" * 8
    just_killed = _aged(tmp_path / f"theta-{dead}.{here}-abcd_123", 1)
    other_space = _aged(tmp_path / f"theta-{dead}.{other}-abcd_124", 1)  # another container: its pid means nothing here
    other_space_old = _aged(tmp_path / f"theta-{dead}.{other}-abcd_125", files.STALE_SECONDS + 60)
    live = _aged(tmp_path / f"theta-{os.getpid()}.{here}-abcd_126", files.STALE_SECONDS + 60)
    assert files.remove_stale(tmp_path) == 2
    assert sorted(tmp_path.iterdir()) == sorted([other_space, live])
    assert not just_killed.exists() and not other_space_old.exists()


def test_a_failed_temp_file_is_removed_and_a_renamed_one_stays(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with files.temp_file(tmp_path, "x-") as (out, temp):
            assert temp.name.startswith(f"x-theta-{os.getpid()}.{files.pid_space()}-")
            out.write(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "done"
    with files.temp_file(tmp_path) as (out, temp):
        out.write(b"whole")
        files.replace(out, temp, target, 0o640)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"whole"
    assert target.stat().st_mode & 0o777 == 0o640


def test_open_regular_reads_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    with files.open_regular(tmp_path / "f") as stream:
        assert stream.read() == b"data"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_open_regular_refuses_a_fifo_or_directory_without_blocking(tmp_path: Path, kind: str) -> None:
    """A FIFO with no writer: a plain open would block here forever."""
    target = tmp_path / "model.safetensors"
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    open_fds = len(os.listdir(f"/proc/{os.getpid()}/fd"))
    with pytest.raises(ThetaError, match=r"model\.safetensors: is a (FIFO|directory), not a regular file"):
        files.open_regular(target)
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) == open_fds, "the descriptor leaked"


def test_an_exited_unreaped_writer_counts_as_gone() -> None:
    """A SIGKILLed git's filter is a zombie until init reaps it: it answers kill(pid, 0) but writes nothing more,
    so its temp files are stale (the retry of the killed command sweeps them)."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not files._zombie(child.pid):  # exited, not yet waited for
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not files._alive(child.pid)
    child.wait()
    assert files._alive(os.getpid())
