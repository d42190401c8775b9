"""TIES merge of two branches of the ~400 MB fp32 benchmark model, every tensor in conflict: time and peak RSS.

    python3 benchmarks/merge_bench.py               # ~400 MB: 100 fp32 tensors (benchmarks/data.py layout)
    python3 benchmarks/merge_bench.py --scale 0.1   # ~40 MB, quick

The base model is committed on main; branch `a` adds N(0, 0.002) noise to
every tensor, branch `b` other N(0, 0.002) noise, so every parameter changed
differently on both sides. Measured:
  - driver: `git-theta merge-driver` run on the three metadata blobs (wall time, peak RSS via maxrss.py);
  - git merge: the whole `git merge b` on `a` with theta.merge.strategy=ties (wall time), which also
    rebuilds the merged file into the working tree through the filter; the driver's and the filter's
    peak RSS inside it come from maxrss.py wrapped around them in git config.
One merged tensor is checked against a direct NumPy TIES computation.

Then the 3-way merges: branch `c` adds a third N(0, 0.002) noise, and `git theta merge` of the three
fine-tunes (tags fine-tune-a, -b, -c: the 2-way merge moves branch a on) with `--path
model.safetensors` runs with `--strategy ties --arg k=0.2` and with `--strategy model-stock` (the merge
base is main, found by `git merge-base --octopus`): wall time, CPU time (user + sys, the command and the
`git add` filter it starts) and peak RSS via maxrss.py. One merged tensor of each is checked against a
direct NumPy computation of the method.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

LAUNCHER = Path(__file__).resolve().parent / "maxrss.py"
MODEL = "model.safetensors"
NOISE = 0.002


def run(repo: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"merge_bench: {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout + result.stderr


def branch_value(index: int, shape: tuple[int, int], branch: int) -> np.ndarray[Any, Any]:
    base = data.weights(index, shape, np.float32)
    rng = np.random.default_rng([data.SEED, index, 10 + branch])
    return base + rng.standard_normal(math.prod(shape), dtype=np.float32).reshape(shape) * np.float32(NOISE)


def write_model(path: Path, specs: list[tuple[str, tuple[int, int]]], branch: int | None) -> None:
    """Streams tensor by tensor (the bench itself stays small)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in specs:
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + math.prod(shape) * 4]}
        offset += math.prod(shape) * 4
    with path.open("wb") as out:
        out.write(data.encode_header(header))
        for index, (_, shape) in enumerate(specs):
            value = data.weights(index, shape, np.float32) if branch is None else branch_value(index, shape, branch)
            out.write(value.tobytes())


def measured(out_file: Path, label: str, command: list[str]) -> list[str]:
    return [sys.executable, "-S", "-I", str(LAUNCHER), str(out_file), label, *command]


def read_rss(out_file: Path) -> dict[str, tuple[int, float]]:
    found: dict[str, tuple[int, float]] = {}
    for line in out_file.read_text().splitlines():
        label, kib, cpu = line.split()
        previous = found.get(label, (0, 0.0))
        found[label] = (max(previous[0], int(kib)), previous[1] + float(cpu))
    return found


def ties_reference(base: np.ndarray[Any, Any], versions: list[np.ndarray[Any, Any]], k: float) -> np.ndarray[Any, Any]:
    taus = []
    for version in versions:
        tau = (version.astype(np.float64) - base).ravel()
        keep = np.argsort(-np.abs(tau), kind="stable")[: math.ceil(k * tau.size - 1e-9)]
        trimmed = np.zeros_like(tau)
        trimmed[keep] = tau[keep]
        taus.append(trimmed)
    stacked = np.stack(taus)
    sign = np.sign(stacked.sum(axis=0))
    agree = (np.sign(stacked) == sign) & (stacked != 0)
    count = agree.sum(axis=0)
    mean = np.where(count > 0, (stacked * agree).sum(axis=0) / np.maximum(count, 1), 0.0)
    return (base.astype(np.float64).ravel() + mean).reshape(base.shape)


