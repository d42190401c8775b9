"""docs/updates.md: the worked LoRA example runs as written, and the example plugin works as a real plugin."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from update_helpers import chain, checkout_bytes, commit, save, staged, weights

from git_theta import objects
from git_theta.tensor import Tensor

DOC = Path(__file__).resolve().parents[2] / "docs" / "updates.md"


def blocks() -> dict[str, str]:
    """The code blocks marked `<!-- test: NAME -->` in the page, by name."""
    return dict(re.findall(r"<!-- test: (\S+) -->\n```\w+\n(.*?)```", DOC.read_text(), flags=re.S))


def test_worked_lora_example_runs(tmp_path: Path) -> None:
    code = blocks()
    (tmp_path / "make_example.py").write_text(code["make_example.py"])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code["session.sh"]], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "2"
    demo = tmp_path / "demo"
    assert chain(staged(demo, rev="HEAD"), "encoder.layer.0.attention.self.query.weight") == ["dense", "low-rank"]
    assert (demo / "model.safetensors").read_bytes() != (
        tmp_path / "merged.safetensors"
    ).read_bytes()  # back at the base


def _plugin(tmp_path: Path) -> Path:
    """The page's example plugin, made importable and registered through a real entry point (a dist-info dir)."""
    root = tmp_path / "plugin"
    info = root / "scale_update-0.1.dist-info"
    info.mkdir(parents=True)
    (root / "scale_update.py").write_text(blocks()["scale_update.py"])
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scale-update\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[git_theta.updates]\nscale = scale_update:ScaleUpdate\n")
    return root


def test_example_plugin_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_plugin(tmp_path)))
    import scale_update

    base = Tensor.from_numpy(np.random.default_rng(0).normal(0, 0.02, (8, 8)).astype(np.float32))
    new = Tensor.from_numpy(base.numpy() * np.float32(0.9))
    bundle = scale_update.ScaleUpdate().encode(new, base)
    assert bundle is not None
    rebuilt = scale_update.ScaleUpdate().apply(objects.decode(b"".join(objects.encode(bundle))), base)
    assert bytes(rebuilt.data) == bytes(new.data)
    assert scale_update.ScaleUpdate().encode(Tensor.from_numpy(base.numpy() + 1), base) is None
    sys.modules.pop("scale_update")


def test_example_plugin_is_picked_by_the_clean_filter(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(_plugin(tmp_path)))
    model = weights(np.random.default_rng(1), "F32", {"w": (64, 64)})
    save(repo / "model.safetensors", model)
    commit(repo, "v1")
    save(repo / "model.safetensors", {"w": model["w"] * np.float32(0.5)})
    commit(repo, "halved")
    params = staged(repo)
    assert chain(params, "w") == ["dense", "scale"] and params["w"]["stored"][1]["size"] < 400
    halved = (repo / "model.safetensors").read_bytes()
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD") == halved
