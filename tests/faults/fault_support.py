"""What the fault suite shares: big-enough models, a kill -9 at a chosen moment, and the checks after a fault.

A fault (a kill, a full disk, a race) must never lose what was committed: afterwards `git theta fsck` passes, the
same command run again completes, every committed version checks out byte-identical, the working tree holds
nothing stray and the store only whole objects (tests/hostile_support.assert_store_whole, temp files included).

The models are ~100 MB of random fp32 so that add, checkout, push and fetch each take a fraction of a second to a
few seconds: a kill at a random fraction of a measured unkilled run lands inside the operation, not before it.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transfer"))
from hostile_support import assert_store_whole  # noqa: E402
from lfs_server import LfsServer  # noqa: E402

MODEL = "model.safetensors"
TENSORS = 12
SHAPE = (1024, 1024)  # 4 MiB of fp32 per tensor, ~50 MB per model
SEEDS = [1, 2, 3]
# A kill lands at this fraction range of the measured unkilled duration (not at 0: that only tests "never started").
KILL_RANGE = (0.1, 0.75)


def write_model(path: Path, version: int) -> None:
    """Deterministic model: version 1 is the base; version v > 1 changes tensors i with i % 3 == v % 3 (so each
    later version shares two thirds of its tensors, and so its objects, with version 1)."""
    params = {}
    for index in range(TENSORS):
        changed = version > 1 and index % 3 == version % 3
        rng = np.random.default_rng(index * 1000 + (version if changed else 0))
        params[f"layer{index:02d}.weight"] = rng.standard_normal(SHAPE, dtype=np.float32)
    save_file(params, str(path), metadata={"format": "np"})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Models:
    """Model files made once per test session; copy them into a repository with `place`."""

    folder: Path

    def path(self, version: int) -> Path:
        return self.folder / f"v{version}.safetensors"

    def sha(self, version: int) -> str:
        return sha256_file(self.path(version))

    def place(self, repo: Path, version: int, name: str = MODEL) -> None:
        target = repo / name
        if target.exists():
            target.unlink()  # a fresh inode, so git sees new content even within one second
        target.write_bytes(self.path(version).read_bytes())


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    folder = tmp_path_factory.mktemp("fault-models")
    for version in (1, 2, 3):
        write_model(folder / f"v{version}.safetensors", version)
    return Models(folder)


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Seconds an unkilled run of `args` takes (it must succeed)."""
    start = time.monotonic()
    run(args, cwd, env)
    return time.monotonic() - start


_MEASURED: dict[str, float] = {}


def measured(key: str, measure: Callable[[], float]) -> float:
    """The unkilled duration of scenario `key`, measured once per session (the first seed pays for it)."""
    if key not in _MEASURED:
        _MEASURED[key] = measure()
    return _MEASURED[key]


def kill_delay(seed: int, duration: float) -> float:
    low, high = KILL_RANGE
    return random.Random(seed).uniform(low, high) * duration


@dataclass(frozen=True)
class Killed:
    args: list[str]
    delay: float
    killed: bool  # False: the command finished before the kill was due
    returncode: int
    stderr: str


def kill_after(args: list[str], cwd: Path, delay: float, env: dict[str, str] | None = None) -> Killed:
    """Start `args` in a new process group and SIGKILL the whole group (git and its filters, hooks, transfer
    processes) after `delay` seconds, unless it finished first. Returns once every process of the group is gone."""
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        process.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        killed = True
    assert process.stderr is not None
    stderr = process.stderr.read().decode(errors="replace")
    process.wait()
    _wait_group_gone(process.pid)
    # shown with the test's output (pytest -rA): did the kill land inside the operation?
    print(f"{' '.join(args)}: {'killed at' if killed else 'had finished before'} {delay:.2f} s")
    return Killed(list(args), delay, killed, process.returncode, stderr)


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """A killed group's grandchildren are reparented and reaped by init; wait until none is left running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.02)
    raise AssertionError(f"processes of group {pgid} still run {timeout} s after SIGKILL")


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text()
        except OSError:
            continue
        rest = fields[fields.rindex(")") + 2 :].split()
        if rest[0] != "Z" and int(rest[2]) == pgid:
            return True
    return False


def clear_git_lock(repo: Path) -> bool:
    """Remove git's own index.lock left by a SIGKILLed git (SIGKILL cannot be handled; git then says "Another git
    process seems to be running ... remove the file manually"). That is git's recovery, not git-theta's."""
    common = Path(run(["git", "rev-parse", "--git-dir"], repo).stdout.strip())
    lock = (common if common.is_absolute() else repo / common) / "index.lock"
    if lock.exists():
        lock.unlink()
        return True
    return False


