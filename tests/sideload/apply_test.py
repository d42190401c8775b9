"""Side-loading (`git theta add --update-type`): one update per parameter, never one silently replacing another."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import fake_distribution, git, theta
from hostile_support import RepoState, assert_refused, run_bounded
from update_helpers import chain, commit, load, save, staged, weights

ModelArrays = dict[str, np.ndarray[Any, Any]]


def _committed_model(repo: Path) -> ModelArrays:
    model = weights(np.random.default_rng(7), "F32", {"fc.weight": (8, 6), "fc.bias": (8,)})
    save(repo / "model.safetensors", model)
    commit(repo, "base")
    return model


def _refused_side_load(repo: Path, update_type: str, update_file: Path, names: list[str]) -> str:
    state = RepoState.capture(repo)
    result = run_bounded(
        ["git-theta", "add", "model.safetensors", "--update-type", update_type, "--update-data", str(update_file)],
        cwd=repo,
    )
    line = assert_refused(result, [str(update_file), *names])
    state.assert_unchanged(repo)
    return line


def test_ia3_weight_vector_and_a_bias_entry_for_the_same_layer_are_refused(repo: Path, tmp_path: Path) -> None:
    """The weight's (out, 1) vector also scales fc.bias (PEFT's merge); a second entry for fc.bias would be
    overwritten."""
    _committed_model(repo)
    rng = np.random.default_rng(8)
    update = tmp_path / "ia3.safetensors"
    save(
        update,
        {
            "base_model.model.fc.ia3_l": rng.uniform(0.5, 1.5, (8, 1)).astype(np.float32),
            "base_model.model.fc.bias.ia3_l": rng.uniform(0.5, 1.5, (8,)).astype(np.float32),
        },
    )
    line = _refused_side_load(
        repo, "ia3", update, ["'fc.bias'", "base_model.model.fc.ia3_l", "base_model.model.fc.bias.ia3_l"]
    )
    assert "two updates" in line and "bias" in line


def test_ia3_bias_entry_alone_is_applied(repo: Path, tmp_path: Path) -> None:
    """Without the weight's vector, a vector for the bias alone is one update for one parameter: accepted."""
    model = _committed_model(repo)
    update = tmp_path / "ia3.safetensors"
    save(update, {"fc.bias.ia3_l": np.full((8,), 2.0, np.float32)})
    result = run_bounded(
        ["git-theta", "add", "model.safetensors", "--update-type", "ia3", "--update-data", str(update)], cwd=repo
    )
    assert result.returncode == 0, result.describe()
    got = load(repo / "model.safetensors")
    assert (
        got["fc.bias"].tobytes() == (model["fc.bias"] * 2).tobytes()
        and got["fc.weight"].tobytes() == model["fc.weight"].tobytes()
    )


@pytest.mark.parametrize(
    ("update_type", "entries", "named"),
    [
        ("ia3", {"fc.ia3_l": (8, 1), "fc.weight.ia3_l": (8, 1)}, ["'fc.ia3_l'", "'fc.weight.ia3_l'"]),
        (
            "low-rank",
            {"fc.lora_A.weight": (2, 6), "base_model.model.fc.lora_A.weight": (2, 6), "fc.lora_B.weight": (8, 2)},
            ["'fc.lora_A.weight'", "'base_model.model.fc.lora_A.weight'"],
        ),
        (
            "low-rank",
            {
                "fc.lora_A.weight": (2, 6),
                "fc.lora_B.weight": (8, 2),
                "fc.weight.lora_A": (2, 6),
                "fc.weight.lora_B": (8, 2),
            },
            ["'fc.lora_A.weight'", "'fc.weight.lora_A'"],
        ),
    ],
)
def test_two_entries_for_one_parameter_are_refused_naming_both(
    repo: Path, tmp_path: Path, update_type: str, entries: dict[str, tuple[int, ...]], named: list[str]
) -> None:
    _committed_model(repo)
    rng = np.random.default_rng(9)
    update = tmp_path / "update.safetensors"
    save(update, {name: rng.uniform(0.5, 1.5, shape).astype(np.float32) for name, shape in entries.items()})
    line = _refused_side_load(repo, update_type, update, ["'fc.weight'", *named])
    assert "two" in line


def test_two_sparse_entries_for_one_parameter_are_refused_naming_both(repo: Path, tmp_path: Path) -> None:
    _committed_model(repo)
    update = tmp_path / "sparse.safetensors"
    save(
        update,
        {
            "fc.weight.sparse_indices": np.array([1]),
            "fc.weight.sparse_values": np.array([5.0], np.float32),
            "base_model.model.fc.weight.sparse_indices": np.array([2]),
            "base_model.model.fc.weight.sparse_values": np.array([6.0], np.float32),
        },
    )
    _refused_side_load(
        repo,
        "sparse",
        update,
        ["'fc.weight'", "'base_model.model.fc.weight.sparse_indices'", "'fc.weight.sparse_indices'"],
    )


