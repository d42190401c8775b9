"""Deep update chains against plain git-lfs: checkout of the newest, a middle and the oldest of many small commits.

    python3 benchmarks/chain_bench.py                          # 105 MB fp32, 100 commits (~10 min on 2 cores)
    python3 benchmarks/chain_bench.py --size 1 --commits 6     # seconds: what tests/benchmarks/chain_bench_test.py runs
    python3 benchmarks/chain_bench.py --repeat 3 --json out.json

The model is a GPT-like fp32 safetensors file of 8 transformer blocks (q, k, v, o [d, d]; ff up [4d, d], down
[d, 4d]; their biases; two layer norms), a [4d, d] embedding and a final norm: 130 tensors, most of the bytes in
1 MB and 4 MB matrices, a third of the tensors tiny. d is chosen so the file is about --size MB (d = 512 at 100).
Each commit after the first changes 10% of the tensors (13 of 130, drawn at random, seeded), setting 1% of their
entries (random positions) to new N(0, 0.02) values: the deltas automatic sparse/xor links are made for.

Both tools get the same file sequence and take turns commit by commit (git-lfs's add, then git-theta's), each in its
own fresh repo with its filter wrapped by maxrss.py. Then, --repeat times, for the newest, the middle and the oldest
version, each tool in turn: the working file is deleted and `git checkout <rev> -- model.safetensors` rebuilds it
(compared byte for byte with what was committed). Reported: filter CPU seconds (user+sys of the filter process,
from maxrss.py), git+filter CPU (wait4 on git: it reaps the filter), wall seconds, and theta/lfs ratios of the
medians. Targets (issue 12, item 4): filter CPU of the newest <= 1.2x git-lfs, of any version <= 1.5x.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import runner

MODEL = "model.safetensors"
SEED = 20261202
SIGMA = 0.02
TENSOR_SHARE = 0.10
ENTRY_SHARE = 0.01
LAYERS = 8
TARGETS = {"newest": 1.2, "middle": 1.5, "oldest": 1.5}


def shapes(size_mb: float) -> dict[str, tuple[int, ...]]:
    """The model's tensors; d = 512 gives 100.8 MB (fp32), other sizes scale d with the square root."""
    d = max(8, round(512 * (size_mb / 100) ** 0.5 / 8) * 8)
    found: dict[str, tuple[int, ...]] = {"embed.weight": (4 * d, d)}
    for layer in range(LAYERS):
        block = f"layers.{layer}"
        for proj in ("q", "k", "v", "o"):
            found[f"{block}.attn.{proj}.weight"] = (d, d)
            found[f"{block}.attn.{proj}.bias"] = (d,)
        found[f"{block}.ff.up.weight"], found[f"{block}.ff.up.bias"] = (4 * d, d), (4 * d,)
        found[f"{block}.ff.down.weight"], found[f"{block}.ff.down.bias"] = (d, 4 * d), (d,)
        for norm in ("norm1", "norm2"):
            found[f"{block}.{norm}.weight"], found[f"{block}.{norm}.bias"] = (d,), (d,)
    found["final_norm.weight"] = (d,)
    return found