def fsck_problems(repo: Path) -> list[str]:
    """`git theta fsck`'s problem lines ([] when it says ok); a crash or traceback fails the test."""
    result = run(["git-theta", "fsck"], repo, check=False)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    if result.returncode == 0:
        assert "fsck: ok" in result.stdout, result.stdout
        return []
    problems = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert problems, f"fsck failed without naming a problem:\n{result.stdout}\n{result.stderr}"
    return problems


def assert_fsck_ok(repo: Path) -> None:
    problems = fsck_problems(repo)
    assert not problems, "git theta fsck: " + "\n".join(problems)


def assert_checks_out(repo: Path, rev: str, sha: str, path: str = MODEL) -> None:
    """`rev:path` smudges to exactly the bytes whose sha256 is `sha` (through git's own filter run, no worktree)."""
    process = subprocess.Popen(
        ["git", "cat-file", "--filters", f"{rev}:{path}"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    digest = hashlib.sha256()
    while chunk := process.stdout.read(1 << 20):
        digest.update(chunk)
    error = process.stderr.read().decode(errors="replace")
    assert process.wait() == 0, f"{rev}:{path} does not check out:\n{error}"
    assert digest.hexdigest() == sha, f"{rev}:{path} checks out different bytes"


def assert_status(repo: Path, expected: str = "") -> None:
    status = run(["git", "status", "--porcelain=v1", "--untracked-files=all"], repo).stdout
    assert status == expected, f"git status --porcelain:\n{status!r}\nexpected {expected!r}"


def assert_worktree_file(repo: Path, sha: str, path: str = MODEL) -> None:
    assert sha256_file(repo / path) == sha, f"{path} in the working tree is not the committed version"


def assert_whole(repo: Path) -> None:
    assert_store_whole(repo)


_EMPTY_REPO: list[Path] = []


def init_repo(path: Path) -> Path:
    """An empty repository with git-theta installed locally and *.safetensors tracked (one commit): a copy of one
    made once per session (five git and git-theta runs saved per case; the config and hook hold no paths)."""
    if not _EMPTY_REPO:
        template = Path(tempfile.mkdtemp(prefix="theta-fault-repo-")) / "repo"
        atexit.register(shutil.rmtree, template.parent, True)
        template.mkdir()
        run(["git", "init", "-q"], template)
        run(["git-theta", "install", "--local"], template)
        run(["git-theta", "track", "*.safetensors"], template)
        run(["git", "add", ".gitattributes"], template)
        run(["git", "commit", "-q", "-m", "track checkpoints"], template)
        _EMPTY_REPO.append(template)
    shutil.copytree(_EMPTY_REPO[0], path, symlinks=True)
    return path


def committed(repo: Path, models: Models, *versions: int) -> Path:
    """`repo` with one commit (tagged vN) per version of the model, the last one checked out."""
    for version in versions:
        models.place(repo, version)
        run(["git", "add", MODEL], repo)
        run(["git", "commit", "-q", "-m", f"v{version}"], repo)
        run(["git", "tag", f"v{version}"], repo)
    return repo


def publisher(root: Path, models: Models, server: LfsServer, versions: tuple[int, ...]) -> tuple[Path, Path]:
    """alice's repository with `versions` committed, origin a bare repository whose LFS server is `server`."""
    origin = root / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], root)
    alice = init_repo(root / "alice")
    (alice / ".lfsconfig").write_text(f'[lfs]\n\turl = "{server.url}"\n')
    run(["git", "add", ".lfsconfig"], alice)
    run(["git", "commit", "-q", "-m", "lfs server"], alice)
    run(["git", "remote", "add", "origin", str(origin)], alice)
    committed(alice, models, *versions)
    return origin, alice


def a_clone(root: Path, origin: Path, name: str) -> Path:
    """A clone with the commits, git-theta installed, and no objects and no checkout yet."""
    run(["git", "clone", "-q", "--no-checkout", str(origin), name], root)
    clone = root / name
    run(["git-theta", "install", "--local"], clone)
    return clone


def assert_server_whole(server: LfsServer) -> None:
    for oid in server.oids():
        assert sha256_file(server.object_path(oid)) == oid, f"the server holds a damaged object {oid}"


def wipe(server: LfsServer) -> None:
    """Empty the server's store (after a measuring push, so the killed push has everything to upload again).
    One server per test on purpose: giftless registers its transfer adapter process-wide, so with two servers
    alive the first one's batch answers would come from the second one's storage."""
    for oid in server.oids():
        server.object_path(oid).unlink()
