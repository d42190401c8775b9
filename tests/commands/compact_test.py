"""git theta compact: chains of the staged version become single dense objects; content is unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import git, theta
from update_helpers import checkout_bytes, commit, save, staged, weights


def test_compact_rewrites_chains_as_dense_and_checks_out_the_same(repo: Path) -> None:
    rng = np.random.default_rng(0)
    # w is big enough for the chain's read budget to allow two updates (update_engine/auto.py)
    model = weights(rng, "F32", {"w": (512, 256), "v": (64, 64)})
    for step in range(3):
        model["w"].reshape(-1)[step * 10 : step * 10 + 5] += 1
        save(repo / "model.safetensors", model)
        commit(repo, f"v{step}")
    latest = (repo / "model.safetensors").read_bytes()
    before = staged(repo)
    assert len(before["w"]["stored"]) == 3 and len(before["v"]["stored"]) == 1
    out = theta(repo, "compact").stdout
    assert out == "model.safetensors: 1 chain(s) rewritten as dense\n"
    after = staged(repo)
    assert [link["update"] for link in after["w"]["stored"]] == ["dense"] and after["v"] == before["v"]
    assert after["w"]["hash"] == before["w"]["hash"]
    assert git(repo, "diff", "--name-only").stdout == ""  # the working tree still matches the index
    git(repo, "commit", "-q", "-m", "compacted")
    (repo / "model.safetensors").unlink()
    assert checkout_bytes(repo, "HEAD") == latest
    assert theta(repo, "compact", "model.safetensors").stdout == "model.safetensors: nothing to compact\n"
    assert git(repo, "status", "--porcelain").stdout == ""
