"""Plugin lookup: built-ins from their table, third-party plugins from entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_distribution, git, theta
from hostile_support import RepoState, assert_refused, run_bounded
from safetensors.numpy import save_file

from git_theta import plugins
from git_theta.builtin_plugins import BUILTIN_PLUGINS
from git_theta.errors import PluginError


def test_installed_entry_points_are_the_builtin_table() -> None:
    # setup.py registers the table; a stale install (or a table edited without reinstalling) shows here.
    for group, table in BUILTIN_PLUGINS.items():
        installed = {
            e.name: e.value for e in metadata.entry_points(group=group) if e.dist and e.dist.name == "git-theta"
        }
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
        "print(sorted(m for m in ('importlib.metadata', 'git_theta.checkpoints.pytorch', 'git_theta.updates.sparse') "
        "if m in sys.modules))"
    )
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_third_party_plugins_come_from_entry_points_and_cannot_replace_a_builtin(tmp_path: Path) -> None:
    root = fake_distribution(
        tmp_path,
        "[git_theta.checkpoints]\nsafetensors = fake_plugins:Impostor\nfakefmt = fake_plugins:Fake\n",
        "from git_theta.checkpoints.safetensors import SafetensorsFormat\n"
        "class Impostor(SafetensorsFormat): pass\n"
        "class Fake(SafetensorsFormat):\n    name = 'fakefmt'\n",
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
    root = fake_distribution(
        tmp_path, "[git_theta.merges]\nbroken = fake_plugins:Missing\n", "raise ImportError('no such thing')\n"
    )
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
    assert (
        "plugin 'broken' (fake_plugins:Missing) from package 'fake-plugins' failed to load: no such thing"
        in result.stdout
    )


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(PluginError) as caught:
        plugins.get(plugins.UPDATES, "no-such-update")
    message = str(caught.value)
    assert "unknown updates plugin 'no-such-update'" in message
    assert f"known: {', '.join(plugins.names(plugins.UPDATES))}" in message  # built-ins and installed ones, sorted
    assert {"dense", "ia3", "low-rank", "sparse", "xor"} <= set(plugins.names(plugins.UPDATES))


# A format plugin whose entry point says "fake" while its class says "fakeformat": metadata would record
# "fakeformat", which no lookup finds, so the commit could never be checked out.
MISNAMED = (
    "from git_theta.checkpoints.safetensors import SafetensorsFormat\n"
    "class Fake(SafetensorsFormat):\n    name = 'fakeformat'\n    extensions = ('.fake',)\n"
)


def test_a_plugin_whose_entry_point_and_class_names_differ_is_refused_by_git_add(repo: Path, tmp_path: Path) -> None:
    root = fake_distribution(tmp_path / "site", "[git_theta.checkpoints]\nfake = fake_plugins:Fake\n", MISNAMED)
    theta(repo, "track", "*.fake")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "track fake")
    save_file({"w": np.arange(6, dtype=np.float32)}, str(repo / "model.fake"))
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    before = RepoState.capture(repo)
    result = run_bounded(["git", "add", "model.fake"], repo, env=env)
    line = assert_refused(result, ["model.fake", "fake-plugins", "'fake'", "'fakeformat'", "fake_plugins:Fake"])
    assert "entry-point name 'fake' differs from the class's name 'fakeformat'" in line
    before.assert_unchanged(repo)


def test_a_plugin_that_is_not_a_subclass_of_its_groups_base_is_refused(tmp_path: Path) -> None:
    root = fake_distribution(
        tmp_path,
        "[git_theta.updates]\nscale = fake_plugins:Scale\n[git_theta.merges]\nmean = fake_plugins:Mean\n",
        "from git_theta.checkpoints.safetensors import SafetensorsFormat\n"
        "class Scale:\n    name = 'scale'\n"
        "class Mean(SafetensorsFormat):\n    name = 'mean'\n",
    )
    code = (
        "from git_theta import plugins\n"
        "from git_theta.errors import PluginError\n"
        "for group, name in ((plugins.UPDATES, 'scale'), (plugins.MERGES, 'mean')):\n"
        "    try:\n"
        "        plugins.get(group, name)\n"
        "    except PluginError as error:\n"
        "        print(error)\n"
    )
    result = _fresh_python(code, root)
    assert result.returncode == 0, result.stderr
    scale, mean = result.stdout.splitlines()
    assert scale == (
        "plugin 'scale' (fake_plugins:Scale) from package 'fake-plugins' is not a subclass of "
        "git_theta.updates.base.UpdateType; a git_theta.updates plugin must be one"
    )
    assert (
        "plugin 'mean' (fake_plugins:Mean) from package 'fake-plugins' is not a subclass of "
        "git_theta.merge.strategies.base.MergeStrategy" in mean
    )


def test_every_builtin_name_equals_its_entry_point() -> None:
    for group, table in BUILTIN_PLUGINS.items():
        for name in table:
            assert plugins.get(group, name).name == name


def test_typed_lookups_return_the_plugin_classes() -> None:
    from git_theta.checkpoints.safetensors import SafetensorsFormat
    from git_theta.merge.strategies.average import AverageStrategy
    from git_theta.updates.low_rank import LowRankUpdate

    assert plugins.checkpoint("safetensors") is SafetensorsFormat
    assert plugins.update("low-rank") is LowRankUpdate
    assert plugins.strategy("average") is AverageStrategy
    with pytest.raises(PluginError, match="unknown merges plugin 'nope'"):
        plugins.strategy("nope")


def test_a_plugin_package_type_checks_against_git_theta(tmp_path: Path) -> None:
    # py.typed is shipped (setup.py package_data) so mypy reads an installed git-theta's annotations; here the
    # source is put on MYPYPATH (the editable install may point elsewhere). A misused typed lookup is an error, not Any.
    package = Path(plugins.__file__).parent
    assert (package / "py.typed").is_file()
    (tmp_path / "user.py").write_text("from git_theta import plugins\nfmt: int = plugins.checkpoint('safetensors')\n")
    env = {**os.environ, "MYPYPATH": str(package.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        'Incompatible types in assignment (expression has type "type[CheckpointFormat]", variable has type "int")'
        in result.stdout
    )