def save(path: Path, tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    header, offset = {}, 0
    for name in sorted(tensors):
        nbytes = tensors[name].nbytes
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with path.open("wb") as out:
        out.write(len(head).to_bytes(8, "little") + head)
        for name in sorted(tensors):
            out.write(np.ascontiguousarray(tensors[name]).data)


def next_version(rng: np.random.Generator, model: dict[str, np.ndarray[Any, Any]]) -> None:
    """Change 1% of the entries of 10% of the tensors, in place."""
    names = sorted(model)
    for index in rng.choice(len(names), max(1, round(TENSOR_SHARE * len(names))), replace=False):
        flat = model[names[index]].reshape(-1)
        picked = rng.choice(flat.size, max(1, round(ENTRY_SHARE * flat.size)), replace=False)
        flat[picked] = rng.normal(0, SIGMA, len(picked)).astype(np.float32)


def timed(repo: runner.ToolRepo, *args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of git and every child it reaped, i.e. the filter) of one git command."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(["git", *args], cwd=repo.path, env=repo.env, stdout=errors, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            errors.seek(0)
            raise runner.BenchError(f"{repo.tool}: git {' '.join(args)}: {errors.read().decode(errors='replace')}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def build(workdir: Path, env: dict[str, str], size_mb: float, commits: int) -> tuple[dict[str, Any], dict[int, str]]:
    """Both repos with `commits` versions; the sha256 of every version's file, by commit number (0 = oldest)."""
    repos = {tool: runner.ToolRepo(tool, workdir / tool, env) for tool in ("lfs", "theta")}
    for repo in repos.values():
        repo.setup()
    rng = np.random.default_rng(SEED)
    model = {name: rng.normal(0, SIGMA, shape).astype(np.float32) for name, shape in shapes(size_mb).items()}
    digests, add_cpu = {}, {tool: 0.0 for tool in repos}
    for number in range(commits):
        if number:
            next_version(rng, model)
        for tool, repo in repos.items():
            save(repo.path / MODEL, model)
            timed(repo, "add", MODEL)
            timed(repo, "commit", "-q", "-m", f"v{number}")
            add_cpu[tool] += repo.filter_usage()[1]
        digests[number] = hashlib.sha256((repos["theta"].path / MODEL).read_bytes()).hexdigest()
    return {"repos": repos, "add_cpu": add_cpu, "tensors": len(model)}, digests


def chain_depths(repo: runner.ToolRepo, rev: str) -> tuple[int, float]:
    """(longest, mean) chain of links of the version at `rev`, from its metadata."""
    text = subprocess.run(
        ["git", "show", f"{rev}:{MODEL}"], cwd=repo.path, env=repo.env, capture_output=True, text=True, check=True
    ).stdout
    depths = [len(entry["stored"]) for entry in json.loads(text)["params"].values()]
    return max(depths), sum(depths) / len(depths)


def measure(size_mb: float, commits: int, repeat: int, tmpdir: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="theta-chain-bench-", dir=tmpdir) as tmp:
        workdir = Path(tmp)
        env = runner.git_env(workdir)
        runner.warm_up(env, with_torch=False)
        built, digests = build(workdir, env, size_mb, commits)
        repos: dict[str, runner.ToolRepo] = built["repos"]
        versions = {"newest": commits - 1, "middle": commits // 2, "oldest": 0}
        samples: dict[str, dict[str, dict[str, list[float]]]] = {
            label: {tool: {"filter_cpu": [], "total_cpu": [], "wall": [], "rss_kb": []} for tool in repos}
            for label in versions
        }
        for _ in range(repeat):
            for label, number in versions.items():
                for tool, repo in repos.items():
                    (repo.path / MODEL).unlink()
                    wall, total = timed(repo, "checkout", f"HEAD~{commits - 1 - number}", "--", MODEL)
                    rss_kb, cpu = repo.filter_usage()
                    got = hashlib.sha256((repo.path / MODEL).read_bytes()).hexdigest()
                    if got != digests[number]:
                        raise runner.BenchError(f"{tool}: checkout of v{number} is not the committed file")
                    for key, value in (("filter_cpu", cpu), ("total_cpu", total), ("wall", wall), ("rss_kb", rss_kb)):
                        samples[label][tool][key].append(value)
        depth = {label: chain_depths(repos["theta"], f"HEAD~{commits - 1 - n}") for label, n in versions.items()}
        store = {tool: repo.store_bytes() for tool, repo in repos.items()}
    return {
        "size_bytes": sum(4 * int(np.prod(s)) for s in shapes(size_mb).values()),
        "tensors": built["tensors"],
        "commits": commits,
        "repeat": repeat,
        "add_filter_cpu_s": built["add_cpu"],
        "store_bytes": store,
        "versions": {
            label: {"commit": number, "max_depth": depth[label][0], "mean_depth": depth[label][1], **samples[label]}
            for label, number in versions.items()
        },
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"model: {report['tensors']} fp32 tensors, {report['size_bytes'] / 1e6:.1f} MB; {report['commits']} commits "
        f"(10% of tensors, 1% of their entries each); medians of {report['repeat']} run(s)",
        "",
        "| checkout of | chain depth max / mean | filter CPU theta / lfs (s) | ratio | target | "
        "git+filter CPU theta / lfs (s) | wall theta / lfs (s) | filter RSS theta / lfs (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in report["versions"].items():
        med = {tool: {k: statistics.median(v) for k, v in row[tool].items()} for tool in ("theta", "lfs")}
        ratio = med["theta"]["filter_cpu"] / max(med["lfs"]["filter_cpu"], 1e-9)
        verdict = "PASS" if ratio <= TARGETS[label] else "FAIL"
        lines.append(
            f"| {label} (v{row['commit']}) | {row['max_depth']} / {row['mean_depth']:.2f} | "
            f"{med['theta']['filter_cpu']:.3f} / {med['lfs']['filter_cpu']:.3f} | {ratio:.3f} | "
            f"<= {TARGETS[label]}x {verdict} | {med['theta']['total_cpu']:.3f} / {med['lfs']['total_cpu']:.3f} | "
            f"{med['theta']['wall']:.3f} / {med['lfs']['wall']:.3f} | "
            f"{med['theta']['rss_kb'] / 1024:.0f} / {med['lfs']['rss_kb'] / 1024:.0f} |"
        )
    cpu, store = report["add_filter_cpu_s"], report["store_bytes"]
    lines += [
        "",
        f"all adds, filter CPU theta / lfs: {cpu['theta']:.1f} / {cpu['lfs']:.1f} s; "
        f"store theta / lfs: {store['theta'] / 1e6:.1f} / {store['lfs'] / 1e6:.1f} MB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=float, default=100.0, help="model size in MB (default 100)")
    parser.add_argument("--commits", type=int, default=100, help="versions committed (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="checkouts per version and tool (median; default 3)")
    parser.add_argument("--json", help="also write every number as JSON to FILE ('-': print JSON instead)")
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp directory goes (default /tmp)")
    args = parser.parse_args(argv)
    if args.commits < 1 or args.repeat < 1:
        parser.error("--commits and --repeat must be at least 1")
    try:
        report = measure(args.size, args.commits, args.repeat, args.tmpdir)
    except runner.BenchError as error:
        print(f"chain_bench: {error}", file=sys.stderr)
        return 1
    runner.emit(report, args.json, render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
