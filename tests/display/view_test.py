"""The text view git line-diffs: one line per group, fixed widths, file-level data on a line of its own."""

from __future__ import annotations

from git_theta.display import view
from git_theta.metadata import Metadata, ParamEntry, StoredLink


def test_render_is_stable_on_1000_groups() -> None:
    link = (StoredLink("dense", "ab" * 32, 1234),)
    params = {f"layer.{i}.weight": ParamEntry("F32", (64, 64), f"{i:064x}", link) for i in range(1000)}
    text = view.render(Metadata("safetensors", {}, params))
    lines = text.splitlines()
    assert len(lines) == 1001
    assert lines[1] == "layer.0.weight" + " " * 35 + "F32   [64,64]       dense           1.2 KiB  000000000000"
    # Adding a group with a long name leaves every other group's line unchanged (fixed widths).
    params["x" * 80] = ParamEntry("BF16", (1,), "f" * 64, link)
    longer = view.render(Metadata("safetensors", {}, params)).splitlines()
    assert set(lines[1:]) <= set(longer)
