"""Cost per tensor: git-theta against plain git-lfs on safetensors files of many small tensors (issue 12).

    python3 benchmarks/tensor_count_bench.py                          # 10,000 and 100,000 tensors (many minutes)
    python3 benchmarks/tensor_count_bench.py --counts 300 --json out.json   # seconds: the smoke test's run
    python3 benchmarks/tensor_count_bench.py --counts 10000 --million     # plus the 1,000,000-line metadata rows

Each file holds N fp32 tensors of 32x32 (--side), N(0, 1) * 0.02 seeded per tensor; v2 changes 10% of
them. Every time row shows wall and CPU seconds (user + sys of git and the filters it reaped); a target
holds for both. See benchmarks/README.md ("Many small tensors").
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402
import million  # noqa: E402
import runner  # noqa: E402

FILENAME = "model.safetensors"
MB = 1 << 20


@dataclass(frozen=True)
class Row:
    key: str  # ToolResult.samples key; time rows also have key + "_cpu"
    label: str
    unit: str  # "s" (wall and CPU shown), "cpu" (CPU seconds only) or "KiB"
    ratio_target: dict[int, float] | None = None  # tensor count -> theta/lfs target, at or above that count
    theta_limit: float | None = None  # absolute target for git-theta (seconds; MiB for RSS)
    limit_from: int = 0  # the absolute target applies from this tensor count on
    theta_only: bool = False


RATIO = {10_000: 1.5, 100_000: 2.0}
ROWS = [
    Row("add_v1_s", "first `git add` + `git commit`", "s", RATIO),
    Row("status_s", "`git status` after `touch file`", "s", RATIO),
    Row("checkout_s", "`git checkout HEAD~1 -- file` (rewrites v2 -> v1)", "s", RATIO),
    Row("diff_s", "`git diff HEAD~1 HEAD` (theta: diff driver; lfs: pointer diff)", "s", None, 1.0, 100_000),
    Row("theta_diff_s", "`git theta diff HEAD~1 HEAD -- file`", "s", None, 2.0, 100_000, theta_only=True),
    Row("filter_cpu_add_s", "filter CPU (user+sys), first add", "cpu"),
    Row("filter_cpu_checkout_s", "filter CPU (user+sys), checkout", "cpu"),
    Row("filter_rss_add_kb", "filter peak RSS, first add", "KiB", None, 150, 100_000),
    Row("filter_rss_checkout_kb", "filter peak RSS, checkout", "KiB", None, 150, 100_000),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="10000,100000", help="comma-separated tensor counts (default 10000,100000)")
    parser.add_argument("--side", type=int, default=32, help="each tensor is SIDE x SIDE fp32 (default 32)")
    parser.add_argument("--repeat", type=int, default=1, help="fresh repos per count and tool; medians (default 1)")
    parser.add_argument("--million", action="store_true", help="also time git-theta on 1,000,000-line metadata")
    parser.add_argument("--million-entries", type=int, default=million.ENTRIES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON to FILE ('-': instead of the table)"
    )
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp directory goes (default /tmp)")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(c) for c in args.counts.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--counts must be comma-separated integers, not {args.counts!r}")
    if not args.counts or min(args.counts) < 10 or args.side < 1 or args.repeat < 1:
        parser.error("--counts must be integers >= 10, --side >= 1 and --repeat >= 1")
    return args


def one_round(repo: runner.ToolRepo, checkpoint: data.Checkpoint, filename: str, result: runner.ToolResult) -> None:
    """The steps of one tool in one fresh repo: add v1, add v2, status after touch, diff, checkout of v1."""
    repo.setup()
    target = repo.path / filename

    def timed(key: str, *samples: runner.Sample) -> None:
        result.add(key, sum(s.seconds for s in samples))
        result.add(key + "_cpu", sum(s.cpu_seconds for s in samples))

    shutil.copyfile(checkpoint.v1, target)
    add = repo.git("add", filename)
    timed("add_v1_s", add, repo.git("commit", "-q", "-m", "v1"))
    rss_kb, cpu = repo.filter_usage()
    result.add("filter_cpu_add_s", cpu)
    result.add("filter_rss_add_kb", rss_kb)

    shutil.copyfile(checkpoint.v2, target)
    repo.git("add", filename)
    repo.git("commit", "-q", "-m", "v2: 10% of the tensors changed")
    now = time.time()
    os.utime(target, (now, now))
    timed("status_s", repo.git("status", "--porcelain"))
    timed("diff_s", repo.git("diff", "HEAD~1", "HEAD"))
    if repo.tool == "theta":
        timed(
            "theta_diff_s",
            runner.run([runner.theta_executable(), "diff", "HEAD~1", "HEAD", "--", filename], repo.path, repo.env),
        )
    repo.filter_usage()  # the status run's clean is not a row

    timed("checkout_s", repo.git("checkout", "-q", "HEAD~1", "--", filename))
    rss_kb, cpu = repo.filter_usage()
    result.add("filter_cpu_checkout_s", cpu)
    result.add("filter_rss_checkout_kb", rss_kb)
    if not filecmp.cmp(target, checkpoint.v1, shallow=False):
        result.checkout_identical = "NO"


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _ratio_target(row: Row, count: int) -> float | None:
    steps = [target for at, target in sorted((row.ratio_target or {}).items()) if count >= at]
    return steps[-1] if steps else None


def _judge(row: Row, count: int, theta: float, lfs: float | None) -> tuple[str, bool | None]:
    """(target text, passed) of one value; passed is None without a target at this count."""
    ratio = _ratio_target(row, count)
    if ratio is not None and lfs is not None:
        return f"<= {ratio:g}x", lfs > 0 and theta / lfs <= ratio
    if row.theta_limit is not None and count >= row.limit_from:
        if row.unit == "KiB":
            return f"theta <= {row.theta_limit:g} MiB", theta <= row.theta_limit * 1024
        return f"theta <= {row.theta_limit:g} s", theta <= row.theta_limit
    return "", None


def count_rows(count: int, results: dict[str, runner.ToolResult]) -> list[dict[str, Any]]:
    rows = []
    for row in ROWS:
        found: dict[str, Any] = {"key": row.key, "metric": row.label, "unit": row.unit}
        for measure in ("", "_cpu") if row.unit == "s" else ("",):
            theta = _median(results["theta"].samples[row.key + measure])
            lfs = None if row.theta_only else _median(results["lfs"].samples[row.key + measure])
            target, passed = _judge(row, count, theta, lfs)
            name = "cpu" if measure else ("value" if row.unit != "s" else "wall")
            found[name] = {
                "theta": theta,
                "lfs": lfs,
                "ratio": theta / lfs if lfs else None,
                "pass": passed,
                "theta_samples": results["theta"].samples[row.key + measure],
                "lfs_samples": None if lfs is None else results["lfs"].samples[row.key + measure],
            }
            found["target"] = target
        rows.append(found)
    return rows


def run_count(count: int, side: int, repeat: int, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    folder = workdir / f"n{count}"
    folder.mkdir()
    try:
        checkpoint = data.make_tensor_count(folder, count, side)
        info: dict[str, Any] = {"tensors": count, "changed_tensors": checkpoint.changed, "file_bytes": checkpoint.size}
        try:
            results = runner.measure(("lfs", "theta"), checkpoint, FILENAME, folder, env, repeat, one_round)
        except runner.BenchError as error:
            info["error"] = str(error)
            return info
        info["checkout_identical"] = {tool: results[tool].checkout_identical for tool in results}
        info["rows"] = count_rows(count, results)
        return info
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1024:.1f} MiB" if unit == "KiB" else f"{value:.3f} s"


def _ratio(value: dict[str, Any]) -> str:
    return "n/a" if value["ratio"] is None else f"{value['ratio']:.2f}"


def row_cells(row: dict[str, Any]) -> list[str]:
    """git-theta, git-lfs, theta/lfs and result cells; a time row shows wall with the CPU seconds beside it."""
    if row["unit"] != "s":
        value = row["value"]
        unit = "KiB" if row["unit"] == "KiB" else "s"
        cells = [_cell(value["theta"], unit), _cell(value["lfs"], unit), _ratio(value)]
        verdicts = [value["pass"]]
    else:
        wall, cpu = row["wall"], row["cpu"]
        cells = [
            f"{_cell(wall[tool], 's')} (CPU {_cell(cpu[tool], 's')})" if wall[tool] is not None else "n/a"
            for tool in ("theta", "lfs")
        ]
        cells.append(f"{_ratio(wall)} (CPU {_ratio(cpu)})" if wall["ratio"] is not None else "n/a")
        verdicts = [wall["pass"], cpu["pass"]]
    known = [v for v in verdicts if v is not None]
    return [*cells, row["target"], "" if not known else "PASS" if all(known) else "FAIL"]


def render(report: dict[str, Any]) -> str:
    lines = [
        f"git-theta vs git-lfs, many small tensors ({report['side']}x{report['side']} fp32) — each timing run "
        f"{report['repeat']}x ({'single run' if report['repeat'] == 1 else 'median'}), warm page cache, "
        f"{report['cpus']} CPU(s); {report['git']}, {report['git_lfs']}",
        "",
        "| tensors | metric | git-theta | git-lfs | theta/lfs | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for case in report["counts"]:
        name = f"{case['tensors']:,}"
        if "error" in case:
            lines.append(f"| {name} | error | | | | | FAIL |")
            notes.append(f"{name} tensors failed: {case['error']}")
            continue
        for row in case["rows"]:
            lines.append(f"| {name} | {row['metric']} | " + " | ".join(row_cells(row)) + " |")
        notes.append(
            f"{name} tensors ({case['file_bytes'] / MB:.1f} MiB), v2 changed {case['changed_tensors']:,}; "
            "checked-out v1 identical to the original: "
            + ", ".join(f"{tool} {same}" for tool, same in case["checkout_identical"].items())
        )
    if "million" in report:
        lines += ["", *million.render(report["million"])]
    notes.append(
        "Time cells: wall seconds, and in brackets CPU seconds (user+sys of git and the filters it reaped). A target "
        "holds for both; on a shared machine the CPU figures are the steadier."
    )
    return "\n".join(lines + [""] + notes) + "\n"


def _version(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "unavailable"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("git-theta") is None or shutil.which("git-lfs") is None:
        print("tensor_count_bench: needs the `git-theta` console script and `git-lfs` on PATH", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="theta-count-bench-", dir=args.tmpdir))
    try:
        env = runner.git_env(workdir)
        runner.warm_up(env, with_torch=False)
        report: dict[str, Any] = {
            "side": args.side,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "git": _version(["git", "--version"]),
            "git_lfs": _version(["git", "lfs", "version"]),
            "counts": [run_count(count, args.side, args.repeat, workdir, env) for count in args.counts],
        }
        if args.million:
            report["million"] = million.measure(args.million_entries, workdir / "million", env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    runner.emit(report, args.json, render(report))
    failed = any("error" in case for case in report["counts"]) or "error" in report.get("million", {})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
