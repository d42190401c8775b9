"""The command line as a user meets it: help, version, install/uninstall, track/untrack, ls-files, errors.

Also checks docs/cli.md against the parser: every verb documented, every documented flag real, every real
flag documented, every usage line as `--help` prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import git, theta
from safetensors.numpy import save

from git_theta import __version__, hooks
from git_theta.installation import LFS_PRUNE_SETTINGS, LFS_RECORD, SETTINGS
from git_theta.main import build_parser, main

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def config_list(scope: str, cwd: Path) -> list[str]:
    """`git config --<scope> --list`, sorted (empty when that config file does not exist)."""
    result = subprocess.run(["git", "config", f"--{scope}", "--list"], cwd=cwd, capture_output=True, text=True)
    return sorted(result.stdout.splitlines())


def in_process(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git theta args` run by main() in this process (the same code as the console script, without a
    Python start per call); returns what it printed like subprocess.run would."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["git-theta", *args], code, out.getvalue(), err.getvalue())


def one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr == f"git-theta: error: {expected}\n"
    assert "Traceback" not in result.stdout + result.stderr


# --- help, version, no verb ------------------------------------------------------------------------


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_help_of_every_verb_exits_0(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: git theta {verb} ")
    assert "-h, --help" in out


def test_version(tmp_path: Path) -> None:
    result = theta(tmp_path, "--version")
    assert result.stdout == f"git-theta {__version__}\n"


def test_git_finds_git_theta_on_path(tmp_path: Path) -> None:
    result = git(tmp_path, "theta", "-h")
    assert result.stdout.startswith("usage: git theta [-h] [--version] [-q] COMMAND ...")
    for verb in verbs():
        assert f"    {verb}" in result.stdout


def test_git_theta_without_a_verb_prints_usage_and_fails(tmp_path: Path) -> None:
    result = git(tmp_path, "theta", check=False)
    assert result.returncode == 1
    assert result.stdout.startswith("usage: git theta [-h] [--version] [-q] COMMAND ...")
    assert "Traceback" not in result.stderr


def test_unknown_verb_is_a_usage_error(tmp_path: Path) -> None:
    result = theta(tmp_path, "frobnicate", check=False)
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr


# --- install / uninstall -----------------------------------------------------------------------------


def lfs_repo(tmp_path: Path) -> tuple[Path, bytes]:
    """A repository set up by git-lfs (its filter config and hooks) with a user's own pre-push hook."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "lfs", "install", "--local")
    git(path, "config", "alias.st", "status --short")
    git(path, "config", "user.custom", "keep me")
    hook = b'#!/bin/sh\n# the user\'s own pre-push hook\necho checking >&2\ngit lfs pre-push "$@"\n'
    (path / ".git" / "hooks" / "pre-push").write_bytes(hook)
    (path / ".git" / "hooks" / "pre-push").chmod(0o755)
    return path, hook


def expected_keys() -> list[str]:
    """What install adds to a scope with none of its keys: its settings, git-lfs's prune keys and their record."""
    lfs = [f"{k}={v}" for k, v in LFS_PRUNE_SETTINGS.items()] + [f"{LFS_RECORD}={k}" for k in LFS_PRUNE_SETTINGS]
    return sorted([f"{k}={v}" for k, v in SETTINGS.items()] + lfs)


def hook_files(repo: Path) -> dict[str, bytes]:
    hooks = repo / ".git" / "hooks"
    return {p.name: p.read_bytes() for p in sorted(hooks.iterdir()) if not p.name.endswith(".sample")}


def test_install_local_is_idempotent_and_leaves_others_alone(tmp_path: Path) -> None:
    repo, user_hook = lfs_repo(tmp_path)
    config_before = config_list("local", repo)
    global_before = config_list("global", tmp_path)
    hooks_before = hook_files(repo)

    first = theta(repo, "install", "--local")
    assert f", {len(SETTINGS) + len(LFS_PRUNE_SETTINGS)} setting(s) changed)" in first.stdout
    config_after = config_list("local", repo)
    assert set(config_before) <= set(config_after)  # filter.lfs.*, alias.st, user.custom untouched
    assert sorted(set(config_after) - set(config_before)) == expected_keys()
    for name in ("post-checkout", "post-commit", "post-merge"):  # git-lfs's other hooks
        assert (repo / ".git" / "hooks" / name).read_bytes() == hooks_before[name]
    # The user's pre-push hook keeps its bytes: left in place, or chained (moved beside ours and run by it).
    hook = repo / ".git" / "hooks" / "pre-push"
    if hook.read_bytes() != user_hook:
        chained = [p for p in hook.parent.iterdir() if p.name.startswith("pre-push.") and p.read_bytes() == user_hook]
        assert chained, "the user's pre-push hook was lost"
        assert chained[0].name.encode() in hook.read_bytes()

    hooks_once = hook_files(repo)
    second = theta(repo, "install", "--local")
    assert ", 0 setting(s) changed)" in second.stdout
    assert config_list("local", repo) == config_after
    assert hook_files(repo) == hooks_once
    assert config_list("global", tmp_path) == global_before  # --local writes nothing global