# --- a hostile adapter_config.json beside the update file (someone else's adapter) ------------------------------

HOSTILE_CONFIGS = {
    "nan_alpha": ('{"lora_alpha": NaN}', "lora_alpha must be a finite number"),
    "inf_alpha": ('{"lora_alpha": Infinity}', "lora_alpha must be a finite number"),
    "string_alpha": ('{"lora_alpha": "sixteen"}', "lora_alpha must be a finite number"),
    "bool_alpha": ('{"lora_alpha": true}', "lora_alpha must be a finite number"),
    "not_an_object": ("[1, 2, 3]", "must hold a JSON object"),
    "deeply_nested": ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    "not_json": ("{lora_alpha = 16}", "is not valid JSON"),
    "not_utf8": ('{"lora_alpha": "\xff"}', "is not valid JSON"),
    "too_large": ('{"pad": "' + "x" * (2 << 20) + '"}', "larger than the 1048576 bytes"),
}


def _lora_update(tmp_path: Path) -> Path:
    rng = np.random.default_rng(10)
    (tmp_path / "adapter").mkdir()
    update = tmp_path / "adapter" / "adapter_model.safetensors"
    save(
        update,
        {
            "base_model.model.fc.lora_A.weight": rng.normal(0, 0.1, (2, 6)).astype(np.float32),
            "base_model.model.fc.lora_B.weight": rng.normal(0, 0.1, (8, 2)).astype(np.float32),
        },
    )
    return update


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_a_hostile_adapter_config_is_refused_in_one_line(repo: Path, tmp_path: Path, case: str) -> None:
    _committed_model(repo)
    update = _lora_update(tmp_path)
    text, message = HOSTILE_CONFIGS[case]
    (update.parent / "adapter_config.json").write_bytes(text.encode("latin-1" if case == "not_utf8" else "utf-8"))
    line = _refused_side_load(repo, "low-rank", update, [str(update.parent / "adapter_config.json")])
    assert message in line and len(line) < 400, line


def test_a_non_finite_lora_alpha_option_is_refused(repo: Path, tmp_path: Path) -> None:
    _committed_model(repo)
    update = _lora_update(tmp_path)
    state = RepoState.capture(repo)
    result = run_bounded(
        [
            "git-theta",
            "add",
            "model.safetensors",
            "--update-type",
            "low-rank",
            "--update-data",
            str(update),
            "--lora-alpha",
            "nan",
        ],
        cwd=repo,
    )
    assert "--lora-alpha must be a finite number" in assert_refused(result, "--lora-alpha")
    state.assert_unchanged(repo)


# A third-party update type that side-loads through the UpdateType hook, exactly like the built-ins: entries
# `<param>.scale` hold one float factor per parameter; checkout multiplies the base by it.
SCALE_PLUGIN = """
from git_theta.objects import Bundle
from git_theta.tensor import Tensor
from git_theta.errors import ThetaError
from git_theta.updates.base import UpdateType, as_float, cast_to, compute_dtype


class ScaleUpdate(UpdateType):
    name = "scale"
    side_load_suffixes = {".scale": "factor"}

    def side_load(self, param, base, roles, context):
        if roles["factor"].shape != (1,):
            raise ThetaError(f"a scale entry holds one factor, not {list(roles['factor'].shape)}")
        return {param: Bundle("scale", {"factor": roles["factor"]}, {"base": base.hash()})}

    def apply(self, bundle, base):
        base = self.checked_base(bundle, base)
        work = compute_dtype(base.dtype)
        return cast_to(as_float(base, work) * as_float(self.buffer(bundle, "factor"), work)[0], base.dtype, base.shape)


class NoSideLoad(UpdateType):
    name = "noside"

    def apply(self, bundle, base):
        return base
"""


