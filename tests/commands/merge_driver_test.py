"""End to end: `git merge` of two branches of real models through the merge driver."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from conftest import git, theta
from safetensors.numpy import load_file, save_file
from safetensors.torch import load_file as torch_load
from safetensors.torch import save_file as torch_save

from git_theta import metadata

MODEL = "model.safetensors"
BIAS = "encoder.layer.1.output.dense.bias"
WEIGHT = "encoder.layer.1.output.dense.weight"
OURS_ONLY = "encoder.layer.0.attention.self.query.weight"
THEIRS_ONLY = "encoder.layer.2.attention.self.key.weight"
ADDED = "extra.adapter.weight"


def edit(repo: Path, message: str, change: Callable[[dict[str, np.ndarray]], None]) -> dict[str, np.ndarray]:
    tensors = load_file(repo / MODEL)
    change(tensors)
    save_file(tensors, repo / MODEL, metadata={"format": "pt"})
    git(repo, "commit", "-q", "-am", message)
    return tensors


def merge_no_tty(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git merge` in a new session: no controlling terminal, as in CI."""
    return subprocess.run(
        ["git", "merge", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def minilm_branches(repo: Path, minilm: Path) -> tuple[dict[str, np.ndarray], ...]:
    """main and `other` both changed BIAS and WEIGHT; each changed one more tensor; other added one."""
    shutil.copy(minilm, repo / MODEL)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "base")
    base = load_file(repo / MODEL)
    git(repo, "checkout", "-q", "-b", "other")

    def theirs(t: dict[str, np.ndarray]) -> None:
        t[BIAS] = t[BIAS] + np.float32(0.5)
        t[WEIGHT] = t[WEIGHT] * np.float32(1.5)
        t[THEIRS_ONLY] = t[THEIRS_ONLY] - np.float32(0.25)
        t[ADDED] = np.arange(6, dtype=np.float32).reshape(2, 3)

    their_model = edit(repo, "theirs", theirs)
    git(repo, "checkout", "-q", "main")

    def ours(t: dict[str, np.ndarray]) -> None:
        t[BIAS] = t[BIAS] - np.float32(0.1)
        t[WEIGHT] = t[WEIGHT] + np.float32(0.01)
        t[OURS_ONLY] = t[OURS_ONLY] * np.float32(2)

    return base, edit(repo, "ours", ours), their_model


def test_minilm_merge(repo: Path, minilm: Path, tmp_path: Path) -> None:
    base, ours, theirs = minilm_branches(repo, minilm)
    check_one_sided_changes_are_taken_without_loading(repo, tmp_path)
    (repo / ".thetamerge.toml").write_text(
        '[default]\nstrategy = "task-arithmetic"\n\n[[rule]]\nparams = "*.bias"\nstrategy = "average"\n'
    )
    git(repo, "add", ".thetamerge.toml")
    git(repo, "commit", "-q", "-m", "merge policy")
    result = merge_no_tty(repo, "other", "-m", "merge other")
    assert result.returncode == 0, result.stderr
    assert "1 computed" not in result.stderr and "2 computed" in result.stderr
    merged = load_file(repo / MODEL)
    f64 = {
        name: {k: v.astype(np.float64) for k, v in side.items()}
        for name, side in (("b", base), ("o", ours), ("t", theirs))
    }
    np.testing.assert_array_equal(merged[BIAS], ((f64["o"][BIAS] + f64["t"][BIAS]) / 2).astype(np.float32))
    expected = f64["b"][WEIGHT] + (f64["o"][WEIGHT] - f64["b"][WEIGHT]) + (f64["t"][WEIGHT] - f64["b"][WEIGHT])
    np.testing.assert_array_equal(merged[WEIGHT], expected.astype(np.float32))
    np.testing.assert_array_equal(merged[OURS_ONLY], ours[OURS_ONLY])
    np.testing.assert_array_equal(merged[THEIRS_ONLY], theirs[THEIRS_ONLY])
    np.testing.assert_array_equal(merged[ADDED], theirs[ADDED])
    assert set(merged) == set(base) | {ADDED}
    for name in set(base) - {BIAS, WEIGHT, OURS_ONLY, THEIRS_ONLY}:
        np.testing.assert_array_equal(merged[name], base[name])
    # The merge commit checks out exactly, also in a fresh worktree.
    produced = (repo / MODEL).read_bytes()
    assert git(repo, "status", "--porcelain").stdout == ""
    assert len(git(repo, "rev-list", "--parents", "-n1", "HEAD").stdout.split()) == 3
    git(repo, "worktree", "add", "-q", str(repo.parent / "wt"), "HEAD")
    assert (repo.parent / "wt" / MODEL).read_bytes() == produced
    header = json.loads(produced[8 : 8 + int.from_bytes(produced[:8], "little")])
    assert header["__metadata__"] == {"format": "pt"}


def check_one_sided_changes_are_taken_without_loading(repo: Path, tmp_path: Path) -> None:
    """Run the driver as git would, with every object that only one-sided parameters use moved away."""
    sides = {}
    for label, rev in (("base", "main~1"), ("ours", "main"), ("theirs", "other")):
        data = git(repo, "show", f"{rev}:{MODEL}").stdout.encode()
        (tmp_path / label).write_bytes(data)
        sides[label] = metadata.parse(data)
    needed = {oid for meta in sides.values() for name in (BIAS, WEIGHT) for oid in meta.params[name].objects()}
    needed |= {oid for meta in sides.values() for oid in metadata.file_objects(meta.file)}
    movable = {oid for meta in sides.values() for oid in meta.objects()} - needed
    objects_dir = repo / ".git" / "lfs" / "objects"
    size = {
        oid: (objects_dir / oid[:2] / oid[2:4] / oid).stat().st_size
        for meta in sides.values()
        for oid in meta.objects()
    }
    # most of the model's bytes (its big tensors' objects, the packs holding none of the two merged groups)
    assert sum(size[oid] for oid in movable) > 0.6 * sum(size.values())
    aside = tmp_path / "aside"
    for oid in movable:
        (aside / oid).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(objects_dir / oid[:2] / oid[2:4] / oid, aside / oid)
        # and its second name, which would link it back: the merge must not read it at all
        (repo / ".git" / "theta" / "unpushed" / oid[:2] / oid[2:4] / oid).unlink()
    git(repo, "config", "theta.merge.strategy", "average")
    result = theta(
        repo, "merge-driver", str(tmp_path / "base"), str(tmp_path / "ours"), str(tmp_path / "theirs"), MODEL
    )
    assert "3 taken from the side that changed them" in result.stderr and "2 computed" in result.stderr
    merged = metadata.parse((tmp_path / "ours").read_bytes())
    assert merged.params[OURS_ONLY] == sides["ours"].params[OURS_ONLY]
    assert merged.params[THEIRS_ONLY] == sides["theirs"].params[THEIRS_ONLY]
    assert merged.params[ADDED] == sides["theirs"].params[ADDED]
    assert merged.file == sides["theirs"].file  # theirs added a tensor, ours kept the layout: theirs' header
    assert merged.params[BIAS].hash not in {s.params[BIAS].hash for s in sides.values()}
    for oid in movable:
        shutil.move(aside / oid, objects_dir / oid[:2] / oid[2:4] / oid)
    git(repo, "config", "--unset", "theta.merge.strategy")


def torch_model(repo: Path, values: dict[str, torch.Tensor]) -> None:
    torch_save(values, str(repo / MODEL), metadata={"format": "pt"})


def test_bf16_stays_bf16(repo: Path) -> None:
    base = {
        "w": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.bfloat16),
        "b": torch.zeros(3, dtype=torch.bfloat16),
    }
    torch_model(repo, base)
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    torch_model(repo, {"w": base["w"] + 1.0, "b": base["b"]})
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    torch_model(repo, {"w": base["w"] * 3, "b": base["b"] + 0.5})
    git(repo, "commit", "-q", "-am", "ours")
    git(repo, "config", "theta.merge.strategy", "average")
    result = merge_no_tty(repo, "other", "-m", "merge")
    assert result.returncode == 0, result.stderr
    merged = torch_load(str(repo / MODEL))
    assert merged["w"].dtype == torch.bfloat16 and merged["b"].dtype == torch.bfloat16
    expected = ((base["w"].double() * 3 + base["w"].double() + 1) / 2).to(torch.bfloat16)
    assert torch.equal(merged["w"], expected)
    assert torch.equal(merged["b"], base["b"] + 0.5)