def test_uninstall_local_removes_exactly_our_keys(tmp_path: Path) -> None:
    repo, _ = lfs_repo(tmp_path)
    config_before = config_list("local", repo)
    hooks_before = hook_files(repo)
    theta(repo, "install", "--local")
    theta(repo, "uninstall", "--local")
    assert config_list("local", repo) == config_before
    assert hook_files(repo) == hooks_before
    again = theta(repo, "uninstall", "--local")  # nothing left to remove is not an error, and is said as such
    assert again.returncode == 0 and "nothing to remove" in again.stdout and "removed" not in again.stdout
    assert config_list("local", repo) == config_before


def test_install_sets_only_the_git_lfs_prune_keys_a_user_left_unset_and_uninstall_removes_only_those(
    tmp_path: Path,
) -> None:
    repo, _ = lfs_repo(tmp_path)
    git(repo, "config", "lfs.pruneverifyremotealways", "false")  # the user's own choice
    theta(repo, "install", "--local")
    assert git(repo, "config", "lfs.pruneverifyremotealways").stdout == "false\n"
    assert git(repo, "config", "lfs.pruneverifyunreachablealways").stdout == "true\n"
    git(repo, "config", "lfs.pruneverifyunreachablealways", "false")  # changed by the user after install: theirs now
    theta(repo, "uninstall", "--local")
    assert git(repo, "config", "lfs.pruneverifyremotealways").stdout == "false\n"
    assert git(repo, "config", "lfs.pruneverifyunreachablealways").stdout == "false\n"
    assert git(repo, "config", "--get-all", LFS_RECORD, check=False).returncode == 1  # the record goes too


def test_uninstall_warns_while_tracked_checkpoints_would_check_out_as_metadata(repo: Path) -> None:
    (repo / "model.safetensors").write_bytes(save({"w": np.ones(4, np.float32)}))
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "model")
    said = theta(repo, "uninstall", "--local")
    assert said.returncode == 0 and "git-theta settings removed from local git config (10 setting(s))" in said.stdout
    assert (
        "warning: 1 tracked checkpoint(s) here (e.g. model.safetensors) will now check out as git-theta's metadata"
        in said.stderr
    )
    theta(repo, "install", "--local")
    assert "warning" not in theta(repo, "uninstall").stderr  # the local scope still configures the filter


def test_global_install_and_uninstall_inside_a_repository_add_and_remove_its_hook(tmp_path: Path) -> None:
    repo, _ = lfs_repo(tmp_path)
    hooks_before = hook_files(repo)
    theta(repo, "install")
    assert hooks.is_ours(repo / ".git" / "hooks" / "pre-push")
    theta(repo, "uninstall")
    assert hook_files(repo) == hooks_before
    assert '[filter "theta"]' not in (Path.home() / ".gitconfig").read_text()


def test_global_uninstall_keeps_the_hook_of_a_repository_configured_locally(tmp_path: Path) -> None:
    repo, _ = lfs_repo(tmp_path)
    theta(repo, "install")
    theta(repo, "install", "--local")
    said = theta(repo, "uninstall").stdout
    assert "pre-push hook kept" in said
    assert hooks.is_ours(repo / ".git" / "hooks" / "pre-push")  # pushes still upload objects
    theta(repo, "uninstall", "--local")
    assert not hooks.is_ours(repo / ".git" / "hooks" / "pre-push")


def test_install_without_local_writes_global_config(tmp_path: Path) -> None:
    outside = tmp_path / "nowhere"
    outside.mkdir()
    global_before = config_list("global", outside)
    result = theta(outside, "install")
    assert "global git config" in result.stdout
    global_after = config_list("global", outside)
    assert sorted(set(global_after) - set(global_before)) == expected_keys()
    assert set(global_before) <= set(global_after)
    # HOME is isolated per test by conftest, so this is the test's own ~/.gitconfig.
    assert '[filter "theta"]' in (Path.home() / ".gitconfig").read_text()
    assert ", 0 setting(s) changed)" in theta(outside, "install").stdout
    theta(outside, "uninstall")
    assert config_list("global", outside) == global_before


