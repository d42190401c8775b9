"""Hostile repository content through real git commands: what a collaborator can commit (.gitattributes,
.thetamerge.toml, .lfsconfig, odd blobs at tracked paths) and what can sit at a tracked path in the working tree
(a symlink, a directory, a FIFO, an empty file).

Each case: the command's exit code, one `git-theta:` line naming the file, no traceback, bounded memory and time,
nothing executed (a module a hostile value could name writes a marker if imported), and the repository as it was
(tests/hostile_support.RepoState) or, for a merge, as it was after `git merge --abort`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import GIT_ENV, git
from hostile_support import (
    BoundedResult,
    RepoState,
    assert_nothing_internal,
    assert_refused,
    git_theta_lines,
    run_bounded,
)
from safetensors.numpy import save

MODEL = "model.safetensors"


def checkpoint(seed: int = 0, scale: float = 1.0) -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(
        save({"layer.weight": (rng.standard_normal((4, 3)) * scale).astype("<f4"), "layer.bias": np.ones(3, "<f4")})
    )


def commit_model(repo: Path, data: bytes | None = None, message: str = "model") -> None:
    (repo / MODEL).write_bytes(data if data is not None else checkpoint())
    git(repo, "add", MODEL)
    git(repo, "commit", "-q", "-m", message)


def plant_markers(where: list[Path], names: list[str], marker: Path) -> str:
    """Modules that record it if anything imports them; returns a PYTHONPATH that makes them importable."""
    for directory in where:
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            (directory / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    return os.pathsep.join([*(str(d) for d in where), os.environ.get("PYTHONPATH", "")])


# --- a hostile .gitattributes ----------------------------------------------------------------------------------

HOSTILE_FORMATS = {
    "nonexistent-plugin": "no_such_format",
    "path-like": "../../x",
    "absolute-path": "/tmp/x",
    "dotted-module": "os.system",
    "wrong-format": "pytorch",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FORMATS))
def test_a_committed_theta_format_that_names_no_plugin_is_refused_by_git_add(
    repo: Path, tmp_path: Path, case: str
) -> None:
    value = HOSTILE_FORMATS[case]
    with open(repo / ".gitattributes", "a") as attributes:
        attributes.write(f"{MODEL} theta-format={value}\n")
    git(repo, "commit", "-q", "-am", "a collaborator forces a format")
    (repo / MODEL).write_bytes(checkpoint())
    marker = tmp_path / "imported"
    pythonpath = plant_markers([repo, tmp_path, tmp_path / "mods"], ["no_such_format", "x", "os"], marker)
    (repo / "os.py").unlink()  # never shadow the real os for git's own Python hooks; `os.system` must simply not run
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", MODEL], cwd=repo, env={**os.environ, "PYTHONPATH": pythonpath}, max_seconds=30)
    assert_refused(result, names=MODEL)
    assert not marker.exists(), f"a module named by the attribute was imported: {marker.read_text()}"
    state.assert_unchanged(repo)


@pytest.mark.parametrize(
    "line",
    [f"{MODEL} theta-format={'a' * 200_000}", "x" * 2_000_000 + " filter=theta theta-format=nope"],
    ids=["200kb-theta-format-value", "2mb-pattern"],
)
def test_a_huge_committed_gitattributes_line_is_bounded(repo: Path, line: str) -> None:
    """A line of 200 KB or 2 MB (git warns and skips over-long lines): no hang, no memory blow-up, the add works."""
    with open(repo / ".gitattributes", "a") as attributes:
        attributes.write(line + "\n")
    git(repo, "commit", "-q", "-am", "huge line")
    (repo / MODEL).write_bytes(checkpoint())
    result = run_bounded(["git", "add", MODEL], cwd=repo, max_seconds=30)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)


# --- a hostile .thetamerge.toml --------------------------------------------------------------------------------

HOSTILE_POLICIES = {
    "unknown-strategy": '[default]\nstrategy = "no-such-strategy"\n',
    "path-like-strategy": '[default]\nstrategy = "../../x"\n',
    "not-toml": "[default\nstrategy = average\n",
    "non-numeric-weights": '[default]\nstrategy = "weighted"\nweights = ["a", "b"]\n',
    "negative-weights": '[default]\nstrategy = "weighted"\nweights = [-1.0, -2.0]\n',
    "nan-weights": '[default]\nstrategy = "weighted"\nweights = [nan, 1.0]\n',
    "deeply-nested-array": '[default]\nstrategy = "average"\nx = ' + "[" * 50_000 + "]" * 50_000 + "\n",
    "deeply-nested-table": '[default]\nstrategy = "average"\nx = ' + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
    "huge-weights-list": '[default]\nstrategy = "weighted"\nweights = [' + ", ".join(["1.0"] * 300_000) + "]\n",
    "many-rules": "".join(f'[[rule]]\nparams = "p{i}"\nstrategy = "no-such-{i}"\n' for i in range(20_000)),
    "params-not-a-string": '[[rule]]\nparams = 5\nstrategy = "average"\n',
    "unknown-argument": '[default]\nstrategy = "average"\nrm_rf = "/"\n',
}


@pytest.fixture(scope="module")
def branches_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once (a merge setup costs a dozen git-theta starts): main and `other` both changed layer.weight."""
    root = tmp_path_factory.mktemp("branches")
    env = {**os.environ, **GIT_ENV, "HOME": str(root), "XDG_CONFIG_HOME": str(root / ".config")}
    (root / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    path = root / "repo"
    path.mkdir()

    def run(*args: str) -> None:
        subprocess.run(args, cwd=path, env=env, check=True, capture_output=True)

    run("git", "init", "-q")
    run("git-theta", "install", "--local")
    run("git-theta", "track", "*.safetensors")
    for branch, scale in (("main", 1.0), ("other", 2.0), ("main", 3.0)):
        if scale == 2.0:
            run("git", "checkout", "-q", "-b", "other")
        elif scale == 3.0:
            run("git", "checkout", "-q", "main")
        (path / MODEL).write_bytes(checkpoint(0, scale=scale))
        run("git", "add", ".gitattributes", MODEL)
        run("git", "commit", "-q", "-m", f"{branch} x{scale}")
    return path


def conflicting_branches(template: Path, repo: Path, policy: str) -> None:
    """A copy of the template with the (hostile) policy committed on main, the branch being merged into."""
    shutil.copytree(template, repo, symlinks=True)
    (repo / ".thetamerge.toml").write_text(policy)
    git(repo, "add", ".thetamerge.toml")
    git(repo, "commit", "-q", "-m", "a collaborator's merge policy")


@pytest.mark.parametrize("case", sorted(HOSTILE_POLICIES))
def test_a_hostile_merge_policy_stops_the_merge_naming_the_policy_file(
    branches_template: Path, tmp_path: Path, case: str
) -> None:
    repo = tmp_path / "repo"
    conflicting_branches(branches_template, repo, HOSTILE_POLICIES[case])
    marker = tmp_path / "imported"
    pythonpath = plant_markers([repo, tmp_path], ["x", "no_such_strategy"], marker)
    state = RepoState.capture(repo)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    result = run_bounded(["git", "merge", "--no-edit", "other"], cwd=repo, env=env, max_seconds=40)
    assert result.returncode == 1, result.describe()  # the merge stops: no strategy runs on a bad policy
    assert_nothing_internal(result)
    lines = git_theta_lines(result.stderr)
    assert len(lines) == 1 and ".thetamerge.toml" in lines[0], result.describe()
    assert not marker.exists(), f"a module named by the policy was imported: {marker.read_text()}"
    git(repo, "merge", "--abort")
    state.assert_unchanged(repo)


# --- a hostile .lfsconfig --------------------------------------------------------------------------------------


_HELD_PORTS: list[socket.socket] = []


def closed_port() -> int:
    """A port where a connection is refused for the rest of the run: its socket stays bound but never listens, so a
    server that a test running in parallel starts cannot take the port and answer in its place."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(sock)
    return int(sock.getsockname()[1])


def without_objects(repo: Path, lfsconfig: str) -> None:
    """A clone's state: the model is committed but its objects are not here; the collaborator's .lfsconfig is."""
    commit_model(repo)
    (repo / ".lfsconfig").write_text(lfsconfig)
    git(repo, "add", ".lfsconfig")
    git(repo, "commit", "-q", "-m", "lfsconfig")
    origin = repo.parent / "origin.git"
    git(repo.parent, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    # Not racily clean: else the next `git status` (RepoState.capture) re-cleans the model and stores its
    # objects again, and the fetch then has nothing to do (the test failed about 1 run in 10).
    then = time.time() - 10
    os.utime(repo / MODEL, (then, then))
    git(repo, "update-index", "-q", "--refresh")
    shutil.rmtree(repo / ".git" / "lfs" / "objects")
    shutil.rmtree(repo / ".git" / "theta" / "unpushed")  # else the unpushed objects are linked back, not fetched


SECRET = "s3cr3t-t0ken-value"


def assert_transfer_refused(result: BoundedResult, names: list[str]) -> str:
    """assert_refused for a transfer: its "downloading N object(s) from URL" status line (printed before the
    failure, also with -q) is allowed; exactly one `git-theta: error:` line, naming `names`."""
    assert result.returncode == 1, result.describe()
    assert_nothing_internal(result)
    errors = [line for line in git_theta_lines(result.stderr) if line.startswith("git-theta: error:")]
    assert len(errors) == 1, f"expected one 'git-theta: error:' line, got {len(errors)}\n{result.describe()}"
    for name in names:
        assert name in errors[0], f"the error does not name {name!r}\n{result.describe()}"
    return errors[0]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://alice:{secret}@127.0.0.1:{port}/repo.git/info/lfs", id="userinfo"),
        pytest.param("http://127.0.0.1:{port}/info/lfs?access_token={secret}", id="token-query"),
        pytest.param("https://{secret}@127.0.0.1:{port}/info/lfs", id="token-as-user"),
    ],
)
def test_credentials_in_a_committed_lfs_url_never_appear_in_output(repo: Path, url: str) -> None:
    without_objects(repo, f'[lfs]\n\turl = "{url.format(secret=SECRET, port=closed_port())}"\n')
    state = RepoState.capture(repo)
    result = run_bounded(["git-theta", "fetch"], cwd=repo, max_seconds=40)
    assert SECRET not in result.stdout + result.stderr, f"the credential was printed\n{result.describe()}"
    assert_transfer_refused(result, names=["127.0.0.1"])
    state.assert_unchanged(repo)


def test_a_file_url_pointing_outside_serves_only_verified_objects(repo: Path, tmp_path: Path) -> None:
    """A committed `lfs.url = file:///elsewhere` whose objects are not what their names say: nothing lands."""
    outside = tmp_path / "elsewhere"
    without_objects(repo, f'[lfs]\n\turl = "file://{outside}"\n')
    meta = git(repo, "show", f"HEAD:{MODEL}").stdout
    wanted = sorted(
        {
            word
            for word in meta.replace('"', " ").split()
            if len(word) == 64 and all(c in "0123456789abcdef" for c in word)
        }
    )
    for oid in wanted:
        target = outside / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not the object " + oid.encode())
    state = RepoState.capture(repo)
    result = run_bounded(["git-theta", "-q", "fetch"], cwd=repo, max_seconds=40)
    assert_transfer_refused(result, names=[])
    assert any(oid in result.stderr for oid in wanted), result.describe()
    state.assert_unchanged(repo)


@pytest.mark.parametrize(
    "lfsconfig",
    [
        pytest.param('[lfs]\n\turl = "http://127.0.0.1:{port}/a\\nHost: evil.example"\n', id="newline-in-url"),
        pytest.param('[lfs]\n\turl = "http://127.0.0.1:{port}/a\\rX-Injected: 1"\n', id="cr-in-url"),
        pytest.param('[lfs]\n\turl = "ftp://127.0.0.1:{port}/lfs"\n', id="unsupported-scheme"),
        pytest.param('[lfs]\n\turl = "file:///nonexistent/dir/{port}"\n', id="file-url-to-nothing"),
        pytest.param('[lfs]\n\turl = "http://[::1:{port}/lfs"\n', id="malformed-host"),
        pytest.param('[lfs]\n\turl = "http://127.0.0.1:99999999/lfs"\n', id="port-out-of-range"),
        pytest.param("[lfs\n\turl = broken\n", id="not-git-config"),
    ],
)
def test_a_hostile_lfs_url_is_refused_with_one_line(repo: Path, lfsconfig: str) -> None:
    without_objects(repo, lfsconfig.replace("{port}", str(closed_port())))
    state = RepoState.capture(repo)
    result = run_bounded(["git-theta", "-q", "fetch"], cwd=repo, max_seconds=40)
    forged = [line for line in result.stderr.splitlines() if line.startswith(("Host: evil.example", "X-Injected"))]
    assert not forged, f"a control character of the URL reached the terminal as a line of its own\n{result.describe()}"
    assert_transfer_refused(result, names=[])
    state.assert_unchanged(repo)


# --- odd things at a tracked path ------------------------------------------------------------------------------


def test_a_symlink_at_a_tracked_path_is_added_as_a_link_and_never_followed(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(checkpoint(5))
    before = hashlib.sha256(outside.read_bytes()).hexdigest()
    (repo / MODEL).symlink_to(outside)
    result = run_bounded(["git", "add", MODEL], cwd=repo, max_seconds=30)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    assert git(repo, "ls-files", "-s", MODEL).stdout.startswith("120000 "), "not added as a symlink"
    assert not list((repo / ".git" / "lfs" / "objects").rglob("*")), "the link's target was cleaned into the store"
    git(repo, "commit", "-q", "-m", "link")
    result = run_bounded(["git-theta", "checkout", "--force"], cwd=repo, max_seconds=30)
    assert result.returncode in (0, 1), result.describe()
    assert_nothing_internal(result)
    assert hashlib.sha256(outside.read_bytes()).hexdigest() == before, "git theta checkout wrote through the symlink"


def test_git_theta_checkout_never_writes_through_a_symlink_that_replaced_a_checkpoint(
    repo: Path, tmp_path: Path
) -> None:
    """The index holds metadata; in the working tree a symlink to a file outside now stands at that path."""
    commit_model(repo)
    metadata_text = git(repo, "show", f":{MODEL}").stdout
    outside = tmp_path / "victim.txt"
    outside.write_text(metadata_text)  # looks like metadata, so checkout would take it for an unsmudged file
    (repo / MODEL).unlink()
    (repo / MODEL).symlink_to(outside)
    result = run_bounded(["git-theta", "checkout", MODEL], cwd=repo, max_seconds=30)
    assert result.returncode in (0, 1), result.describe()
    assert_nothing_internal(result)
    assert outside.read_text() == metadata_text, "git theta checkout wrote through the symlink to a file outside"


def test_a_directory_at_a_tracked_path_is_refused_by_git_theta_checkout(repo: Path) -> None:
    commit_model(repo)
    (repo / MODEL).unlink()
    (repo / MODEL).mkdir()
    (repo / MODEL / "keep.txt").write_text("mine")
    state = RepoState.capture(repo)
    result = run_bounded(["git-theta", "checkout", "--force", MODEL], cwd=repo, max_seconds=30)
    assert_refused(result, names=MODEL)
    state.assert_unchanged(repo)


def test_a_directory_given_to_git_theta_add_adds_its_files_as_git_add_does(repo: Path) -> None:
    """A directory named like a checkpoint: its files are not checkpoints (the pattern matches the directory)."""
    (repo / MODEL).mkdir()
    (repo / MODEL / "keep.txt").write_text("mine")
    result = run_bounded(["git-theta", "add", MODEL], cwd=repo, max_seconds=30)
    assert result.returncode == 0, result.describe()
    assert_nothing_internal(result)
    assert git(repo, "show", f":{MODEL}/keep.txt").stdout == "mine"
    assert not list((repo / ".git" / "lfs" / "objects").rglob("*")), "a plain file went to the store"


@pytest.mark.parametrize(
    "command",
    [
        ["git", "add", MODEL],
        ["git-theta", "add", MODEL],
        ["git-theta", "checkout", MODEL],
        ["git-theta", "checkout", "--force", MODEL],
        ["git", "status", "--porcelain"],
    ],
)
def test_a_fifo_at_a_tracked_path_never_hangs(repo: Path, command: list[str]) -> None:
    commit_model(repo)
    (repo / MODEL).unlink()
    os.mkfifo(repo / MODEL)
    result = run_bounded(command, cwd=repo, max_seconds=10)
    assert_nothing_internal(result)
    if result.returncode != 0:
        assert len(git_theta_lines(result.stderr)) <= 1, result.describe()
    assert (repo / MODEL).is_fifo() or command[1] == "checkout", (
        "the FIFO was replaced by a command that must not write"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["git-theta", "textconv", MODEL],
        ["git-theta", "add", "--update-type", "sparse", "--update-data", "UPDATE", MODEL],
    ],
    ids=["textconv", "add-update-type"],
)
def test_a_fifo_at_a_tracked_path_is_refused_by_commands_that_read_it(
    repo: Path, tmp_path: Path, command: list[str]
) -> None:
    """These commands must read the file at the path: one line naming it, never a blocking open."""
    commit_model(repo)
    update = tmp_path / "u.safetensors"
    update.write_bytes(
        bytes(save({"layer.weight.sparse_indices": np.array([0]), "layer.weight.sparse_values": np.zeros(1, "<f4")}))
    )
    (repo / MODEL).unlink()
    os.mkfifo(repo / MODEL)
    state = RepoState.capture(repo)
    result = run_bounded([str(update) if arg == "UPDATE" else arg for arg in command], cwd=repo, max_seconds=20)
    assert_refused(result, names=MODEL)
    assert "FIFO" in result.stderr, result.describe()
    state.assert_unchanged(repo)


def test_a_fifo_given_as_update_data_is_refused(repo: Path, tmp_path: Path) -> None:
    commit_model(repo)
    update = tmp_path / "u.safetensors"
    os.mkfifo(update)
    state = RepoState.capture(repo)
    result = run_bounded(
        ["git-theta", "add", "--update-type", "sparse", "--update-data", str(update), MODEL], cwd=repo, max_seconds=20
    )
    assert_refused(result, names="u.safetensors")
    state.assert_unchanged(repo)


def test_an_empty_file_at_a_tracked_path_round_trips_or_is_refused(repo: Path) -> None:
    (repo / "empty.safetensors").write_bytes(b"")
    state = RepoState.capture(repo)
    result = run_bounded(["git", "add", "empty.safetensors"], cwd=repo, max_seconds=30)
    if result.returncode != 0:
        assert_refused(result, names="empty.safetensors")
        state.assert_unchanged(repo)
        return
    assert_nothing_internal(result)
    git(repo, "commit", "-q", "-m", "empty")
    (repo / "empty.safetensors").unlink()
    git(repo, "checkout", "--", "empty.safetensors")
    assert (repo / "empty.safetensors").read_bytes() == b""


ODD_BLOBS = {
    "zero-bytes": b"",
    "lfs-pointer": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 1234\n",
    "metadata-prefix-only": b'{"version":"git-theta/',
    "metadata-of-a-newer-version": b'{"version":"git-theta/9","format":"safetensors","file":{},"params":{}}\n',
}


def commit_blob(repo: Path, data: bytes) -> None:
    """What a collaborator without git-theta (or with filters off) commits at a tracked path: these exact bytes."""
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--no-filters", "--stdin"],
            cwd=repo,
            input=data,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{MODEL}")
    git(repo, "commit", "-q", "-m", "odd blob")


@pytest.mark.parametrize("case", sorted(ODD_BLOBS))
@pytest.mark.parametrize(
    "command", [["git-theta", "fsck"], ["git-theta", "checkout", "--force"], ["git", "diff", "HEAD~1", "HEAD"]]
)
def test_an_odd_committed_blob_at_a_tracked_path_gives_one_line_or_works(
    repo: Path, case: str, command: list[str]
) -> None:
    commit_blob(repo, ODD_BLOBS[case])
    result = run_bounded(command, cwd=repo, max_seconds=30)
    assert_nothing_internal(result)
    if result.returncode != 0:
        assert_refused(result, names=MODEL)


@pytest.mark.parametrize("case", sorted(ODD_BLOBS))
def test_a_clone_with_an_odd_committed_blob_checks_out_or_names_the_file(repo: Path, tmp_path: Path, case: str) -> None:
    commit_blob(repo, ODD_BLOBS[case])
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-checkout", str(repo), str(clone))
    subprocess.run(["git-theta", "install", "--local"], cwd=clone, check=True, capture_output=True)
    result = run_bounded(["git", "checkout", "main", "--", "."], cwd=clone, max_seconds=30)
    assert_nothing_internal(result)
    if result.returncode != 0 and case == "lfs-pointer":
        # a git-lfs pointer (a path switched from git-lfs) names an object: fetched from the remote, and when it is
        # not there either, refused in one line naming the file and the object (after the "downloading" notice)
        errors = [
            line for line in result.stderr.splitlines() if line.startswith("git-theta: ") and "downloading" not in line
        ]
        assert len(errors) == 1 and MODEL in errors[0] and "ab" * 32 in errors[0], result.stderr
    elif result.returncode != 0:
        assert_refused(result, names=MODEL)
    elif not ODD_BLOBS[case].startswith(b'{"version":"git-theta/'):
        assert (clone / MODEL).read_bytes() == ODD_BLOBS[case], "non-metadata content did not pass through"
