"""mergekit as an oracle: git-theta's strategies against mergekit's kernels on the same real MiniLM tensors.

    /work/venv-mergekit/bin/python benchmarks/mergekit_oracle.py     # mergekit in its own venv, never a dependency

Three real MiniLM tensors (a 384×384 weight, a 1536×384 weight, a 384 bias) are the base; two or three
"fine-tunes" add N(0, 0.01) noise. Every deterministic method runs through git-theta's strategy (float64
NumPy) and through mergekit's kernel on float64 torch tensors, with arguments where the two rules coincide
(shares whose count is an integer, no exact zero sums); the table shows the largest absolute difference.
DARE and DELLA draw random masks (mergekit from torch's global RNG), so they are not compared bit for bit.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from mergekit.merge_methods import registry
from mergekit.merge_methods.base import PerInputValues, TensorGroup
from safetensors.numpy import load_file

from git_theta import plugins

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import data

NAMES = (
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.intermediate.dense.weight",
    "encoder.layer.0.output.dense.bias",
)

# git-theta strategy, its arguments, mergekit method, mergekit parameters (per-model ones keyed by version)
CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("task-arithmetic", {"weight": (0.5, 2.0)}, "task_arithmetic", {"weight": (0.5, 2.0)}),
    ("ties", {"k": 0.25, "weight": (1.0, 1.0)}, "ties", {"density": (0.25, 0.25), "weight": (1.0, 1.0)}),
    ("ties", {"k": (0.25, 0.5), "weight": (0.7, 0.3)}, "ties", {"density": (0.25, 0.5), "weight": (0.7, 0.3)}),
    (
        "breadcrumbs",
        {"density": 0.5, "gamma": 0.0625},
        "breadcrumbs",
        {"density": (0.5, 0.5), "gamma": (0.0625, 0.0625), "weight": (1.0, 1.0)},
    ),
    (
        "breadcrumbs-ties",
        {"density": 0.5, "gamma": 0.0625},
        "breadcrumbs_ties",
        {"density": (0.5, 0.5), "gamma": (0.0625, 0.0625), "weight": (1.0, 1.0)},
    ),
    ("model-stock", {}, "model_stock", {}),
    ("model-stock", {"filter_wise": True}, "model_stock", {"filter_wise": True}),
    ("sce", {"select_topk": 0.25}, "sce", {"select_topk": 0.25}),
    ("nearswap", {"t": 0.005}, "nearswap", {"t": 0.005}),
    ("karcher", {}, "karcher", {}),
    ("multislerp", {"weight": (1.0, 2.0, 0.5)}, "multislerp", {"weight": (1.0, 2.0, 0.5)}),
    (
        "nuslerp",
        {"weight": (1.0, 3.0), "nuslerp_flatten": False},
        "nuslerp",
        {"weight": (1.0, 3.0), "nuslerp_flatten": False},
    ),
    ("nuslerp", {"weight": (1.0, 3.0), "use_base": True}, "nuslerp", {"weight": (1.0, 3.0)}),
]
# mergekit's methods that take the base as an input (the others merge the models alone)
WITH_BASE = {"task_arithmetic", "ties", "breadcrumbs", "breadcrumbs_ties", "model_stock", "sce", "nearswap"}


def ours(
    strategy: str, arguments: dict[str, Any], base: np.ndarray, versions: list[np.ndarray], name: str
) -> np.ndarray:
    cls = plugins.strategy(strategy)
    parsed = {**cls.parse_arguments({k: v for k, v in arguments.items() if not isinstance(v, tuple)}), **arguments}
    if strategy == "nearswap":  # mergekit's base model is ours: our first version
        return cls().merge([base, versions[0]], None, parsed, name)
    return cls().merge(versions, base, parsed, name)


def theirs(
    method: str, parameters: dict[str, Any], base: np.ndarray, versions: list[np.ndarray], use_base: bool
) -> np.ndarray:
    tensors = [torch.from_numpy(v.copy()) for v in versions]
    if method == "nearswap":
        tensors = tensors[:1]
    with_base = method in WITH_BASE or use_base
    group = TensorGroup.from_tensors(
        [torch.from_numpy(base.copy()), *tensors] if with_base else tensors, base_index=0 if with_base else None
    )
    first = 1 if with_base else 0
    given = {
        key: PerInputValues([(first + i, x) for i, x in enumerate(value)]) if isinstance(value, tuple) else value
        for key, value in parameters.items()
    }
    merger = registry.get(method)
    ids = [entry.id for entry in group.entries if not entry.is_base]
    for spec in merger.spec.parameters:  # merge_group takes every parameter: fill mergekit's own defaults
        default = getattr(spec, "default", None)
        if spec.name not in given and default is not None and not isinstance(default, type):
            given[spec.name] = (
                PerInputValues([(i, default) for i in ids])
                if "BASE" in str(spec.scope) or "INPUT" in str(spec.scope)
                else default
            )
    return merger.merge_group(group, **given).numpy()


def main() -> int:
    tensors = load_file(str(data.minilm_path()))
    rng = np.random.default_rng(1)
    print("| git-theta strategy (arguments) | mergekit method | tensors | largest abs difference | largest |value| |")
    print("|---|---|---|---|---|")
    for strategy, arguments, method, parameters in CASES:
        worst, scale = 0.0, 0.0
        for name in NAMES:
            base = tensors[name].astype(np.float64)
            count = 3 if strategy in ("model-stock", "karcher", "multislerp") else 2
            versions = [base + rng.normal(scale=0.01, size=base.shape) for _ in range(count)]
            a = ours(strategy, arguments, base, versions, name)
            b = theirs(method, parameters, base, versions, bool(arguments.get("use_base")))
            worst = max(worst, float(np.max(np.abs(a - b))))
            scale = max(scale, float(np.max(np.abs(a))))
        shown = ", ".join(f"{k}={v}" for k, v in arguments.items())
        print(f"| `{strategy}` ({shown}) | `{method}` | {len(NAMES)} | {worst:.3g} | {scale:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