def test_global_install_is_what_a_new_repository_uses(tmp_path: Path) -> None:
    theta(tmp_path, "install")
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    theta(repo, "track", "*.safetensors")
    (repo / "m.safetensors").write_bytes(save({"w": np.ones((2, 2), dtype="<f4")}))
    git(repo, "add", ".")
    assert git(repo, "show", ":m.safetensors").stdout.startswith('{"version":"git-theta/2",')


# --- track / untrack ---------------------------------------------------------------------------------


def test_track_and_untrack_are_idempotent_and_keep_other_lines(repo: Path) -> None:
    attributes = repo / ".gitattributes"
    original = "*.txt text eol=lf\n# a comment about *.ckpt\n" + attributes.read_text()
    attributes.write_text(original)

    first = in_process(repo, "track", "*.ckpt", "weights/**")
    assert first.stdout == "tracking: *.ckpt\ntracking: weights/**\n"
    tracked = attributes.read_text()
    assert tracked.startswith(original)
    assert tracked.endswith(
        "*.ckpt filter=theta diff=theta merge=theta -text\nweights/** filter=theta diff=theta merge=theta -text\n"
    )
    assert in_process(repo, "track", "*.ckpt").stdout == "already tracked: *.ckpt\n"
    assert attributes.read_text() == tracked
    assert git(repo, "check-attr", "filter", "--", "x.ckpt").stdout == "x.ckpt: filter: theta\n"

    assert in_process(repo, "untrack", "*.ckpt", "weights/**").stdout == "untracked: *.ckpt\nuntracked: weights/**\n"
    assert attributes.read_text() == original
    assert in_process(repo, "untrack", "*.ckpt").stdout == "was not tracked: *.ckpt\n"
    assert attributes.read_text() == original


def test_track_from_a_subdirectory_writes_the_top_level_file(repo: Path) -> None:
    (repo / "sub").mkdir()
    in_process(repo / "sub", "track", "*.gguf")
    assert "*.gguf filter=theta" in (repo / ".gitattributes").read_text()
    assert not (repo / "sub" / ".gitattributes").exists()


# --- ls-files ----------------------------------------------------------------------------------------


def test_ls_files_and_long(repo: Path) -> None:
    (repo / "models").mkdir()
    (repo / "models" / "a.safetensors").write_bytes(
        save({"w": np.arange(6, dtype="<f4").reshape(2, 3), "b": np.zeros(3, dtype="<f4")})
    )
    (repo / "b.safetensors").write_bytes(save({"x": np.ones(4, dtype=np.uint8)}))
    (repo / "notes.txt").write_text("not a model\n")
    git(repo, "add", ".")
    assert in_process(repo, "ls-files").stdout == "b.safetensors\nmodels/a.safetensors\n"

    lines = in_process(repo, "ls-files", "--long").stdout.splitlines()
    assert in_process(repo, "ls-files", "-l").stdout.splitlines() == lines
    meta = json.loads(git(repo, "show", ":models/a.safetensors").stdout)
    # a pack member's bytes are its length; an unpacked link's, its object's size
    stored = sum(link.get("length", link["size"]) for entry in meta["params"].values() for link in entry["stored"])
    assert lines[1] == f"models/a.safetensors\tsafetensors\t2 groups\t{stored} bytes stored"
    assert lines[0].startswith("b.safetensors\tsafetensors\t1 groups\t")


def test_ls_files_in_an_empty_repository(repo: Path) -> None:
    assert in_process(repo, "ls-files").stdout == ""


# --- user errors -------------------------------------------------------------------------------------


def test_fetch_and_push_name_a_revision_that_is_no_commit(repo: Path) -> None:
    one_line_error(in_process(repo, "fetch", "origin", "no-such-branch"), "'no-such-branch' names no commit")
    git(repo, "tag", "-a", "-m", "annotated", "v1")  # tags peel to their commit
    git(repo, "remote", "add", "origin", str(repo))
    one_line_error(
        in_process(repo, "push", "origin", "v1", "HEAD:model.safetensors"), "'HEAD:model.safetensors' names no commit"
    )


def test_local_outside_a_repository(tmp_path: Path) -> None:
    one_line_error(theta(tmp_path, "install", "--local", check=False), "--local needs to run inside a git repository")
    one_line_error(in_process(tmp_path, "uninstall", "--local"), "--local needs to run inside a git repository")