def model_stock_reference(base: np.ndarray[Any, Any], versions: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Model Stock over the flattened tensor: t = k cos / (1 + (k-1) cos), cos the mean pairwise cosine of the
    deltas."""
    taus = [(version.astype(np.float64) - base).ravel() for version in versions]
    cosines = [
        float(a @ b) / (float(np.linalg.norm(a)) * float(np.linalg.norm(b)))
        for i, a in enumerate(taus)
        for b in taus[i + 1 :]
    ]
    cos, k = sum(cosines) / len(cosines), len(versions)
    t = k * cos / (1 + (k - 1) * cos)
    average = sum(version.astype(np.float64) for version in versions) / k
    return t * average + (1 - t) * base


def three_way(
    repo: Path, tmp: Path, theta: str, specs: list[tuple[str, tuple[int, int]]], strategy: str, arguments: list[str]
) -> dict[str, Any]:
    """`git theta merge a b c` with `strategy`, timed and measured; one tensor checked against NumPy."""
    run(repo, "git", "reset", "-q", "--hard")
    rss_file = tmp / f"rss-{strategy}.txt"
    command = [
        theta,
        "merge",
        "fine-tune-a",
        "fine-tune-b",
        "fine-tune-c",
        "--path",
        MODEL,
        "--strategy",
        strategy,
        *arguments,
    ]
    started = time.perf_counter()
    output = run(repo, *measured(rss_file, strategy, command))
    seconds = time.perf_counter() - started
    from safetensors import safe_open

    index = len(specs) // 3
    name, shape = specs[index]
    with safe_open(str(repo / MODEL), "np") as merged:
        got = merged.get_tensor(name)
    base = data.weights(index, shape, np.float32).astype(np.float64)
    versions = [branch_value(index, shape, b) for b in (0, 1, 2)]
    expected = ties_reference(base, versions, 0.2) if strategy == "ties" else model_stock_reference(base, versions)
    if not np.array_equal(got, expected.astype(np.float32)):
        differ = int(np.count_nonzero(got != expected.astype(np.float32)))
        raise SystemExit(
            f"merge_bench: 3-way {strategy} of {name} differs from the NumPy reference in {differ} of {got.size} "
            f"entries:\n{output}"
        )
    peak_kib, cpu = read_rss(rss_file)[strategy]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_kib / 1024,
        "summary": [line for line in output.splitlines() if "merged" in line],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="model size as a fraction of 400 MB (default 1)")
    parser.add_argument("--workdir", type=Path, help="where to make the repository (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="merge-bench-", dir=args.workdir) as tmp:
        report = bench(Path(tmp), args.scale)
    print(json.dumps(report, indent=1))
    print(
        f"\n| TIES merge, {report['tensors']} tensors, {report['model_mb']:.0f} MB fp32, all in conflict | driver "
        f"{report['driver_seconds']:.1f} s, peak RSS {report['driver_peak_rss_mb']:.0f} MB | whole `git merge` "
        f"{report['git_merge_seconds']:.1f} s "
        f"(driver RSS {report['git_merge_driver_rss_mb']:.0f} MB, filter RSS {report['git_merge_filter_rss_mb']:.0f} "
        "MB) |"
    )
    print("\n| 3-way `git theta merge a b c` | wall | CPU | peak RSS |\n|---|---|---|---|")
    for strategy in ("ties", "model-stock"):
        row = report["three_way"][strategy]
        print(f"| {strategy} | {row['seconds']:.1f} s | {row['cpu_seconds']:.1f} s | {row['peak_rss_mb']:.0f} MB |")
    return 0


def bench(tmp: Path, scale: float) -> dict[str, Any]:
    repo = tmp / "repo"
    repo.mkdir()
    specs = data.layout(int(400e6 * scale), 100, 4, 1024)
    theta = str(Path(sys.executable).parent / "git-theta")
    run(repo, "git", "init", "-q", "-b", "main")
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.com"), ("theta.merge.strategy", "ties")):
        run(repo, "git", "config", key, value)
    run(repo, theta, "install", "--local")
    run(repo, theta, "track", "*.safetensors")
    write_model(repo / MODEL, specs, None)
    run(repo, "git", "add", ".")
    run(repo, "git", "commit", "-q", "-m", "base")
    for branch in (0, 1, 2):
        run(repo, "git", "checkout", "-q", "-b", "abc"[branch], "main")
        write_model(repo / MODEL, specs, branch)
        run(repo, "git", "commit", "-q", "-am", f"branch {'abc'[branch]}")
        run(repo, "git", "tag", f"fine-tune-{'abc'[branch]}")  # the 2-way merge moves branch a on
    run(repo, "git", "checkout", "-q", "a")
    for label, rev in (("O", "main"), ("A", "a"), ("B", "b")):
        (tmp / label).write_bytes(
            subprocess.run(["git", "show", f"{rev}:{MODEL}"], cwd=repo, capture_output=True, check=True).stdout
        )

    rss_file = tmp / "rss.txt"
    started = time.perf_counter()
    run(
        repo,
        *measured(rss_file, "driver", [theta, "merge-driver", str(tmp / "O"), str(tmp / "A"), str(tmp / "B"), MODEL]),
    )
    driver_seconds = time.perf_counter() - started

    driver = (
        " ".join(shlex.quote(p) for p in measured(rss_file, "in-merge-driver", [theta, "merge-driver"]))
        + " %O %A %B %P"
    )
    run(repo, "git", "config", "merge.theta.driver", driver)
    run(
        repo,
        "git",
        "config",
        "filter.theta.process",
        " ".join(shlex.quote(p) for p in measured(rss_file, "filter", [theta, "filter-process"])),
    )
    started = time.perf_counter()
    output = run(repo, "git", "merge", "-q", "b", "-m", "ties merge")
    merge_seconds = time.perf_counter() - started

    from safetensors import safe_open

    index = len(specs) // 2
    name, shape = specs[index]
    with safe_open(str(repo / MODEL), "np") as merged:
        got = merged.get_tensor(name)
    expected = ties_reference(
        data.weights(index, shape, np.float32).astype(np.float64), [branch_value(index, shape, b) for b in (0, 1)], 0.2
    )
    if not np.array_equal(got, expected.astype(np.float32)):
        raise SystemExit(f"merge_bench: merged {name} differs from the NumPy TIES reference")
    rss = read_rss(rss_file)
    three = {
        strategy: three_way(repo, tmp, theta, specs, strategy, arguments)
        for strategy, arguments in (("ties", ["--arg", "k=0.2"]), ("model-stock", []))
    }
    return {
        "tensors": len(specs),
        "model_mb": (repo / MODEL).stat().st_size / 1e6,
        "largest_tensor_mb": max(math.prod(s) * 4 for _, s in specs) / 1e6,
        "driver_seconds": driver_seconds,
        "driver_peak_rss_mb": rss["driver"][0] / 1024,
        "driver_cpu_seconds": rss["driver"][1],
        "git_merge_seconds": merge_seconds,
        "git_merge_driver_rss_mb": rss["in-merge-driver"][0] / 1024,
        "git_merge_filter_rss_mb": rss.get("filter", (0, 0.0))[0] / 1024,
        "driver_summary": [line for line in output.splitlines() if "merged" in line],
        "checked_tensor": name,
        "three_way": three,
    }


if __name__ == "__main__":
    sys.exit(main())
