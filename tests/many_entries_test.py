"""Metadata of many entries: what a checkout costs must grow linearly with the entry count (issue 12).

50,000 entries, each naming its own object that no store holds: the missing-objects error once built a set of
every missing id per parameter, 2.5 * 10**9 set insertions here (minutes; hours at 1,000,000 entries). Linear, the
whole checkout takes about 2 s of CPU, so a bound of 30 s catches the quadratic without timing anything finely.
The 1,000,000-entry case itself is `benchmarks/tensor_count_bench.py --million`.
"""

from __future__ import annotations

import hashlib
import resource
import subprocess
from pathlib import Path

from conftest import git

from git_theta.metadata import Metadata, ParamEntry, StoredLink

ENTRIES = 50_000
CPU_BOUND_S = 30.0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def commit_metadata_of_missing_objects(repo: Path, entries: int) -> None:
    """Commit `entries`-entry metadata at model.safetensors whose every object (and header blob) is absent."""
    params = {
        f"p.{i:07d}": ParamEntry("F32", (1,), _sha(f"tensor {i}"), (StoredLink("dense", _sha(f"object {i}"), 99),))
        for i in range(entries)
    }
    meta = Metadata("safetensors", {"header": {"object": _sha("header"), "size": 99}}, params)
    (repo.parent / "metadata").write_bytes(meta.serialize())
    blob = git(repo, "hash-object", "-w", str(repo.parent / "metadata")).stdout.strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},model.safetensors")
    git(repo, "commit", "-q", "-m", "metadata naming missing objects")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_checkout_of_50k_entries_naming_missing_objects_fails_in_linear_time(repo: Path) -> None:
    commit_metadata_of_missing_objects(repo, ENTRIES)
    assert not (repo / "model.safetensors").exists()  # committed through the index only
    before = _children_cpu()
    result = subprocess.run(
        ["git", "checkout", "HEAD", "--", "model.safetensors"], cwd=repo, capture_output=True, text=True, timeout=300
    )
    cpu = _children_cpu() - before
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("git-theta: model.safetensors: ")]
    assert len(lines) == 1, result.stderr
    assert f"{ENTRIES + 1} object(s) missing from the store" in lines[0]
    assert "(parameter 'p.0000000')" in lines[0]  # the first parameter that lacks an object
    assert not (repo / "model.safetensors").exists()  # nothing half-written
    assert cpu < CPU_BOUND_S, f"checkout took {cpu:.1f} s of CPU for {ENTRIES} entries: something is not linear"
