"""Drive one tool (git-theta or git-lfs) through the benchmark steps in a fresh temp repo.

Each git command is timed by wall clock. The filter's peak RSS comes from
benchmarks/maxrss.py, which wraps the filter command in git config for both
tools alike. git's own peak RSS is its VmHWM polled from /proc every 5 ms
(wait4 would mix in the filter and the pre-exec pages of this Python process).
"""

from __future__ import annotations

import filecmp
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data
from data import Checkpoint

LAUNCHER = Path(__file__).resolve().parent / "maxrss.py"
PATTERNS = ("*.pt", "*.safetensors")
POLL_SECONDS = 0.005


def theta_executable() -> str:
    """The `git-theta` console script of this interpreter (skips a pyenv-style shim on PATH), else PATH's."""
    beside = Path(sys.executable).parent / "git-theta"
    return str(beside) if beside.is_file() else (shutil.which("git-theta") or "git-theta")


class BenchError(Exception):
    """A tool failed a step; the message shows the command and its output."""


@dataclass
class Sample:
    seconds: float
    git_rss_kb: int  # VmHWM of the process itself, last value polled: a lower bound
    cpu_seconds: float = 0.0  # user + sys of the command and every descendant it reaped (its filters)
    tree_rss_kb: int = 0  # peak RSS of the command or of any descendant it reaped (wait4's ru_maxrss)


@dataclass
class ToolResult:
    """Samples per metric (one per repetition); sizes are in bytes, RSS in KiB."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    checkout_identical: str = "bytes"  # "bytes", "tensors" (a .pt rewritten with equal tensors) or "NO"

    def add(self, metric: str, value: float) -> None:
        self.samples.setdefault(metric, []).append(value)


def emit(report: dict[str, Any], json_arg: str | None, table: str) -> None:
    """Every benchmark's `--json` convention: `-` prints the JSON instead of the table; a file name keeps the JSON
    there besides the table."""
    if json_arg == "-":
        print(json.dumps(report, indent=2))
        return
    print(table, end="" if table.endswith("\n") else "\n")
    if json_arg:
        Path(json_arg).write_text(json.dumps(report, indent=2) + "\n")


def git_env(workdir: Path) -> dict[str, str]:
    """The caller's environment without GIT_* variables, with a private HOME, pinned identity and a bytecode cache.

    Python must be allowed to cache bytecode (in the temp dir, not the source
    tree), as in any installed copy: with PYTHONDONTWRITEBYTECODE=1 every
    git-theta start would compile all its modules again (about a second here).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"}
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


# Imports everything a git-theta filter may load (plugins come from entry points).
_WARM_UP = """
import importlib.metadata, git_theta.main, git_theta.clean, git_theta.smudge
for group in ("git_theta.checkpoints", "git_theta.updates", "git_theta.merges"):
    for entry in importlib.metadata.entry_points(group=group):
        try:
            entry.load()
        except Exception:
            pass  # a broken plugin is git-theta's to report, in the timed runs
"""


def warm_up(env: dict[str, str], with_torch: bool) -> None:
    """Fill the bytecode cache before anything is timed (git-lfs is a static binary: nothing to warm)."""
    with tempfile.TemporaryDirectory() as cwd:
        run([sys.executable, "-c", _WARM_UP + ("import torch\n" if with_torch else "")], Path(cwd), env)


def _poll_hwm(pid: int, done: threading.Event, seen: list[int]) -> None:
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    seen[0] = max(seen[0], int(line.split()[1]))
        except (OSError, ValueError):
            return
        done.wait(POLL_SECONDS)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    """Run a command to completion; BenchError if it fails."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
        done, seen = threading.Event(), [0]
        poller = threading.Thread(target=_poll_hwm, args=(proc.pid, done, seen), daemon=True)
        poller.start()
        # wait4, not proc.wait(): its rusage also counts the filters git started and reaped.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        done.set()
        poller.join()
        if proc.returncode != 0:
            errors.seek(0)
            output = errors.read().decode(errors="replace").strip()
            raise BenchError(f"`{' '.join(argv)}` failed with exit code {proc.returncode}:\n{output[-3000:]}")
    return Sample(seconds, seen[0], usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def tree_bytes(path: Path) -> int:
    """Apparent size of every file under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


