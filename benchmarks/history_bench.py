"""History views: `git log -p` on a demo-like MiniLM repo, `git diff` / `git theta diff` of 100,000-tensor versions.

Both tools get the same files, each in its own fresh temp repo; every timed command runs `--repeat` times and
the median is reported, wall clock and CPU seconds (user+sys of git and every process it started and waited for:
getrusage(RUSAGE_CHILDREN) around the command). The interpreter's bin directory goes first on PATH, so git
starts git-theta's console scripts, not a pyenv-style shim in front of them (0.1-0.2 s a start here).

    python3 benchmarks/history_bench.py                        # full size (~4 min: the 100,000-tensor adds)
    python3 benchmarks/history_bench.py --tensors 300 --minilm-scale 0.01 --json -   # seconds (the smoke test)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import data
import numpy as np
import runner
from safetensors.numpy import load_file, save_file

MODEL = "model.safetensors"
# Demo-like history: each commit after the first fine-tunes two tensors (as git_theta/demo.py does).
EDITS = [
    ["encoder.layer.5.output.dense.weight", "encoder.layer.5.output.dense.bias"],
    ["encoder.layer.4.attention.self.query.weight", "encoder.layer.3.output.dense.weight"],
    ["encoder.layer.4.attention.self.query.weight"],
    ["encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.intermediate.dense.bias"],
]
LOG = ["log", "-p", "-n", "5", "--", MODEL]
TARGETS = {"log": 0.5, "diff": 1.0, "theta diff": 2.0}  # wall seconds, issue 12 items 3 and 6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tensors", type=int, default=100_000, help="tensors of the 32x32 fp32 diff case")
    parser.add_argument("--minilm-scale", type=float, default=1.0, help="below 1: a subset of MiniLM's tensors")
    parser.add_argument("--cases", default="log,diff", help="which cases to run: log, diff or both (default)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed command (median reported)")
    parser.add_argument("--json", help="also write every number as JSON to this file ('-': print it instead)")
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp directory goes (removed at the end)")
    return parser.parse_args(argv)


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU user+sys of the command and its waited-for descendants) of one run; its output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise runner.BenchError(f"`{' '.join(argv)}` failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_of(argv: list[str], cwd: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    samples = [timed(argv, cwd, env) for _ in range(repeat)]
    return {
        "wall": statistics.median(s[0] for s in samples),
        "cpu": statistics.median(s[1] for s in samples),
        "samples": samples,
    }


def new_repo(tool: str, path: Path, env: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git = ["git", "-C", str(path)]
    subprocess.run([*git, "init", "-q"], env=env, check=True)
    if tool == "theta":
        subprocess.run(["git-theta", "install", "--local"], cwd=path, env=env, check=True, capture_output=True)
        subprocess.run(["git-theta", "track", "*.safetensors"], cwd=path, env=env, check=True, capture_output=True)
    else:
        subprocess.run([*git, "lfs", "install", "--local"], env=env, check=True, capture_output=True)
        subprocess.run([*git, "lfs", "track", "*.safetensors"], env=env, check=True, capture_output=True)
    subprocess.run([*git, "add", ".gitattributes"], env=env, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "track checkpoints"], env=env, check=True)
    return path


def commit(repo: Path, source: Path, message: str, env: dict[str, str]) -> None:
    shutil.copyfile(source, repo / MODEL)
    subprocess.run(["git", "add", MODEL], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, env=env, check=True)


def minilm_versions(folder: Path, scale: float) -> list[Path]:
    """MiniLM (or a subset of its smallest tensors) and four fine-tunes of two tensors each, as files."""
    first = folder / "minilm-1.safetensors"
    if scale >= 1:
        shutil.copyfile(data.minilm_path(), first)
    else:
        data.subset_safetensors(data.minilm_path(), first, scale)
    versions = [first]
    tensors = load_file(str(first))
    names = sorted(tensors)
    rng = np.random.default_rng(data.SEED)
    for step, edit in enumerate(EDITS, start=2):
        chosen = [n for n in edit if n in tensors] or names[step % len(names) :][:2]  # a subset lacks the layers
        for name in chosen:
            noise = rng.standard_normal(tensors[name].shape).astype(tensors[name].dtype) * np.float32(1e-3)
            tensors[name] = (tensors[name] + noise).astype(tensors[name].dtype)
        versions.append(folder / f"minilm-{step}.safetensors")
        save_file(tensors, str(versions[-1]), metadata={"format": "pt"})
    return versions


def history_case(work: Path, env: dict[str, str], scale: float, repeat: int) -> dict[str, Any]:
    versions = minilm_versions(work, scale)
    found: dict[str, Any] = {"versions": len(versions), "file_bytes": versions[0].stat().st_size}
    for tool in ("theta", "lfs"):
        repo = new_repo(tool, work / f"log-{tool}", env)
        for index, version in enumerate(versions, start=1):
            commit(repo, version, f"version {index}", env)
        timed(["git", *LOG], repo, env)  # bytecode and page cache warm, as for a user's second look
        found[tool] = median_of(["git", *LOG], repo, env, repeat)
        shutil.rmtree(repo)
    return found


def diff_case(work: Path, env: dict[str, str], tensors: int, repeat: int) -> dict[str, Any]:
    v1, v2 = work / "many-1.safetensors", work / "many-2.safetensors"
    data.write_synthetic_safetensors(v1, data.layout(tensors * 4096, tensors, 4, 32), "F32")
    count, changed, _ = data.write_changed_safetensors(v1, v2)
    found: dict[str, Any] = {"tensors": count, "changed": changed, "file_bytes": v1.stat().st_size}
    for tool in ("theta", "lfs"):
        repo = new_repo(tool, work / f"diff-{tool}", env)
        commit(repo, v1, "v1", env)
        commit(repo, v2, "v2", env)
        timed(["git", "diff", "HEAD~1", "HEAD"], repo, env)
        found[tool] = median_of(["git", "diff", "HEAD~1", "HEAD"], repo, env, repeat)
        if tool == "theta":
            found["theta diff"] = median_of(["git-theta", "diff", "HEAD~1", "HEAD"], repo, env, repeat)
            found["theta diff --no-stats"] = median_of(
                ["git-theta", "diff", "--no-stats", "HEAD~1", "HEAD"], repo, env, repeat
            )
        shutil.rmtree(repo)
    return found


def _cell(result: dict[str, Any] | None) -> str:
    return "" if result is None else f"{result['wall']:.3f} s ({result['cpu']:.3f} s CPU)"


def _verdict(result: dict[str, Any], target: float | None) -> str:
    return "" if target is None else ("PASS" if result["wall"] <= target else "FAIL")


def render(report: dict[str, Any]) -> str:
    rows, notes = [], [f"medians of {report['repeat']} runs; CPU = user+sys of git and its children"]
    if "log" in report:
        log = report["log"]
        rows.append(("`git " + " ".join(LOG) + "`", log["theta"], log["lfs"], TARGETS["log"]))
        notes.append(f"log: {log['versions']} versions of a {log['file_bytes'] / 1e6:.1f} MB MiniLM file")
    if "diff" in report:
        diff = report["diff"]
        rows += [
            ("`git diff HEAD~1 HEAD`", diff["theta"], diff["lfs"], TARGETS["diff"]),
            ("`git theta diff HEAD~1 HEAD`", diff["theta diff"], None, TARGETS["theta diff"]),
            ("`git theta diff --no-stats HEAD~1 HEAD`", diff["theta diff --no-stats"], None, None),
        ]
        notes.append(
            f"diff: {diff['tensors']:,} tensors of 32x32 fp32 ({diff['file_bytes'] / 1e6:.0f} MB), "
            f"{diff['changed']:,} changed"
        )
    lines = ["| command | git-theta wall (CPU) | git-lfs wall (CPU) | target (wall) | |", "|---|---|---|---|---|"]
    for name, theta, lfs, target in rows:
        goal = f"<= {target} s" if target is not None else ""
        lines.append(f"| {name} | {_cell(theta)} | {_cell(lfs)} | {goal} | {_verdict(theta, target)} |")
    return "\n".join([*lines, "", "; ".join(notes) + "."]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="history-bench-", dir=args.tmpdir) as tmp:
        work = Path(tmp)
        env = runner.git_env(work)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        runner.warm_up(env, with_torch=False)
        try:
            cases = args.cases.split(",")
            report: dict[str, Any] = {"repeat": args.repeat}
            if "log" in cases:
                report["log"] = history_case(work, env, args.minilm_scale, args.repeat)
            if "diff" in cases:
                report["diff"] = diff_case(work, env, args.tensors, args.repeat)
        except runner.BenchError as error:
            print(f"history_bench: {error}", file=sys.stderr)
            return 1
    runner.emit(report, args.json, render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
