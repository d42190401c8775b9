"""Tests mirror the package: git_theta/x/y.py is tested in tests/x/y_test.py, or the list below says where.

The exceptions are modules exercised through another module's tests (a thin command through the CLI tests, a
helper through the format that uses it). The list names the test file, and this test checks it exists, so a new
module without tests, or a moved test file, fails here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "git_theta"

ELSEWHERE: dict[str, str] = {
    "__main__.py": "tests/commands/cli_test.py",
    "builtin_plugins.py": "tests/plugins_test.py",
    "main.py": "tests/commands/cli_test.py",
    "repo.py": "tests/store_test.py",
    "snapshots.py": "tests/commands/diff_test.py",
    "fsck.py": "tests/commands/fsck_test.py",
    "gc.py": "tests/commands/gc_test.py",
    "compact.py": "tests/commands/compact_test.py",
    "history.py": "tests/commands/log_test.py",
    "worktree_checkout.py": "tests/commands/checkout_test.py",
    "installation.py": "tests/commands/cli_test.py",
    "checkpoints/base.py": "tests/clean_format_test.py",
    "checkpoints/zip_layout.py": "tests/checkpoints/npz_test.py",
    "commands/clean.py": "tests/clean_test.py",
    "commands/smudge.py": "tests/smudge_test.py",
    "commands/install.py": "tests/commands/cli_test.py",
    "commands/uninstall.py": "tests/commands/cli_test.py",
    "commands/untrack.py": "tests/commands/cli_test.py",
    "commands/ls_files.py": "tests/commands/cli_test.py",
    "commands/migrate.py": "tests/commands/migrate_cli_test.py",
    "commands/pre_push.py": "tests/commands/push_test.py",
    "display/changes.py": "tests/display/diff_view_test.py",
    "display/tables.py": "tests/display/diff_view_test.py",
    "merge/driver.py": "tests/commands/merge_driver_test.py",
    "merge/revisions.py": "tests/commands/merge_test.py",
    "merge/strategies/base.py": "tests/merges/base_test.py",
    "merge/strategies/flag.py": "tests/merge/strategies/breadcrumbs_test.py",
    "merge/strategies/sparsify.py": "tests/merge/strategies/della_test.py",
    "sideload/peft.py": "tests/sideload/apply_test.py",
    "transfer/credentials.py": "tests/transfer/lfs_http_test.py",
    "transfer/pushing.py": "tests/commands/push_test.py",
    "transfer/scan.py": "tests/commands/gc_test.py",
    "update_engine/pending.py": "tests/commands/add_test.py",
    "updates/base.py": "tests/plugins_test.py",
    "updates/dense.py": "tests/update_engine/auto_test.py",
}


def _modules() -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    )


def test_every_module_has_its_mirrored_test_file_or_names_where_it_is_tested() -> None:
    missing = []
    for module in _modules():
        mirrored = ROOT / "tests" / Path(module).parent / (Path(module).stem + "_test.py")
        if not mirrored.exists() and not (module in ELSEWHERE and (ROOT / ELSEWHERE[module]).exists()):
            missing.append(module)
    assert missing == [], f"modules without tests/x/y_test.py (add one, or say where they are tested): {missing}"


def test_the_exceptions_are_still_exceptions() -> None:
    # A module that gained its mirrored test file leaves the list.
    mirrored = [m for m in ELSEWHERE if (ROOT / "tests" / Path(m).parent / (Path(m).stem + "_test.py")).exists()]
    assert mirrored == [] and set(ELSEWHERE) <= set(_modules())