def test_conflicting_shapes_are_a_clear_error(repo: Path) -> None:
    torch_model(repo, {"w": torch.zeros(2, 2)})
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    torch_model(repo, {"w": torch.ones(4)})
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    torch_model(repo, {"w": torch.ones(2, 2)})
    git(repo, "commit", "-q", "-am", "ours")
    ours_bytes = (repo / MODEL).read_bytes()
    git(repo, "config", "theta.merge.strategy", "average")
    result = merge_no_tty(repo, "other", "-m", "merge")
    assert result.returncode != 0
    assert (
        "parameter 'w'" in result.stderr
        and "dtype or shape differ between sides (ours F32[2,2], theirs F32[4])" in result.stderr
    )
    assert f"To resolve:\n  - redo this file's merge now: `git theta merge --redo {MODEL}" in result.stderr
    assert (repo / MODEL).read_bytes() == ours_bytes
    assert "UU model.safetensors" in git(repo, "status", "--porcelain").stdout
    git(repo, "checkout", "--theirs", "--", MODEL)  # the documented way out: take one side whole
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "took theirs")
    assert torch.equal(torch_load(str(repo / MODEL))["w"], torch.ones(4))


def test_no_policy_no_terminal_stops_with_instructions_then_redo(repo: Path) -> None:
    torch_model(repo, {"w": torch.zeros(3), "v": torch.zeros(2)})
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "other")
    torch_model(repo, {"w": torch.tensor([1.0, 2.0, 3.0]), "v": torch.ones(2)})
    git(repo, "commit", "-q", "-am", "theirs")
    git(repo, "checkout", "-q", "main")
    torch_model(repo, {"w": torch.tensor([3.0, 2.0, 1.0]), "v": torch.zeros(2)})
    git(repo, "commit", "-q", "-am", "ours")
    ours_bytes = (repo / MODEL).read_bytes()
    result = merge_no_tty(repo, "other", "-m", "merge")
    assert result.returncode != 0
    assert (
        "1 parameter(s) changed differently on several sides; no merge strategy covers them and there is no terminal"
        in result.stderr
    )
    assert "  w  (ours: F32[3], theirs: F32[3]; base: F32[3])" in result.stderr
    assert f"git theta merge --redo {MODEL} --strategy NAME" in result.stderr
    assert (repo / MODEL).read_bytes() == ours_bytes
    redo = theta(repo, "merge", "--redo", MODEL, "--strategy", "weighted", "--arg", "weights=1,3")
    assert "merged and staged" in redo.stderr
    assert git(repo, "status", "--porcelain").stdout == "M  model.safetensors\n"
    git(repo, "commit", "-q", "-m", "merged")
    merged = torch_load(str(repo / MODEL))
    assert torch.equal(merged["w"], torch.tensor([1.5, 2.0, 2.5])) and torch.equal(merged["v"], torch.ones(2))
