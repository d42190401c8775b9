"""The 1,000,000-line metadata case of issue 12: checkout, clone, fsck and `git diff` of git-theta alone.

Cleaning a 1,000,000-tensor file costs ~0.6-1 ms per tensor today, so the metadata is written directly: a real
`git add` of a 2-tensor file gives the entries of 0.0 and 1.0 (1-element F32), and the N-entry metadata of v1
(all 0.0) and v2 (every 10th 1.0) reuses them under N names, with a safetensors header blob stored as clean
would store it. Only two tensor objects exist, so the rows measure the per-entry cost of git-theta, not the
store's per-object cost.
"""

from __future__ import annotations

import filecmp
import json
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import runner

from git_theta import metadata, objects
from git_theta.metadata import Metadata
from git_theta.repo import Repo

ENTRIES = 1_000_000
LIMIT_S = 60.0
FILENAME = "model.safetensors"


def safetensors_bytes(values: np.ndarray[Any, Any]) -> tuple[bytes, bytes]:
    """(length + header, data) of a safetensors file of 1-element F32 tensors p.0000000, p.0000001, ..."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for i in range(len(values)):
        header[f"p.{i:07d}"] = {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, values.astype(np.float32).tobytes()


def _output(argv: list[str], repo: runner.ToolRepo) -> bytes:
    result = subprocess.run(argv, cwd=repo.path, env=repo.env, capture_output=True)
    if result.returncode != 0:
        raise runner.BenchError(f"`{' '.join(argv)}` failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result.stdout


def build(repo: runner.ToolRepo, entries: int, folder: Path) -> list[Path]:
    """Commit v1 and v2 of `entries` entries to `repo`; the two checkpoint files they stand for."""
    seed = repo.path / "seed.safetensors"
    head, body = safetensors_bytes(np.array([0.0, 1.0]))
    seed.write_bytes(head + body)
    repo.git("add", seed.name)
    staged = _output(["git", "show", f":{seed.name}"], repo)
    zero, one = (metadata.parse(staged).params[f"p.{i:07d}"] for i in (0, 1))
    repo.git("rm", "-q", "--cached", seed.name)
    seed.unlink()
    store = Repo.discover(repo.path).store
    versions = []
    for number, values in enumerate((np.zeros(entries), np.where(np.arange(entries) % 10 == 0, 1.0, 0.0)), 1):
        head, body = safetensors_bytes(values)
        versions.append(folder / f"v{number}.safetensors")
        versions[-1].write_bytes(head + body)
        oid, size = store.put(objects.encode_blob(head))
        params = {f"p.{i:07d}": one if value else zero for i, value in enumerate(values)}
        text = Metadata("safetensors", {"header": {"object": oid, "size": size}}, params).serialize()
        (folder / "metadata").write_bytes(text)
        blob = _output(["git", "hash-object", "-w", str(folder / "metadata")], repo).decode().strip()
        repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{FILENAME}")
        repo.git("commit", "-q", "-m", f"v{number}")
    (folder / "metadata").unlink()
    return versions


def measure(entries: int, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """Wall and CPU seconds and peak RSS of each step on `entries`-entry metadata, or {"error": ...}.

    The RSS is wait4's for the git command: the largest of it and the processes it reaped (filters, textconv),
    never below this Python process's RSS when it forked git (~50 MiB), which exec does not reset."""
    folder.mkdir()
    repo = runner.ToolRepo("theta", folder / "repo", env)
    found: dict[str, Any] = {"entries": entries, "limit_s": LIMIT_S, "rows": []}

    def row(label: str, sample: runner.Sample, same: bool | None = None) -> None:
        found["rows"].append(
            {
                "metric": label,
                "wall": sample.seconds,
                "cpu": sample.cpu_seconds,
                "rss_kb": sample.tree_rss_kb,
                "identical": same,
            }
        )

    try:
        repo.setup()
        start = time.perf_counter()
        v1, _ = build(repo, entries, folder)
        found["build_s"] = time.perf_counter() - start
        found["metadata_bytes"] = int(_output(["git", "cat-file", "-s", f"HEAD:{FILENAME}"], repo))
        row("`git diff HEAD~1 HEAD`", repo.git("diff", "HEAD~1", "HEAD"))
        row(
            "`git checkout HEAD~1 -- file`",
            repo.git("checkout", "-q", "HEAD~1", "--", FILENAME),
            filecmp.cmp(repo.path / FILENAME, v1, shallow=False),
        )
        row("`git theta fsck`", runner.run([runner.theta_executable(), "fsck"], repo.path, env))
        clone = folder / "clone"
        runner.run(["git", "clone", "-q", "--no-checkout", str(repo.path), str(clone)], folder, env)
        runner.run([runner.theta_executable(), "install", "--local"], clone, env)
        row(
            "checkout of a fresh clone (objects fetched from the origin)",
            runner.run(["git", "checkout", "-q", "HEAD", "--", "."], clone, env),
            filecmp.cmp(clone / FILENAME, folder / "v2.safetensors", shallow=False),
        )
    except runner.BenchError as error:
        found["error"] = str(error)
    return found


def render(report: dict[str, Any]) -> list[str]:
    """Markdown lines: one row per step, against the absolute limit."""
    title = f"{report['entries']:,}-line metadata (git-theta only"
    if "metadata_bytes" in report:
        title += f", {report['metadata_bytes'] / (1 << 20):.0f} MiB of metadata, built in {report['build_s']:.0f} s"
    lines = [title + ")", "", "| metric | wall | CPU | peak RSS | target | result |", "|---|---|---|---|---|---|"]
    for step in report["rows"]:
        passed = step["wall"] <= report["limit_s"] and step["cpu"] <= report["limit_s"] and step["identical"] != False  # noqa: E712
        note = "" if step["identical"] is None else (", bytes identical" if step["identical"] else ", bytes DIFFER")
        lines.append(
            f"| {step['metric']} | {step['wall']:.1f} s | {step['cpu']:.1f} s | {step['rss_kb'] / 1024:.0f} MiB "
            f"| <= {report['limit_s']:g} s{note} | "
            f"{'PASS' if passed else 'FAIL'} |"
        )
    if "error" in report:
        lines.append("| error | | | | | FAIL |")
        lines += ["", f"million: {report['error']}"]
    return lines
