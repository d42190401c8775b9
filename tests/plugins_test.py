"""Plugin lookup: built-ins from their table, third-party plugins from entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import fake_distribution

from git_theta import plugins
from git_theta.builtin_plugins import BUILTIN_PLUGINS
from git_theta.errors import PluginError


def test_installed_entry_points_are_the_builtin_table() -> None:
    # setup.py registers the table; a stale install (or a table edited without reinstalling) shows here.
    for group, table in BUILTIN_PLUGINS.items():
        installed = {e.name: e.value for e in metadata.entry_points(group=group) if e.dist and e.dist.name == "git-theta"}
        assert installed == table, group


def test_every_builtin_loads() -> None:
    for group, table in BUILTIN_PLUGINS.items():
        for name, target in table.items():
            plugin = plugins.get(group, name)
            assert f"{plugin.__module__}:{plugin.__qualname__}" == target


def _fresh_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_a_builtin_is_found_without_scanning_entry_points_or_importing_other_plugins() -> None:
    code = (
        "import sys\n"
        "from git_theta import plugins\n"
        "plugins.get(plugins.CHECKPOINTS, 'safetensors')\n"
        "plugins.get(plugins.UPDATES, 'dense')\n"
        "print(sorted(m for m in ('importlib.metadata', 'git_theta.checkpoints.pytorch', 'git_theta.updates.sparse') if m in sys.modules))"
    )
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_third_party_plugins_come_from_entry_points_and_cannot_replace_a_builtin(tmp_path: Path) -> None:
    root = fake_distribution(
        tmp_path,
        "[git_theta.checkpoints]\nsafetensors = fake_plugins:Impostor\nfakefmt = fake_plugins:Fake\n",
        "class Impostor: pass\nclass Fake: pass\n",
    )
    code = (
        "from git_theta import plugins\n"
        "print(plugins.get(plugins.CHECKPOINTS, 'fakefmt').__module__)\n"
        "print(plugins.get(plugins.CHECKPOINTS, 'safetensors').__module__)\n"
        "print(','.join(plugins.names(plugins.CHECKPOINTS)))"
    )
    result = _fresh_python(code, root)
    assert result.returncode == 0, result.stderr
    found, safetensors, names = result.stdout.split()
    assert found == "fake_plugins"
    assert safetensors == "git_theta.checkpoints.safetensors"
    listed = names.split(",")
    assert {"fakefmt", "npz", "pytorch", "safetensors"} <= set(listed)
    assert listed == sorted(set(listed))  # sorted, and the impostor adds no second "safetensors"


def test_a_broken_third_party_plugin_names_itself_and_its_package(tmp_path: Path) -> None:
    root = fake_distribution(tmp_path, "[git_theta.merges]\nbroken = fake_plugins:Missing\n", "raise ImportError('no such thing')\n")
    code = (
        "from git_theta import plugins\n"
        "from git_theta.errors import PluginError\n"
        "try:\n"
        "    plugins.get(plugins.MERGES, 'broken')\n"
        "except PluginError as error:\n"
        "    print(error)\n"
    )
    result = _fresh_python(code, root)
    assert result.returncode == 0, result.stderr
    assert "plugin 'broken' (fake_plugins:Missing) from package 'fake-plugins' failed to load: no such thing" in result.stdout


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(PluginError) as caught:
        plugins.get(plugins.UPDATES, "no-such-update")
    message = str(caught.value)
    assert "unknown updates plugin 'no-such-update'" in message
    assert "dense, ia3, low-rank, sparse, xor" in message
