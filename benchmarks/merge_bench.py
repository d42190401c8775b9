"""TIES merge of two branches of a ~400 MB fp32 Llama-shaped model, every tensor in conflict: time and peak RSS.

    python3 benchmarks/merge_bench.py               # ~410 MB: a LlamaForCausalLM of 7 layers, random weights
    python3 benchmarks/merge_bench.py --scale 0.1   # ~40 MB, quick
    python3 benchmarks/merge_bench.py --mergekit /tmp/mkvenv/bin/python   # also time mergekit on the same merges

The model has a real architecture's shape and names, as transformers saves a LlamaForCausalLM
(`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ..., `lm_head.weight`; hidden 1024,
MLP 2816, vocab 6144, 66 tensors, random N(0, 0.02) weights), so mergekit can merge the same files. The base
model is committed on main; branch `a` adds N(0, 0.002) noise to every tensor, branch `b` other N(0, 0.002)
noise, so every parameter changed differently on both sides. Measured:
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

With `--mergekit PYTHON` (the python of a separate venv where mergekit is installed; it is never a
dependency of git-theta) the same two 3-way merges also run through `mergekit-yaml` (`python -m
mergekit.scripts.run_yaml`, CPU, dtype float32, ties density 0.2 weight 1, model_stock) on the same four
model directories (the same safetensors bytes plus a config.json), taking turns with git-theta's: git-theta
ties, mergekit ties, git-theta model-stock, mergekit model-stock, each measured the same way (wall, CPU of
the process tree, peak RSS via maxrss.py). mergekit's rules differ from ours in documented ways (⌊k·n⌋ kept,
a zero sum elects +, float32 arithmetic), so its result is compared with ours only as the largest
difference on the checked tensor. Without the option the mergekit runs are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
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


Spec = tuple[str, tuple[int, ...]]


def llama(scale: float) -> tuple[list[Spec], dict[str, Any]]:
    """The tensors (names and shapes as transformers saves them) and config.json of a LlamaForCausalLM of
    about 410 MB × scale in fp32: 7 layers; hidden, MLP and vocabulary sizes scaled by √scale."""
    hidden = max(64, round(1024 * math.sqrt(scale) / 64) * 64)
    mlp, vocab, layers = round(hidden * 2.75 / 64) * 64, round(6 * hidden / 64) * 64, 7
    specs: list[Spec] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        prefix = f"model.layers.{i}"
        specs += [(f"{prefix}.self_attn.{p}_proj.weight", (hidden, hidden)) for p in "qkvo"]
        specs += [(f"{prefix}.mlp.{p}_proj.weight", (mlp, hidden)) for p in ("gate", "up")]
        specs += [(f"{prefix}.mlp.down_proj.weight", (hidden, mlp))]
        specs += [(f"{prefix}.{n}_layernorm.weight", (hidden,)) for n in ("input", "post_attention")]
    specs += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 64,
        "num_key_value_heads": hidden // 64,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    return specs, config


def branch_value(index: int, shape: tuple[int, ...], branch: int) -> np.ndarray[Any, Any]:
    base = data.weights(index, shape, np.float32)
    rng = np.random.default_rng([data.SEED, index, 10 + branch])
    return base + rng.standard_normal(math.prod(shape), dtype=np.float32).reshape(shape) * np.float32(NOISE)


def write_model(path: Path, specs: list[Spec], branch: int | None) -> None:
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
    repo: Path, tmp: Path, theta: str, specs: list[Spec], strategy: str, arguments: list[str]
) -> dict[str, Any]:
    """`git theta merge a b c` with `strategy`, timed and measured; one tensor checked against NumPy."""
    if (repo / ".git" / "MERGE_HEAD").exists():  # the previous 3-way merge, left for a `git commit`
        run(repo, "git", "merge", "--abort")
    # HEAD on one of the merged fine-tunes: `git theta merge` refuses to drop a current branch's own changes
    run(repo, "git", "checkout", "-q", "-f", "--detach", "fine-tune-a")
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


# git-theta strategy -> mergekit merge_method and its per-model parameters (ties: mergekit's density is our k)
MERGEKIT_METHODS: dict[str, tuple[str, dict[str, float]]] = {
    "ties": ("ties", {"density": 0.2, "weight": 1.0}),
    "model-stock": ("model_stock", {}),
}


def mergekit_models(tmp: Path, specs: list[Spec], config: dict[str, Any]) -> dict[str, Path]:
    """The four model directories mergekit reads: the same safetensors bytes as the commits, plus config.json."""
    folders = {}
    for label, branch in (("base", None), ("a", 0), ("b", 1), ("c", 2)):
        folder = tmp / "mergekit" / label
        folder.mkdir(parents=True)
        write_model(folder / MODEL, specs, branch)
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        folders[label] = folder
    return folders


def mergekit_three_way(
    python: str, tmp: Path, folders: dict[str, Path], strategy: str, name: str, ours: np.ndarray[Any, Any]
) -> dict[str, Any]:
    """The same 3-way merge through mergekit-yaml, measured as git-theta's is; `ours` is git-theta's `name`."""
    method, parameters = MERGEKIT_METHODS[strategy]
    models = [{"model": str(folders[x]), **({"parameters": parameters} if parameters else {})} for x in "abc"]
    recipe = tmp / f"mergekit-{method}.yml"
    recipe.write_text(  # JSON is YAML
        json.dumps({"merge_method": method, "base_model": str(folders["base"]), "models": models, "dtype": "float32"})
    )
    out = tmp / f"mergekit-out-{method}"
    rss_file = tmp / f"rss-mergekit-{method}.txt"
    command = [python, "-m", "mergekit.scripts.run_yaml", str(recipe), str(out), "--no-copy-tokenizer"]
    started = time.perf_counter()
    result = subprocess.run(
        measured(rss_file, method, command), capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"merge_bench: mergekit {method} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    from safetensors import safe_open

    found = None
    for path in sorted(out.glob("*.safetensors")):
        with safe_open(str(path), "np") as merged:
            if name in merged.keys():
                found = merged.get_tensor(name)
    if found is None or found.shape != ours.shape:
        raise SystemExit(f"merge_bench: mergekit's {method} output has no tensor {name} of shape {ours.shape}")
    shutil.rmtree(out)
    peak_kib, cpu = read_rss(rss_file)[method]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_kib / 1024,
        "max_abs_difference_from_git_theta": float(np.max(np.abs(found.astype(np.float64) - ours))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="model size as a fraction of 400 MB (default 1)")
    parser.add_argument("--workdir", type=Path, help="where to make the repository (default: a temp dir)")
    parser.add_argument(
        "--mergekit",
        metavar="PYTHON",
        help="python of a separate venv with mergekit installed: time the same 3-way merges with mergekit too",
    )
    args = parser.parse_args(argv)
    if args.mergekit is None:
        print(
            "merge_bench: mergekit runs skipped (give --mergekit PYTHON, a venv's python with mergekit)",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="merge-bench-", dir=args.workdir) as tmp:
        report = bench(Path(tmp), args.scale, args.mergekit)
    print(json.dumps(report, indent=1))
    print(
        f"\n| TIES merge, {report['tensors']} tensors, {report['model_mb']:.0f} MB fp32, all in conflict | driver "
        f"{report['driver_seconds']:.1f} s, peak RSS {report['driver_peak_rss_mb']:.0f} MB | whole `git merge` "
        f"{report['git_merge_seconds']:.1f} s "
        f"(driver RSS {report['git_merge_driver_rss_mb']:.0f} MB, filter RSS {report['git_merge_filter_rss_mb']:.0f} "
        "MB) |"
    )
    print("\n| 3-way merge of a b c | tool | wall | CPU | peak RSS |\n|---|---|---|---|---|")
    for strategy in ("ties", "model-stock"):
        rows = [("`git theta merge`", report["three_way"][strategy])]
        if strategy in report.get("mergekit", {}):
            rows.append((f"mergekit {report['mergekit_version']}", report["mergekit"][strategy]))
        for tool, row in rows:
            print(
                f"| {strategy} | {tool} | {row['seconds']:.1f} s | {row['cpu_seconds']:.1f} s | "
                f"{row['peak_rss_mb']:.0f} MB |"
            )
    return 0


def bench(tmp: Path, scale: float, mergekit: str | None = None) -> dict[str, Any]:
    repo = tmp / "repo"
    repo.mkdir()
    specs, config = llama(scale)
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
    folders = mergekit_models(tmp, specs, config) if mergekit else {}
    three: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for strategy, arguments in (("ties", ["--arg", "k=0.2"]), ("model-stock", [])):  # the two tools take turns
        three[strategy] = three_way(repo, tmp, theta, specs, strategy, arguments)
        if mergekit:
            name = specs[len(specs) // 3][0]
            from safetensors import safe_open

            with safe_open(str(repo / MODEL), "np") as merged:
                ours = merged.get_tensor(name).astype(np.float64)
            other[strategy] = mergekit_three_way(mergekit, tmp, folders, strategy, name, ours)
    versions = (
        {"mergekit_version": run(repo, mergekit, "-c", "import importlib.metadata as m; print(m.version('mergekit'))")}
        if mergekit
        else {}
    )
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
        **({"mergekit": other, **{k: v.strip() for k, v in versions.items()}} if mergekit else {}),
    }


if __name__ == "__main__":
    sys.exit(main())