def _with_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_distribution(
        tmp_path / "site",
        "[git_theta.updates]\nscale = fake_plugins:ScaleUpdate\nnoside = fake_plugins:NoSideLoad\n",
        SCALE_PLUGIN,
    )
    monkeypatch.setenv("PYTHONPATH", f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def test_a_plugin_update_type_is_side_loaded_through_its_hook(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_plugin(tmp_path, monkeypatch)
    model = _committed_model(repo)
    save(tmp_path / "scale.safetensors", {"base_model.model.fc.weight.scale": np.array([0.5], dtype=np.float32)})
    theta(
        repo, "add", "model.safetensors", "--update-type", "scale", "--update-data", str(tmp_path / "scale.safetensors")
    )
    assert chain(staged(repo), "fc.weight") == ["dense", "scale"]
    commit(repo, "scaled")
    expected = {"fc.weight": model["fc.weight"] * np.float32(0.5), "fc.bias": model["fc.bias"]}
    (repo / "model.safetensors").unlink()
    git(repo, "checkout", "--", "model.safetensors")
    found = load(repo / "model.safetensors")
    assert all(np.array_equal(found[name], value) for name, value in expected.items())


def test_a_plugin_hook_error_names_the_file_and_parameter(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_plugin(tmp_path, monkeypatch)
    _committed_model(repo)
    update = tmp_path / "scale.safetensors"
    save(update, {"fc.weight.scale": np.array([0.5, 2.0], dtype=np.float32)})
    line = _refused_side_load(repo, "scale", update, ["'fc.weight'", "a scale entry holds one factor, not [2]"])
    assert line.startswith("git-theta: error:")


def test_an_update_type_without_the_hook_is_refused_by_name(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_plugin(tmp_path, monkeypatch)
    _committed_model(repo)
    update = tmp_path / "x.safetensors"
    save(update, {"fc.weight.scale": np.array([0.5], dtype=np.float32)})
    state = RepoState.capture(repo)
    for name in ("xor", "noside"):
        result = run_bounded(
            ["git-theta", "add", "model.safetensors", "--update-type", name, "--update-data", str(update)], cwd=repo
        )
        line = assert_refused(result, f"update type {name!r} cannot be side-loaded; types that can: ")
        can = line.split("types that can: ", 1)[1].split(", ")
        assert can == sorted(can) and {"ia3", "low-rank", "scale", "sparse"} <= set(can) and name not in can
    state.assert_unchanged(repo)


# --- modules_to_save: a saved module's parameters replace the checkpoint's ---------------------------------------


def _bf16_model_and_adapter(repo: Path, tmp_path: Path, head: dict[str, np.ndarray[Any, Any]]) -> Path:
    """A bf16 model (fc, head) committed; an adapter with LoRA on fc, `head` saved whole, a config listing it."""
    rng = np.random.default_rng(11)
    save(
        repo / "model.safetensors",
        weights(rng, "BF16", {"fc.weight": (8, 6), "head.weight": (3, 8), "head.bias": (3,)}),
    )
    commit(repo, "base")
    (tmp_path / "adapter").mkdir()
    update = tmp_path / "adapter" / "adapter_model.safetensors"
    adapter = {
        "base_model.model.fc.lora_A.weight": rng.normal(0, 0.1, (2, 6)).astype(np.float32),
        "base_model.model.fc.lora_B.weight": rng.normal(0, 0.1, (8, 2)).astype(np.float32),
    }
    save(update, {**adapter, **{f"base_model.model.{name}": value for name, value in head.items()}})
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "modules_to_save": ["head"]}
    (update.parent / "adapter_config.json").write_text(json.dumps(config))
    return update


def test_a_saved_module_replaces_its_parameters_rounded_to_the_checkpoint_dtype(repo: Path, tmp_path: Path) -> None:
    """fp32 values saved by training, a bf16 checkpoint: rounded to nearest even (as load_state_dict copies them)."""
    head = {
        "head.weight": np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8) + np.float32(1e-4),
        "head.bias": np.array([0.1, 0.2, 0.3], np.float32),
    }
    update = _bf16_model_and_adapter(repo, tmp_path, head)
    result = run_bounded(
        ["git-theta", "add", "model.safetensors", "--update-type", "low-rank", "--update-data", str(update)], cwd=repo
    )
    assert result.returncode == 0, result.describe()
    assert "1 parameter(s) updated" in result.stdout and "2 replaced by the adapter's saved modules" in result.stdout
    got = load(repo / "model.safetensors")
    for name, value in head.items():
        assert got[name].tobytes() == torch.from_numpy(value).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    assert chain(staged(repo), "fc.weight")[-1] == "low-rank"
    commit(repo, "adapter")
    written = (repo / "model.safetensors").read_bytes()
    (repo / "model.safetensors").unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert (repo / "model.safetensors").read_bytes() == written


def test_a_saved_module_of_another_shape_is_refused(repo: Path, tmp_path: Path) -> None:
    update = _bf16_model_and_adapter(repo, tmp_path, {"head.weight": np.zeros((4, 8), np.float32)})
    line = _refused_side_load(repo, "low-rank", update, ["'base_model.model.head.weight'", "[4, 8]", "[3, 8]"])
    assert "shape" in line


def test_a_saved_module_that_also_gets_lora_factors_is_refused(repo: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    update = _bf16_model_and_adapter(repo, tmp_path, {"fc.weight": rng.normal(0, 1, (8, 6)).astype(np.float32)})
    config = json.loads((update.parent / "adapter_config.json").read_text())
    (update.parent / "adapter_config.json").write_text(json.dumps({**config, "modules_to_save": ["fc"]}))
    line = _refused_side_load(repo, "low-rank", update, ["'fc.weight'", "base_model.model.fc.weight"])
    assert "two updates" in line
