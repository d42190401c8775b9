"""What a filter costs before its first file: git-theta's and git-lfs's filter-process doing only the handshake.

    python3 benchmarks/startup_bench.py                  # 40 starts per tool (a few seconds)
    python3 benchmarks/startup_bench.py --runs 3 --json out.json

git starts one long-running filter per command that cleans or smudges, so a checkout of a small file pays the
filter's start whole. Each run starts the filter in a fresh `git init` repository (as git would: stdin and stdout
pipes, the repository's top level as its directory), sends git's side of the pkt-line handshake (version 2,
capabilities clean and smudge), reads the answer, closes stdin and waits: CPU is user + sys from wait4 (the
filter and anything it ran), wall is from the first byte sent to its exit. The tools take turns, run by run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import runner  # noqa: E402


def _packet(text: bytes) -> bytes:
    return b"%04x" % (len(text) + 4) + text


# git's half of the handshake (gitprotocol-common pkt-lines, then a flush packet after each list)
HELLO = (
    _packet(b"git-filter-client\n")
    + _packet(b"version=2\n")
    + b"0000"
    + _packet(b"capability=clean\n")
    + _packet(b"capability=smudge\n")
    + b"0000"
)
# The filter's answer: its server line and version, a flush, its capabilities, a flush.
ANSWER_FLUSHES = 2


def read_answer(stream: Any) -> list[bytes]:
    """The pkt-line payloads up to the answer's second flush packet (fewer if the filter stops early)."""
    payloads: list[bytes] = []
    flushes = 0
    while flushes < ANSWER_FLUSHES:
        head = stream.read(4)
        if len(head) < 4:
            break
        size = int(head, 16)
        if size == 0:
            flushes += 1
        else:
            payloads.append(stream.read(size - 4))
    return payloads


def one_start(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one filter start, handshake and exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(HELLO)
        proc.stdin.flush()
    except BrokenPipeError:
        pass  # it exited before reading: no answer, reported below
    answer = read_answer(proc.stdout)
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or b"capability=smudge\n" not in answer:
        raise runner.BenchError(f"`{' '.join(command)}` did not shake hands (exit code {code}): {answer!r}")
    return usage.ru_utime + usage.ru_stime, wall


def measure(runs: int, tmpdir: str) -> dict[str, Any]:
    commands = {"theta": [runner.theta_executable(), "filter-process"], "lfs": ["git-lfs", "filter-process"]}
    with tempfile.TemporaryDirectory(prefix="theta-startup-bench-", dir=tmpdir) as tmp:
        workdir = Path(tmp)
        env = runner.git_env(workdir)
        runner.warm_up(env, with_torch=False)
        repo = workdir / "repo"
        repo.mkdir()
        runner.run(["git", "init", "-q"], repo, env)
        one_start(commands["theta"], repo, env)  # untimed: bytecode cache and page cache warm for both
        one_start(commands["lfs"], repo, env)
        samples: dict[str, dict[str, list[float]]] = {tool: {"cpu_s": [], "wall_s": []} for tool in commands}
        for _ in range(runs):
            for tool, command in commands.items():
                cpu, wall = one_start(command, repo, env)
                samples[tool]["cpu_s"].append(cpu)
                samples[tool]["wall_s"].append(wall)
    return {"runs": runs, "samples": samples}


def render(report: dict[str, Any]) -> str:
    med = {tool: {k: statistics.median(v) for k, v in row.items()} for tool, row in report["samples"].items()}
    lines = [
        f"filter start-up: handshake only, medians of {report['runs']} start(s) per tool, tools taking turns",
        "",
        "| | git-theta | git-lfs | theta/lfs |",
        "|---|---|---|---|",
    ]
    for key, label in (("cpu_s", "CPU (user+sys)"), ("wall_s", "wall")):
        theta, lfs = med["theta"][key], med["lfs"][key]
        lines.append(f"| {label} | {theta * 1000:.1f} ms | {lfs * 1000:.1f} ms | {theta / max(lfs, 1e-9):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="starts per tool, medians reported (default 40)")
    parser.add_argument("--json", help="also write every sample as JSON to FILE ('-': print JSON instead)")
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp repository goes (default /tmp)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        report = measure(args.runs, args.tmpdir)
    except runner.BenchError as error:
        print(f"startup_bench: {error}", file=sys.stderr)
        return 1
    runner.emit(report, args.json, render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
