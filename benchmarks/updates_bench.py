"""Update types and automatic deltas against plain git-lfs: store growth per version, add and checkout time.

    python3 benchmarks/updates_bench.py               # ~40 MB fp32 model (a few minutes on 2 cores)
    python3 benchmarks/updates_bench.py --scale 0.25  # smaller and quicker

Every case commits a base model v1, then adds v2 (made by the case) and checks
it out again (file removed, `git checkout -- model.safetensors`). git-lfs
stores the whole v2 file; git-theta stores what the clean filter chose or the
side-loaded update. "growth" is the bytes added to .git/lfs/objects by v2.
The chain case commits 20 versions with 1% sparse changes and times checkout
of the last one against checkout of v1 (dense).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

MODEL = "model.safetensors"
NUMPY: dict[str, Any] = {"F32": np.float32, "BF16": ml_dtypes.bfloat16}


def shapes(scale: float) -> dict[str, tuple[int, ...]]:
    """A small transformer's groups: ~40 MB in fp32 at scale 1."""
    d = max(32, int(384 * scale**0.5) // 32 * 32)
    found: dict[str, tuple[int, ...]] = {"embed.weight": (4000, d)}
    for layer in range(5):
        for proj in ("q", "k", "v", "o"):
            found[f"layers.{layer}.attn.{proj}.weight"] = (d, d)
            found[f"layers.{layer}.attn.{proj}.bias"] = (d,)
        found[f"layers.{layer}.ff.up.weight"] = (4 * d, d)
        found[f"layers.{layer}.ff.down.weight"] = (d, 4 * d)
        found[f"layers.{layer}.norm.weight"] = (d,)
    return found


def save(path: Path, tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    """safetensors layout written by hand (safetensors.numpy cannot write bf16)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        dtype = next(k for k, v in NUMPY.items() if np.dtype(v) == tensors[name].dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


class Repo:
    def __init__(self, root: Path, tool: str, env: dict[str, str]) -> None:
        self.path, self.tool, self.env = root / tool, tool, env
        self.path.mkdir(parents=True)
        self.git("init", "-q")
        if tool == "theta":
            self.run(["git-theta", "install", "--local"])
            self.run(["git-theta", "track", "*.safetensors"])
        else:
            self.git("lfs", "install", "--local")
            self.git("lfs", "track", "*.safetensors")
        self.git("add", ".gitattributes")
        self.git("commit", "-q", "-m", "track")

    def run(self, argv: list[str]) -> float:
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=self.path, env=self.env, capture_output=True)
        if result.returncode:
            raise SystemExit(f"{self.tool}: {' '.join(argv)} failed:\n{result.stderr.decode()[-2000:]}")
        return time.perf_counter() - start

    def git(self, *args: str) -> float:
        return self.run(["git", *args])

    def store_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.path / ".git" / "lfs" / "objects").rglob("*") if f.is_file())

    def commit(self, message: str, add: list[str] | None = None) -> float:
        seconds = self.run(add or ["git", "add", MODEL])
        self.git("commit", "-q", "-m", message)
        return seconds

    def checkout(self, rev: str = "HEAD") -> float:
        (self.path / MODEL).unlink()
        return self.git("checkout", rev, "--", MODEL)


def touch(
    rng: np.random.Generator, model: dict[str, np.ndarray[Any, Any]], share: float
) -> dict[str, np.ndarray[Any, Any]]:
    out = {}
    for name, array in model.items():
        flat = array.copy().reshape(-1)
        picked = rng.choice(flat.size, max(1, int(flat.size * share)), replace=False)
        flat[picked] = rng.normal(0, 0.02, len(picked)).astype(np.float32).astype(flat.dtype)
        out[name] = flat.reshape(array.shape)
    return out


def lora_file(rng: np.random.Generator, model: dict[str, np.ndarray[Any, Any]], path: Path, rank: int = 8) -> list[str]:
    found = {}
    for name, array in model.items():
        if array.ndim == 2 and name != "embed.weight":
            module = name.removesuffix(".weight")
            found[f"base_model.model.{module}.lora_A.weight"] = rng.normal(0, 0.02, (rank, array.shape[1])).astype(
                np.float32
            )
            found[f"base_model.model.{module}.lora_B.weight"] = rng.normal(0, 0.02, (array.shape[0], rank)).astype(
                np.float32
            )
    save(path, found)
    return ["git-theta", "add", MODEL, "--update-type", "low-rank", "--update-data", str(path), "--lora-alpha", "16"]


def ia3_file(rng: np.random.Generator, model: dict[str, np.ndarray[Any, Any]], path: Path) -> list[str]:
    found = {}
    for name, array in model.items():
        if array.ndim == 2 and name != "embed.weight":
            found[f"base_model.model.{name.removesuffix('.weight')}.ia3_l"] = rng.uniform(
                0.9, 1.1, (array.shape[0], 1)
            ).astype(np.float32)
    save(path, found)
    return ["git-theta", "add", MODEL, "--update-type", "ia3", "--update-data", str(path)]


def sparse_file(rng: np.random.Generator, model: dict[str, np.ndarray[Any, Any]], path: Path) -> list[str]:
    found: dict[str, np.ndarray[Any, Any]] = {}
    for name, array in model.items():
        picked = np.sort(rng.choice(array.size, max(1, array.size // 100), replace=False)).astype(np.int64)
        found[f"{name}.sparse_indices"] = picked
        found[f"{name}.sparse_values"] = rng.normal(0, 0.02, len(picked)).astype(array.dtype)
    header, blobs, offset = {}, [], 0  # int64 indices need their own dtype name
    for key in sorted(found):
        raw = found[key].tobytes()
        header[key] = {
            "dtype": "I64" if found[key].dtype == np.int64 else "F32",
            "shape": [len(found[key])],
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))
    return ["git-theta", "add", MODEL, "--update-type", "sparse", "--update-data", str(path)]


def run_case(
    root: Path,
    env: dict[str, str],
    model: dict[str, np.ndarray[Any, Any]],
    make_v2: Callable[[Path], list[str] | dict[str, np.ndarray[Any, Any]]],
) -> dict[str, float]:
    """v1 then v2 in both tools; v2 is new tensors (plain add) or a side-load command (theta; lfs adds its result)."""
    theta, lfs = Repo(root, "theta", env), Repo(root, "lfs", env)
    for repo in (theta, lfs):
        save(repo.path / MODEL, model)
        repo.commit("v1")
    made = make_v2(root)
    before = {repo.tool: repo.store_bytes() for repo in (theta, lfs)}
    if isinstance(made, dict):
        save(theta.path / MODEL, made)
        add_theta = theta.commit("v2")
    else:
        add_theta = theta.commit("v2", made)
    shutil.copy(theta.path / MODEL, lfs.path / MODEL)
    add_lfs = lfs.commit("v2")
    expected = (theta.path / MODEL).read_bytes()
    result = {
        "size": len(expected),
        "theta_growth": theta.store_bytes() - before["theta"],
        "lfs_growth": lfs.store_bytes() - before["lfs"],
        "theta_add": add_theta,
        "lfs_add": add_lfs,
        "theta_checkout": theta.checkout(),
        "lfs_checkout": lfs.checkout(),
    }
    assert (theta.path / MODEL).read_bytes() == expected == (lfs.path / MODEL).read_bytes(), "checkout is not exact"
    return result


def run_chain(
    root: Path,
    env: dict[str, str],
    model: dict[str, np.ndarray[Any, Any]],
    rng: np.random.Generator,
    versions: int = 20,
) -> dict[str, float]:
    theta = Repo(root, "theta", env)
    files = []
    for step in range(versions):
        if step:
            model = touch(rng, model, 0.01)
        save(theta.path / MODEL, model)
        theta.commit(f"v{step}")
        files.append((theta.path / MODEL).read_bytes())
    depths = []
    for back in range(versions):
        meta = subprocess.run(
            ["git", "cat-file", "blob", f"HEAD~{back}:{MODEL}"], cwd=theta.path, env=env, capture_output=True, text=True
        ).stdout
        depths.append(max(len(entry["stored"]) for entry in json.loads(meta)["params"].values()))
    deepest = depths.index(max(depths))
    dense = min(theta.checkout(f"HEAD~{versions - 1}") for _ in range(3))
    assert (theta.path / MODEL).read_bytes() == files[0]
    deep = min(theta.checkout(f"HEAD~{deepest}") for _ in range(3))
    assert (theta.path / MODEL).read_bytes() == files[versions - 1 - deepest]
    last = min(theta.checkout("HEAD") for _ in range(3))
    assert (theta.path / MODEL).read_bytes() == files[-1]
    return {
        "dense_checkout": dense,
        "chain_checkout": deep,
        "depth": max(depths),
        "last_checkout": last,
        "last_depth": depths[0],
    }


def env_for(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    home = workdir / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="model size multiplier (1.0: ~40 MB fp32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chain-only", action="store_true", help="run only the 20-version chain checkout case")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    f32 = {n: rng.normal(0, 0.02, s).astype(np.float32) for n, s in shapes(args.scale).items()}
    bf16 = {n: v.astype(ml_dtypes.bfloat16) for n, v in f32.items()}
    cases: list[tuple[str, dict[str, np.ndarray[Any, Any]], Callable[[Path], Any]]] = [
        ("auto: 1% of entries changed (fp32)", f32, lambda _: touch(rng, f32, 0.01)),
        (
            "auto: N(0,1e-5) noise on every weight (bf16)",
            bf16,
            lambda _: {
                n: (v.astype(np.float32) + rng.normal(0, 1e-5, v.shape)).astype(v.dtype) for n, v in bf16.items()
            },
        ),
        (
            "auto: every weight replaced (fp32)",
            f32,
            lambda _: {n: rng.normal(0, 0.02, v.shape).astype(np.float32) for n, v in f32.items()},
        ),
        ("side-loaded sparse 1% (fp32)", f32, lambda root: sparse_file(rng, f32, root / "sparse.safetensors")),
        (
            "side-loaded LoRA r=8, all 2-D weights (fp32)",
            f32,
            lambda root: lora_file(rng, f32, root / "lora.safetensors"),
        ),
        ("side-loaded IA3, all 2-D weights (fp32)", f32, lambda root: ia3_file(rng, f32, root / "ia3.safetensors")),
    ]
    print(
        f"model: {len(f32)} groups, {sum(v.nbytes for v in f32.values()) / 1e6:.1f} MB fp32 / "
        f"{sum(v.nbytes for v in bf16.values()) / 1e6:.1f} MB bf16\n"
    )
    print(
        "| case | theta growth | % of model | lfs growth | theta/lfs | add theta / lfs (s) | checkout theta / lfs (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for title, model, make in [] if args.chain_only else cases:
        with tempfile.TemporaryDirectory(prefix="theta-updates-bench-") as tmp:
            r = run_case(Path(tmp), env_for(Path(tmp)), model, make)
        print(
            f"| {title} | {r['theta_growth'] / 1e6:.2f} MB | {100 * r['theta_growth'] / r['size']:.2f}% | "
            f"{r['lfs_growth'] / 1e6:.2f} MB | {r['theta_growth'] / r['lfs_growth']:.3f} | "
            f"{r['theta_add']:.2f} / {r['lfs_add']:.2f} | "
            f"{r['theta_checkout']:.2f} / {r['lfs_checkout']:.2f} |",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="theta-updates-bench-") as tmp:
        c = run_chain(Path(tmp), env_for(Path(tmp)), f32, rng)
    print(
        f"\nchain: 20 versions of 1% sparse changes. checkout of v1 (dense): {c['dense_checkout']:.2f} s; "
        f"of the deepest version (chains of {c['depth']} links): {c['chain_checkout']:.2f} s = "
        f"{c['chain_checkout'] / c['dense_checkout']:.2f}x; "
        f"of v20 ({c['last_depth']} links): {c['last_checkout']:.2f} s = "
        f"{c['last_checkout'] / c['dense_checkout']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
