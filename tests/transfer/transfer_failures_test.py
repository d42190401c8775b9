"""Failures against a real LFS server: each gives a clear message, leaves no partial object, and a retry completes."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import git, theta
from lfs_server import LfsServer
from remote_support import Team, leftover_temp_files, local_objects, write_model

MODEL = "model.safetensors"


def bare_clone(team: Team, name: str = "bob") -> Path:
    """A clone that has the commits but no objects yet."""
    return team.clone(name, "--no-checkout")


def test_transient_errors_are_retried(team: Team) -> None:
    bob = bare_clone(team)
    team.server.reset_counts()
    team.server.faults.batch_500 = 1
    team.server.faults.downloads = ["500", "truncate", "corrupt"]
    theta(bob, "fetch")
    assert local_objects(bob) == local_objects(team.alice)
    assert team.server.count("POST", "/objects/batch") == 2
    assert team.server.count("GET", "/objects/storage/") == len(local_objects(team.alice)) + 3


def test_a_download_that_keeps_failing_lands_nothing_then_a_retry_completes(team: Team) -> None:
    victim = sorted(team.server.oids())[0]
    team.server.faults.only_oid = victim
    for fault, says in [("truncate", "sha256"), ("corrupt", "sha256"), ("500", "HTTP 500")]:
        bob = bare_clone(team, f"bob-{fault}")
        team.server.faults.downloads = [fault] * 3  # every attempt (lfs.transfer.maxretries = 2)
        result = theta(bob, "fetch", check=False)
        assert result.returncode == 1
        assert (
            "could not download 1 of" in result.stderr
            and says in result.stderr
            and "run the command again" in result.stderr
        )
        assert f"object {victim}" in result.stderr
        assert local_objects(bob) == local_objects(team.alice) - {victim}
        assert leftover_temp_files(bob) == []
        theta(bob, "fetch")
        assert local_objects(bob) == local_objects(team.alice)
    assert theta(bob, "fsck").returncode == 0


def test_a_404_for_one_object_names_it_and_the_rest_arrive(team: Team) -> None:
    bob = bare_clone(team)
    lost = sorted(team.server.oids())[0]
    shutil.move(team.server.object_path(lost), team.root / "lost")
    result = theta(bob, "fetch", check=False)
    assert result.returncode == 1
    assert f"{lost}: server error 404" in result.stderr
    assert local_objects(bob) == local_objects(team.alice) - {lost}
    shutil.move(team.root / "lost", team.server.object_path(lost))
    theta(bob, "fetch")
    assert local_objects(bob) == local_objects(team.alice)


def test_a_batch_answer_with_malformed_actions_is_a_clear_failure(team: Team) -> None:
    bob = bare_clone(team)
    team.server.faults.batch_bad_actions = 1
    result = theta(bob, "fetch", check=False)
    assert result.returncode == 1, result.stderr
    assert "the server offered no download action" in result.stderr and "internal error" not in result.stderr
    theta(bob, "fetch")
    assert local_objects(bob) == local_objects(team.alice)


def test_server_down_during_clone_then_back(team: Team) -> None:
    team.server.stop()
    result = git(team.root, "clone", "-q", str(team.origin), "bob", check=False)
    assert result.returncode != 0
    assert (
        "cannot reach" in result.stderr
        and "Connection refused" in result.stderr
        and "gave up after 3 attempt(s)" in result.stderr
    )
    bob = team.root / "bob"
    assert local_objects(bob) == set() and leftover_temp_files(bob) == []
    team.server.restart()
    git(bob, "restore", "--source=HEAD", ":/")  # what git suggests after a failed checkout
    assert (bob / MODEL).read_bytes() == (team.alice / MODEL).read_bytes()


def test_ctrl_c_mid_transfer_leaves_no_partial_object(team: Team) -> None:
    bob = bare_clone(team)
    team.server.faults.slow_seconds_per_chunk = 0.3  # each object takes ~1 s to arrive
    team.server.reset_counts()
    process = subprocess.Popen(
        ["git-theta", "fetch"], cwd=bob, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while not any(r.sent and r.method == "GET" for r in team.server.requests) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    for path in (bob / ".git" / "lfs" / "objects").glob("??/??/*"):  # whatever landed is whole
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert leftover_temp_files(bob) == []
    assert len(local_objects(bob)) < len(local_objects(team.alice))
    team.server.faults.slow_seconds_per_chunk = 0.0
    theta(bob, "fetch")
    assert local_objects(bob) == local_objects(team.alice)


def test_credentials_come_from_git_credential_helpers(team: Team, locked_server: LfsServer) -> None:
    alice = team.alice
    git(alice, "config", "lfs.url", locked_server.url)  # git config wins over the committed .lfsconfig
    result = theta(alice, "push", "--all", check=False)
    assert result.returncode == 1 and "asks for credentials and none are available" in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("git-theta: error:")]
    assert len(error) == 1 and error[0].endswith("terminal prompts disabled"), result.stderr  # git's reason, one line
    assert "exit code:" not in result.stderr and "command failed" not in result.stderr, result.stderr
    store = team.root / "credentials"
    host = f"127.0.0.1:{locked_server.port}"
    store.write_text(f"http://alice:wrong@{host}\n")
    git(alice, "config", "credential.helper", f"store --file {store}")
    result = theta(alice, "push", "--all", check=False)
    assert result.returncode == 1 and "refused access for user 'alice' (HTTP 401" in result.stderr
    assert store.read_text() == ""  # rejected credentials are erased from the helper
    store.write_text(f"http://alice:s3cret@{host}\n")
    theta(alice, "push", "--all")
    assert locked_server.oids() == local_objects(alice)
    assert "alice:s3cret@127.0.0.1" in store.read_text()  # approved (the store helper writes the port as %3a)


def test_push_with_the_server_down_is_refused_then_goes_through(team: Team) -> None:
    write_model(team.alice / MODEL, changed={2}, version=2)
    git(team.alice, "commit", "-q", "-am", "v2")
    team.server.stop()
    result = git(team.alice, "push", "origin", "main", check=False)
    assert result.returncode != 0 and "cannot reach" in result.stderr and "failed to push" in result.stderr
    assert git(team.origin, "rev-parse", "main").stdout != git(team.alice, "rev-parse", "main").stdout  # ref not moved
    team.server.restart()
    git(team.alice, "push", "-q", "origin", "main")
    assert local_objects(team.alice) <= team.server.oids()
