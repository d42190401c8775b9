"""git-theta against plain git-lfs on the same checkpoint files; prints a Markdown table of theta/lfs ratios.

    python3 benchmarks/bench.py                      # all cases, full size (a few minutes)
    python3 benchmarks/bench.py --cases c --scale 0.01 --json out.json

Cases: (a) ~400 MB fp32 torch.save state dict of 100 tensors, (b) ~1 GB bf16
safetensors of 200 tensors, (c) the real MiniLM safetensors checkpoint.
--scale multiplies the synthetic sizes (and keeps a subset of MiniLM's
tensors below 1). See benchmarks/README.md for what each row counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402
import runner  # noqa: E402

RSS_FILE_SHARE = 0.25


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    filename: str
    make: Callable[[Path, float], data.Checkpoint]
    store_target: float  # theta/lfs store bytes ratio to pass
    rss_target: bool  # check filter RSS against the file size (the 1 GB case)


CASES = {
    "a": Case("a", "fp32 torch state dict (.pt)", "model.pt", data.make_torch_fp32, 0.9, False),
    "b": Case("b", "bf16 safetensors", "model.safetensors", data.make_safetensors_bf16, 0.75, True),
    "c": Case("c", "MiniLM-L6 fp32 safetensors (real)", "model.safetensors", data.make_minilm, 0.9, False),
}

# (key in ToolResult.samples, label, unit, theta/lfs target)
ROWS: list[tuple[str, str, str, float | None]] = [
    ("add_v1_s", "first `git add` + `git commit`", "s", 1.5),
    ("add_v2_s", "`git add` + `git commit` of v2 (10% of tensors changed)", "s", None),
    ("checkout_s", "`git checkout HEAD~1 -- file` (rewrites v2 -> v1)", "s", 1.5),
    ("status_s", "`git status` after `touch file`", "s", None),
    ("filter_cpu_add_s", "filter CPU time (user+sys), first add", "s", None),
    ("filter_cpu_checkout_s", "filter CPU time (user+sys), checkout", "s", None),
    ("store_v1_bytes", "store after v1 (.git/lfs/objects)", "bytes", None),  # per-case target
    ("store_growth_bytes", "store growth for v2 (.git/lfs/objects)", "bytes", 0.12),
    ("git_objects_growth_bytes", ".git/objects growth for v1 + v2", "bytes", None),
    ("filter_rss_add_kb", "filter peak RSS, first add", "KiB", None),
    ("filter_rss_checkout_kb", "filter peak RSS, checkout", "KiB", None),
    ("git_rss_add_kb", "git peak RSS, first add", "KiB", None),
    ("git_rss_checkout_kb", "git peak RSS, checkout", "KiB", None),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b,c", help="comma-separated cases to run, from a,b,c (default: all)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="size multiplier for the files (default 1; 0.001 for a quick check)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each case N times in fresh repos, report medians (default 1)"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout, instead of the table)"
    )
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp directory goes (default /tmp)")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or not args.cases:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    if args.scale <= 0 or args.repeat < 1:
        parser.error("--scale must be > 0 and --repeat >= 1")
    return args


def _version(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "unavailable"


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def verdict(case: Case, key: str, theta: float, lfs: float, file_bytes: int) -> tuple[str, bool | None]:
    """(target text, passed) for one row; passed is None when the row has no target."""
    target = case.store_target if key == "store_v1_bytes" else dict((r[0], r[3]) for r in ROWS)[key]
    if target is not None:
        return f"<= {target:g}x", lfs > 0 and theta / lfs <= target
    if case.rss_target and key.startswith("filter_rss"):
        return f"theta < {RSS_FILE_SHARE:.0%} of file", theta * 1024 < RSS_FILE_SHARE * file_bytes
    return "", None


def case_rows(case: Case, checkpoint: data.Checkpoint, results: dict[str, runner.ToolResult]) -> list[dict[str, Any]]:
    rows = []
    for key, label, unit, _ in ROWS:
        theta, lfs = (_median(results[t].samples[key]) for t in ("theta", "lfs"))
        target, passed = verdict(case, key, theta, lfs, checkpoint.size)
        rows.append(
            {
                "key": key,
                "metric": label,
                "unit": unit,
                "theta": theta,
                "lfs": lfs,
                "ratio": theta / lfs if lfs else None,
                "target": target,
                "pass": passed,
                "theta_samples": results["theta"].samples[key],
                "lfs_samples": results["lfs"].samples[key],
            }
        )
    return rows


def run_case(case: Case, scale: float, repeat: int, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    folder = workdir / f"case-{case.key}"
    folder.mkdir()
    try:
        checkpoint = case.make(folder, scale)
        info: dict[str, Any] = {
            "case": case.key,
            "title": case.title,
            "file_bytes": checkpoint.size,
            "tensors": checkpoint.tensors,
            "changed_tensors": checkpoint.changed,
            "changed_bytes": checkpoint.changed_bytes,
        }
        try:
            results = runner.measure(("lfs", "theta"), checkpoint, case.filename, folder, env, repeat)
        except runner.BenchError as error:
            info["error"] = str(error)
            return info
        info["checkout_identical"] = {tool: results[tool].checkout_identical for tool in results}
        info["rows"] = case_rows(case, checkpoint, results)
        return info
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cell(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    size = value * 1024 if unit == "KiB" else value
    for name, step in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(size) >= step:
            return f"{size / step:.1f} {name}"
    return f"{size:.0f} B"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"git-theta vs git-lfs — scale {report['scale']:g}, each timing run {report['repeat']}x "
        f"({'single run' if report['repeat'] == 1 else 'median'}), warm page cache, {report['cpus']} CPU(s); "
        f"{report['git']}, {report['git_lfs']}",
        "",
        "| case | metric | git-theta | git-lfs | theta/lfs | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for case in report["cases"]:
        name = f"({case['case']}) {case['title']}, {_cell(case['file_bytes'], 'bytes')}"
        if "error" in case:
            lines.append(f"| {name} | error | | | | | FAIL |")
            notes.append(f"case {case['case']} failed: {case['error']}")
            continue
        for row in case["rows"]:
            ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}"
            result = {True: "PASS", False: "FAIL", None: ""}[row["pass"]]
            lines.append(
                f"| {name} | {row['metric']} | {_cell(row['theta'], row['unit'])} | {_cell(row['lfs'], row['unit'])} "
                f"| {ratio} | {row['target']} | {result} |"
            )
        notes.append(
            f"case {case['case']}: {case['tensors']} tensors, v2 changed {case['changed_tensors']} "
            f"({case['changed_bytes'] / case['file_bytes']:.1%} of the bytes); checked-out v1 identical to the "
            "original: " + ", ".join(f"{tool} {same}" for tool, same in case["checkout_identical"].items())
        )
    notes.append("Wall times depend on other load on the machine; the filter CPU time rows much less so.")
    return "\n".join(lines + [""] + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("git-theta") is None or shutil.which("git-lfs") is None:
        print("bench: needs the `git-theta` console script and `git-lfs` on PATH", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="theta-bench-", dir=args.tmpdir))
    try:
        env = runner.git_env(workdir)
        runner.warm_up(env, with_torch="a" in args.cases)
        report: dict[str, Any] = {
            "scale": args.scale,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "git": _version(["git", "--version"]),
            "git_lfs": _version(["git", "lfs", "version"]),
            "cases": [run_case(CASES[key], args.scale, args.repeat, workdir, env) for key in args.cases],
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    runner.emit(report, args.json, render(report))
    return 1 if any("error" in case for case in report["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
