"""git-theta against plain git-lfs on a TensorFlow checkpoint (tensor bundle); prints bench.py's Markdown table.

    python3 benchmarks/tf_bench.py                   # ~300 MB fp32, 100 variables (a few minutes)
    python3 benchmarks/tf_bench.py --scale 0.001 --json out.json

The checkpoint is written by tf.train.Checkpoint.write: `ckpt.index` + `ckpt.data-00000-of-00001`, both tracked
by each tool (`ckpt.*`). Version 2 changes 10% of the variables, as bench.py's cases do, and is written to the same
prefix (as a training loop calling `write` does). Steps and rows are bench.py's, over both files: add + commit
v1, add + commit v2, `git status` after touching both, `git checkout HEAD~1 -- ckpt.*`. The tools take turns.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import data  # noqa: E402
import runner  # noqa: E402

FILES = ("ckpt.index", "ckpt.data-00000-of-00001")
PATTERN = "ckpt.*"
CASE = bench.Case(
    "t",
    "fp32 TensorFlow checkpoint (tf.train.Checkpoint)",
    FILES[1],
    lambda folder, scale: make_checkpoint(folder, scale)[0],
    0.9,
    False,
)

# Writes v1/ and v2/ with TensorFlow in a child process (its import takes seconds and ~1 GB; it stays out of here).
_WRITE = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, sys.argv[1])
import numpy as np, tensorflow as tf
import data
folder, scale = sys.argv[2], float(sys.argv[3])
specs = data.layout(int(300e6 * scale), 100, 4, 1024)
arrays = [data.weights(i, shape, np.float32) for i, (_, shape) in enumerate(specs)]
variables = [tf.Variable(a) for a in arrays]
checkpoint = tf.train.Checkpoint(**{f"layer_{i:03d}": v for i, v in enumerate(variables)})
checkpoint.write(os.path.join(folder, "v1", "ckpt"))
chosen = data.pick_changed([a.nbytes for a in arrays], [True] * len(arrays))
for index in chosen:
    variables[index].assign(data.perturbed(arrays[index], index))
checkpoint.write(os.path.join(folder, "v2", "ckpt"))
print(len(arrays), len(chosen), sum(arrays[i].nbytes for i in chosen))
"""


def make_checkpoint(folder: Path, scale: float) -> tuple[data.Checkpoint, Path, Path]:
    here = str(Path(__file__).resolve().parent)
    command = [sys.executable, "-c", _WRITE, here, str(folder), str(scale)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"tf_bench: writing the checkpoint with TensorFlow failed:\n{result.stderr[-3000:]}")
    tensors, changed, changed_bytes = (int(n) for n in result.stdout.split())
    v1, v2 = folder / "v1", folder / "v2"
    return data.Checkpoint(v1 / FILES[1], v2 / FILES[1], tensors, changed, changed_bytes), v1, v2


def _add_commit(repo: runner.ToolRepo, message: str) -> tuple[float, runner.Sample, tuple[int, float]]:
    add = repo.git("add", *FILES)
    commit = repo.git("commit", "-q", "-m", message)
    return add.seconds + commit.seconds, add, repo.filter_usage()


def _copy(source: Path, repo: runner.ToolRepo) -> None:
    for name in FILES:
        shutil.copyfile(source / name, repo.path / name)


def one_round(repo: runner.ToolRepo, v1: Path, v2: Path, result: runner.ToolResult) -> None:
    repo.setup()
    tracker = [runner.theta_executable(), "track"] if repo.tool == "theta" else ["git", "lfs", "track"]
    runner.run([*tracker, PATTERN], repo.path, repo.env)
    repo.git("commit", "-q", "-am", "track the TensorFlow checkpoint")
    objects_before = repo.git_object_bytes()
    _copy(v1, repo)
    seconds, add, (filter_kb, filter_cpu) = _add_commit(repo, "v1")
    result.add("add_v1_s", seconds)
    result.add("filter_cpu_add_s", filter_cpu)
    result.add("filter_rss_add_kb", filter_kb)
    result.add("git_rss_add_kb", add.git_rss_kb)
    result.add("store_v1_bytes", repo.store_bytes())
    _copy(v2, repo)
    seconds, _, _ = _add_commit(repo, "v2: 10% of the variables changed")
    result.add("add_v2_s", seconds)
    result.add("store_growth_bytes", repo.store_bytes() - result.samples["store_v1_bytes"][-1])
    result.add("git_objects_growth_bytes", repo.git_object_bytes() - objects_before)
    now = time.time()
    for name in FILES:
        os.utime(repo.path / name, (now, now))
    result.add("status_s", repo.git("status", "--porcelain").seconds)
    repo.filter_usage()
    checkout = repo.git("checkout", "-q", "HEAD~1", "--", *FILES)
    filter_kb, filter_cpu = repo.filter_usage()
    result.add("checkout_s", checkout.seconds)
    result.add("filter_cpu_checkout_s", filter_cpu)
    result.add("filter_rss_checkout_kb", filter_kb)
    result.add("git_rss_checkout_kb", checkout.git_rss_kb)
    if not all(filecmp.cmp(repo.path / name, v1 / name, shallow=False) for name in FILES):
        result.checkout_identical = "NO"


def measure(v1: Path, v2: Path, workdir: Path, env: dict[str, str], repeat: int) -> dict[str, runner.ToolResult]:
    results = {tool: runner.ToolResult() for tool in ("lfs", "theta")}
    for round_ in range(repeat):
        for tool, result in results.items():
            repo = runner.ToolRepo(tool, workdir / f"{tool}-{round_}", env)
            try:
                one_round(repo, v1, v2, result)
            finally:
                shutil.rmtree(repo.path, ignore_errors=True)
                repo.rss_log.unlink(missing_ok=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="size multiplier (default 1: ~300 MB)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per tool, medians reported (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp directory goes (default /tmp)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.repeat < 1:
        parser.error("--scale must be > 0 and --repeat >= 1")
    workdir = Path(tempfile.mkdtemp(prefix="theta-tf-bench-", dir=args.tmpdir))
    try:
        env = runner.git_env(workdir)
        runner.warm_up(env, with_torch=False)
        checkpoint, v1, v2 = make_checkpoint(workdir, args.scale)
        size = sum((v1 / name).stat().st_size for name in FILES)
        info: dict[str, Any] = {
            "case": CASE.key,
            "title": CASE.title,
            "file_bytes": size,
            "tensors": checkpoint.tensors,
            "changed_tensors": checkpoint.changed,
            "changed_bytes": checkpoint.changed_bytes,
        }
        try:
            results = measure(v1, v2, workdir, env, args.repeat)
            info["checkout_identical"] = {tool: results[tool].checkout_identical for tool in results}
            info["rows"] = bench.case_rows(CASE, checkpoint, results)
        except runner.BenchError as error:
            info["error"] = str(error)
        report = {
            "scale": args.scale,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "git": bench._version(["git", "--version"]),
            "git_lfs": bench._version(["git", "lfs", "version"]),
            "cases": [info],
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(bench.render(report), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if "error" in info else 0


if __name__ == "__main__":
    sys.exit(main())
