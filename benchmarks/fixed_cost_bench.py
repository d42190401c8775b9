"""Fixed cost per tensor of clean and smudge, in-process, on tensors of one element (issue 12, item 2).

    python3 benchmarks/fixed_cost_bench.py                      # 100,000 tensors, 3 runs each
    python3 benchmarks/fixed_cost_bench.py --count 2000 --runs 1 --json -   # seconds: the smoke test's run

A safetensors file of N one-element F32 tensors has almost no bytes, so what clean and smudge spend on it is
what they spend per tensor whatever its size: parsing and writing metadata and headers, hashing calls, pack
members, Python objects. Each run is timed in this process (CPU seconds of all its threads, time.process_time,
which a shared machine disturbs far less than wall time), after one untimed run that loads every module:

- first clean: `clean.clean` of the file into an empty store (every tensor new: hashed, compressed, packed);
- re-clean: the same file again with its metadata staged (what `git status` after a touch costs);
- smudge: `smudge.smudge` of the committed metadata into a null writer (what a checkout costs).

Target: at most 20 us per tensor for each. The git-lfs column is absent: git-lfs has no per-tensor work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_US = 20.0
FILENAME = "model.safetensors"


class _Null:
    def write(self, data: Any) -> int:
        return len(memoryview(data).cast("B"))


def _write_file(path: Path, count: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    values = np.arange(count, dtype=np.float32)
    save_file({f"layer.{i}.weight": values[i : i + 1].copy() for i in range(count)}, str(path))


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True).stdout


def measure(count: int, runs: int, workdir: Path) -> dict[str, Any]:
    from git_theta import clean, smudge
    from git_theta.main import tune_gc
    from git_theta.repo import Repo

    tune_gc()  # as the filters run
    repo_path = workdir / "repo"
    repo_path.mkdir()
    _git(repo_path, "init", "-q")
    _git(repo_path, "config", "user.email", "bench@example.com")
    _git(repo_path, "config", "user.name", "bench")
    subprocess.run(["git-theta", "install", "--local"], cwd=repo_path, check=True, capture_output=True)
    subprocess.run(["git-theta", "track", FILENAME], cwd=repo_path, check=True, capture_output=True)
    _write_file(repo_path / FILENAME, count)
    _git(repo_path, "add", FILENAME, ".gitattributes")
    _git(repo_path, "commit", "-qm", "v1")
    committed = _git(repo_path, "show", f"HEAD:{FILENAME}")
    os.chdir(repo_path)
    objects = repo_path / ".git" / "lfs" / "objects"

    def first_clean() -> None:
        # An empty store and nothing to reuse: cleaned under a path no version of which exists, in a directory
        # of its own (a staged git-theta file beside it would lend its entries: Repo.sibling_metadata).
        shutil.rmtree(objects, ignore_errors=True)
        shutil.rmtree(repo_path / ".git" / "theta", ignore_errors=True)
        with open(FILENAME, "rb") as stream:
            clean.clean(Repo.discover(repo_path), f"fresh/{FILENAME}", stream)

    def re_clean() -> None:
        with open(FILENAME, "rb") as stream:
            clean.clean(Repo.discover(repo_path), FILENAME, stream)

    def smudge_it() -> None:
        smudge.smudge(Repo.discover(repo_path).store, FILENAME, committed, _Null())  # type: ignore[arg-type]

    results: dict[str, Any] = {"count": count, "runs": runs, "target_us": TARGET_US, "rows": {}}
    # Smudge and re-clean first, while the committed objects are in the store; the first clean empties it.
    for label, step in (("smudge", smudge_it), ("re-clean", re_clean), ("first clean", first_clean)):
        step()  # untimed: loads the modules and plugins this step uses
        samples = []
        for _ in range(runs):
            start = time.process_time()
            step()
            samples.append((time.process_time() - start) / count * 1e6)
        results["rows"][label] = {"us_per_tensor": statistics.median(samples), "samples": samples}
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['count']:,} one-element F32 tensors, in-process CPU per tensor, median of {results['runs']} run(s)",
        "",
        "| step | CPU per tensor | target | result |",
        "|---|---|---|---|",
    ]
    for label, row in results["rows"].items():
        value = row["us_per_tensor"]
        verdict = "PASS" if value <= results["target_us"] else "FAIL"
        lines.append(f"| {label} | {value:.1f} us | <= {results['target_us']:.0f} us | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="tensors in the file (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per step; medians (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-': instead)")
    parser.add_argument("--tmpdir", default=tempfile.gettempdir(), help="where the temp repo goes (default /tmp)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="fixed-cost-", dir=args.tmpdir))
    home = os.getcwd()
    try:
        results = measure(args.count, args.runs, workdir)
    finally:
        os.chdir(home)
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json == "-":
        print(json.dumps(results, indent=1))
        return 0
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
