"""The benchmark's checkpoints: valid files, reproducible, and v2 differs in exactly the tensors it says."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import data  # noqa: E402


def test_pick_changed_takes_a_tenth_evenly_and_skips_huge_tensors() -> None:
    assert data.pick_changed([10] * 100, [True] * 100) == [5 + 10 * k for k in range(10)]
    sizes = [1000] + [10] * 19  # the first tensor holds most bytes: never picked
    assert data.pick_changed(sizes, [True] * 20) == [5, 15]
    assert data.pick_changed([10] * 3, [False, True, False]) == [1]


def test_bf16_safetensors_v2_changes_only_the_chosen_tensors(tmp_path: Path) -> None:
    first = data.make_safetensors_bf16(tmp_path, 0.0005)  # 200 tensors, about 500 KB
    again = tmp_path / "again"
    again.mkdir()
    assert data.make_safetensors_bf16(again, 0.0005).v1.read_bytes() == first.v1.read_bytes()  # fixed seed

    v1, v2 = load_file(str(first.v1)), load_file(str(first.v2))
    assert list(v1) == list(v2) and len(v1) == first.tensors == 200
    assert all(str(t.dtype) == "bfloat16" for t in v1.values())
    changed = [name for name in v1 if v1[name].tobytes() != v2[name].tobytes()]
    assert len(changed) == first.changed == 20
    assert sum(v1[name].nbytes for name in changed) == first.changed_bytes
    values = np.concatenate([t.astype(np.float32).ravel() for t in v1.values()])
    assert abs(float(values.std()) - data.SIGMA) < 0.001


def test_minilm_subset_keeps_real_tensors(tmp_path: Path) -> None:
    checkpoint = data.make_minilm(tmp_path, 0.001)
    subset, full = load_file(str(checkpoint.v1)), load_file(str(data.minilm_path()))
    assert len(subset) >= 10
    assert all(subset[name].tobytes() == full[name].tobytes() for name in subset)
    assert checkpoint.changed >= 1