class ToolRepo:
    """A temp repo set up for one tool, its filter wrapped by the RSS launcher."""

    def __init__(self, tool: str, path: Path, env: dict[str, str]) -> None:
        self.tool, self.path, self.env = tool, path, env
        self.rss_log = path.parent / f"{path.name}.rss"
        self._rss_seen = 0

    def git(self, *args: str) -> Sample:
        return run(["git", *args], self.path, self.env)

    def setup(self) -> None:
        self.path.mkdir(parents=True)
        self.git("init", "-q")
        if self.tool == "theta":
            run([theta_executable(), "install", "--local"], self.path, self.env)
            run([theta_executable(), "track", *PATTERNS], self.path, self.env)
            key, filter_argv = "filter.theta.process", [theta_executable(), "filter-process"]
        else:
            self.git("lfs", "install", "--local")
            self.git("lfs", "track", *PATTERNS)
            key, filter_argv = "filter.lfs.process", ["git-lfs", "filter-process"]
        launcher = [sys.executable, "-S", "-I", str(LAUNCHER), str(self.rss_log), self.tool, *filter_argv]
        self.git("config", key, " ".join(shlex.quote(a) for a in launcher))
        self.git("add", ".gitattributes")
        self.git("commit", "-q", "-m", "track checkpoints")

    def filter_usage(self) -> tuple[int, float]:
        """(peak RSS in KiB, CPU seconds) of the filter processes started since the last call."""
        lines = self.rss_log.read_text().splitlines() if self.rss_log.exists() else []
        new, self._rss_seen = [line.split() for line in lines[self._rss_seen :]], len(lines)
        return max((int(f[1]) for f in new), default=0), sum(float(f[2]) for f in new)

    def store_bytes(self) -> int:
        return tree_bytes(self.path / ".git" / "lfs" / "objects")

    def git_object_bytes(self) -> int:
        return tree_bytes(self.path / ".git" / "objects")


RoundFunction = Callable[["ToolRepo", Checkpoint, str, "ToolResult"], None]


def measure(
    tools: tuple[str, ...],
    checkpoint: Checkpoint,
    filename: str,
    workdir: Path,
    env: dict[str, str],
    repeat: int,
    one_round: RoundFunction | None = None,
) -> dict[str, ToolResult]:
    """Every step (of `one_round`, default the steps of bench.py), `repeat` times per tool, each time in a fresh
    repo. The tools take turns round by round, so a slow spell of a shared machine falls on both rather than on
    one tool's rounds."""
    results = {tool: ToolResult() for tool in tools}
    for round_ in range(repeat):
        for tool in tools:
            repo = ToolRepo(tool, workdir / f"{tool}-{round_}", env)
            try:
                (one_round or _one_round)(repo, checkpoint, filename, results[tool])
            except BenchError as error:
                raise BenchError(f"{tool}: {error}") from None
            finally:
                shutil.rmtree(repo.path, ignore_errors=True)
                repo.rss_log.unlink(missing_ok=True)
    return results


def _add_commit(repo: ToolRepo, filename: str, message: str) -> tuple[float, Sample, tuple[int, float]]:
    add = repo.git("add", filename)
    commit = repo.git("commit", "-q", "-m", message)
    return add.seconds + commit.seconds, add, repo.filter_usage()


def _one_round(repo: ToolRepo, checkpoint: Checkpoint, filename: str, result: ToolResult) -> None:
    repo.setup()
    objects_before = repo.git_object_bytes()
    target = repo.path / filename
    shutil.copyfile(checkpoint.v1, target)
    seconds, add, (filter_kb, filter_cpu) = _add_commit(repo, filename, "v1")
    result.add("add_v1_s", seconds)
    result.add("filter_cpu_add_s", filter_cpu)
    result.add("filter_rss_add_kb", filter_kb)
    result.add("git_rss_add_kb", add.git_rss_kb)
    result.add("store_v1_bytes", repo.store_bytes())

    shutil.copyfile(checkpoint.v2, target)
    seconds, _, _ = _add_commit(repo, filename, "v2: 10% of the tensors changed")
    result.add("add_v2_s", seconds)
    result.add("store_growth_bytes", repo.store_bytes() - result.samples["store_v1_bytes"][-1])
    result.add("git_objects_growth_bytes", repo.git_object_bytes() - objects_before)

    now = time.time()
    os.utime(target, (now, now))
    result.add("status_s", repo.git("status", "--porcelain").seconds)
    repo.filter_usage()  # the status run's clean is not a row

    checkout = repo.git("checkout", "-q", "HEAD~1", "--", filename)
    filter_kb, filter_cpu = repo.filter_usage()
    result.add("checkout_s", checkout.seconds)
    result.add("filter_cpu_checkout_s", filter_cpu)
    result.add("filter_rss_checkout_kb", filter_kb)
    result.add("git_rss_checkout_kb", checkout.git_rss_kb)
    if not filecmp.cmp(target, checkpoint.v1, shallow=False):
        try:
            same = filename.endswith(".pt") and data.same_tensors(target, checkpoint.v1)
        except Exception:  # an unreadable checkout is simply not identical
            same = False
        result.checkout_identical = "tensors" if same and result.checkout_identical != "NO" else "NO"
