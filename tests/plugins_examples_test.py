"""Each example package in plugins/ installs as a user would install it and passes its own tests.

pip builds it from a copy (so no build/ or egg-info lands in the source tree) into a temporary target; its
tests then run in a fresh pytest with that target and this git-theta first on the path, so they exercise
exactly these sources, found through the installed entry points.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(path.parent.name for path in (ROOT / "plugins").glob("*/setup.py"))


def test_there_is_an_example_of_each_kind() -> None:
    kinds = {
        (ROOT / "plugins" / name / "setup.py").read_text().split('entry_points={"', 1)[1].split('"', 1)[0]
        for name in PACKAGES
    }
    assert kinds == {"git_theta.checkpoints", "git_theta.updates", "git_theta.merges"}


@pytest.mark.parametrize("package", PACKAGES)
def test_example_package_installs_and_passes_its_tests(package: str, tmp_path: Path) -> None:
    source = shutil.copytree(
        ROOT / "plugins" / package,
        tmp_path / package,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert list(site.glob("*.dist-info/entry_points.txt")), "the package registers no entry point"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "--rootdir",
            str(source),
            str(source / "tests"),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