def test_textconv_of_a_missing_file(repo: Path) -> None:
    expected = "textconv: cannot read missing.safetensors: No such file or directory"
    one_line_error(in_process(repo, "textconv", "missing.safetensors"), expected)
    # What diff.theta.textconv runs (a lean launcher of the same command).
    launcher = git(repo, "config", "diff.theta.textconv").stdout.strip()  # git runs it through sh, the file appended
    run = subprocess.run(f"{launcher} missing.safetensors", shell=True, cwd=repo, capture_output=True, text=True)
    one_line_error(run, expected)


@pytest.mark.parametrize("args", [("ls-files",), ("track", "*.bin"), ("fsck",)])
def test_repository_commands_outside_a_repository(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = in_process(tmp_path, *args)
    one_line_error(result, f"not a git repository (or any of the parent directories): .git (in {tmp_path})")


def test_clean_of_a_bad_file_names_it(repo: Path) -> None:
    result = subprocess.run(
        ["git-theta", "clean", "model.safetensors"], cwd=repo, input=b"plain text\n", capture_output=True
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("git-theta: error: model.safetensors: not a checkpoint git-theta can read")
    assert result.stderr.decode().count("\n") == 1 and result.stdout == b""


# --- docs/cli.md matches the parser -----------------------------------------------------------------

SECTION = re.compile(r"^## `git theta ([a-z][a-z0-9-]*)`", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
USAGE = re.compile(r"^usage: git theta .*?(?=\n\n|\n```)", re.MULTILINE | re.DOTALL)


def doc_sections() -> dict[str, str]:
    text = CLI_DOC.read_text(encoding="utf-8")
    starts = [(m.group(1), m.start()) for m in SECTION.finditer(text)]
    ends = [start for _, start in starts[1:]] + [len(text)]
    return {verb: text[start:end] for (verb, start), end in zip(starts, ends)}


def documented_flags(section: str) -> set[str]:
    """Flags named in code spans (`--local`, `-l`, `--arg NAME=VALUE`), not in other commands' spans."""
    flags = set()
    prose = re.sub(r"```.*?```", "", section, flags=re.DOTALL)  # usage blocks are checked on their own
    for span in CODE_SPAN.findall(prose):
        for token in re.split(r"[\s,|]+", span.strip()):
            if re.fullmatch(r"--?[A-Za-z][\w-]*(=\S*)?", token):
                flags.add(token.split("=", 1)[0])
            else:
                break  # only leading flags: `git push --no-verify` names git's flag, not ours
    return flags


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def normalized(text: str) -> str:
    return " ".join(text.split())


def test_every_verb_is_documented() -> None:
    documented = doc_sections()
    missing = sorted(set(verbs()) - set(documented))
    assert not missing, f"docs/cli.md lacks a '## `git theta VERB`' section for: {', '.join(missing)}"
    unknown = sorted(set(documented) - set(verbs()))
    assert not unknown, f"docs/cli.md documents verbs the parser does not have: {', '.join(unknown)}"


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_documented_flags_exist_and_real_flags_are_documented(verb: str) -> None:
    section = doc_sections().get(verb)
    if section is None:
        pytest.fail(f"docs/cli.md has no section for `git theta {verb}`")
    real = parser_flags(verbs()[verb])
    named = documented_flags(section)
    assert named - real == set(), f"docs/cli.md names flags `git theta {verb}` does not have"
    assert {f for f in real if f not in ("-h", "--help")} - named == set(), (
        f"docs/cli.md leaves flags of `git theta {verb}` out"
    )


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_documented_usage_matches_help(verb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    section = doc_sections().get(verb)
    if section is None:
        pytest.fail(f"docs/cli.md has no section for `git theta {verb}`")
    usage = USAGE.search(section)
    assert usage, f"docs/cli.md: the `git theta {verb}` section has no usage line"
    assert normalized(usage.group(0)) == normalized(verbs()[verb].format_usage())


def test_top_level_flags_are_documented() -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    head = text[: SECTION.search(text).start()]  # type: ignore[union-attr]
    assert documented_flags(head) == {"--version", "-h", "--help", "-q", "--quiet"}


def test_every_git_theta_process_collects_cycles_rarely() -> None:
    # What a filter parses (10^5-10^6 entries) stays alive; with Python's default thresholds the collector
    # re-traverses it every 700 new containers. Checked in a fresh interpreter, as git starts one.
    import sys

    from git_theta.main import GC_THRESHOLDS

    for entry in ("from git_theta.main import main; main(['--version'])",
                  "from git_theta.commands.textconv import main; main([])"):  # fmt: skip
        code = f"import gc, sys; {entry}; print(gc.get_threshold(), file=sys.stderr)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.stderr.strip().splitlines()[-1] == str(GC_THRESHOLDS)
