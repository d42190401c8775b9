"""Two commands racing on one store: add vs gc, two adds in two worktrees, two pushes to one server, fetch vs gc.

After each: both commands succeeded, `git theta fsck` passes, everything committed checks out byte-identical and
the store (and the server) hold only whole objects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transfer"))
from fault_support import (  # noqa: E402
    MODEL,
    Models,
    a_clone,
    assert_checks_out,
    assert_fsck_ok,
    assert_server_whole,
    assert_status,
    assert_whole,
    assert_worktree_file,
    committed,
    init_repo,
    publisher,
    run,
)
from lfs_server import LfsServer  # noqa: E402

HOURS_AGO = 2 * 3600  # older than gc's default grace (1 hour)


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> None:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, f"{' '.join(process.args)} failed ({process.returncode}):\n{out}\n{err}"  # type: ignore[arg-type]


def gc_while(process: subprocess.Popen[str], repo: Path) -> int:
    """Run `git theta gc` (default grace) again and again in `repo` until `process` ends, then once more."""
    runs = 0
    while process.poll() is None:
        run(["git-theta", "gc"], repo)
        runs += 1
    run(["git-theta", "gc"], repo)
    return runs + 1


def age_store(repo: Path, seconds: int) -> None:
    then = time.time() - seconds
    for path in (repo / ".git" / "lfs" / "objects").glob("??/??/*"):
        os.utime(path, (then, then))


def test_add_while_gc_runs_keeps_every_object_it_reused(tmp_path: Path, models: Models) -> None:
    repo = init_repo(tmp_path / "repo")
    # v1's objects are in the store but referenced by nothing any more, and old: a checkpoint added, then
    # unstaged hours ago (or a dropped stash). Adding v1 again reuses every one of them.
    models.place(repo, 1)
    run(["git", "add", MODEL], repo)
    run(["git", "reset", "-q"], repo)
    age_store(repo, HOURS_AGO)
    run(["touch", MODEL], repo)  # the add has to clean the file again
    tmp = repo / ".git" / "lfs" / "tmp"
    before = tmp.stat().st_mtime_ns
    add = subprocess.Popen(
        ["git", "add", MODEL],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # The moment that loses objects, made deterministic: the add has met (and kept) an old object -- every store
    # write goes through a temp file, so the temp folder changed and is empty again -- and has not written the
    # index yet, which is what makes them reachable. A gc run right then (here: while the add is stopped) must
    # not delete them.
    seen = {before}
    while add.poll() is None:
        seen.add(tmp.stat().st_mtime_ns)
        if len(seen) >= 7 and not any(tmp.iterdir()):  # a few puts done (create + unlink each)
            break
        time.sleep(0.0005)
    os.killpg(add.pid, signal.SIGSTOP)
    try:
        assert add.poll() is None, "the add finished before it could be paused"
        run(["git-theta", "gc"], repo)
    finally:
        os.killpg(add.pid, signal.SIGCONT)
    finish(add)
    gc_while(subprocess.Popen(["true"]), repo)  # and gc after it: now the index references everything
    run(["git", "commit", "-q", "-m", "v1"], repo)
    assert_fsck_ok(repo)
    assert_checks_out(repo, "HEAD", models.sha(1))
    assert_status(repo)
    assert_whole(repo)


def test_two_adds_in_two_worktrees_of_one_store(tmp_path: Path, models: Models) -> None:
    repo = committed(init_repo(tmp_path / "repo"), models, 1)
    other = tmp_path / "other"
    run(["git", "worktree", "add", "-q", "-b", "other", str(other)], repo)
    models.place(repo, 2)
    models.place(other, 3)  # v2 and v3 share a third of their tensors with each other and with v1
    adds = [start(["git", "add", MODEL], repo), start(["git", "add", MODEL], other)]
    for add in adds:
        finish(add)
    run(["git", "commit", "-q", "-m", "v2"], repo)
    run(["git", "commit", "-q", "-m", "v3"], other)
    for worktree in (repo, other):
        assert_fsck_ok(worktree)
        assert_status(worktree)
        assert_whole(worktree)
    assert_checks_out(repo, "main", models.sha(2))
    assert_checks_out(repo, "other", models.sha(3))
    assert_checks_out(other, "v1", models.sha(1))


def warm_up(server: LfsServer) -> None:
    """One batch request before the race: giftless builds its (process-wide) authenticators on the first request
    it serves, unguarded, and two first requests at once get uploads refused with 403 (a test-server artifact)."""
    body = json.dumps(
        {"operation": "download", "transfers": ["basic"], "objects": [{"oid": "0" * 64, "size": 1}]}
    ).encode()
    request = urllib.request.Request(
        f"{server.url}/objects/batch",
        data=body,
        method="POST",
        headers={"Content-Type": "application/vnd.git-lfs+json", "Accept": "application/vnd.git-lfs+json"},
    )
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as error:
        assert error.code == 404, error  # "no such object": served, which is all this is for


def test_two_pushes_of_overlapping_commits_to_one_server(tmp_path: Path, models: Models, lfs_server: LfsServer) -> None:
    origin, alice = publisher(tmp_path, models, lfs_server, (1, 2))
    # carol has alice's commits and objects, and a v3 of her own on top of v1
    run(["git", "clone", "-q", "--no-checkout", str(alice), "carol"], tmp_path)
    carol = tmp_path / "carol"
    run(["git-theta", "install", "--local"], carol)
    run(["cp", "-a", str(alice / ".git" / "lfs"), str(carol / ".git")], tmp_path)
    run(["git", "checkout", "-q", "-b", "carol", "v1"], carol)
    committed(carol, models, 3)
    run(["git", "remote", "add", "shared", str(origin)], carol)
    warm_up(lfs_server)
    pushes = [
        start(["git", "push", "-q", "origin", "main"], alice),
        start(["git", "push", "-q", "shared", "carol"], carol),
    ]
    for push, repo in zip(pushes, (alice, carol)):
        out, err = push.communicate(timeout=120)
        if push.returncode != 0:
            # giftless's local storage writes an upload in place, so while one push's PUT of a shared object is
            # under way the other's verify of it sees a short file ("size does not match", HTTP 422). A server
            # that lands uploads atomically never says that; here the push must fail clearly and a retry complete.
            lines = [line for line in err.splitlines() if line.startswith("git-theta: error:")]
            assert len(lines) == 1 and "could not upload" in lines[0], err
            assert "run the command again" in err and "Traceback" not in err, err
            run(push.args, repo)  # type: ignore[arg-type]
    assert_server_whole(lfs_server)
    bob = a_clone(tmp_path, origin, "bob")
    run(["git-theta", "fetch", "--all"], bob)
    assert_fsck_ok(bob)
    run(["git", "checkout", "-q", "main"], bob)
    assert_worktree_file(bob, models.sha(2))
    assert_checks_out(bob, "origin/carol", models.sha(3))
    assert_checks_out(bob, "main~1", models.sha(1))
    assert_status(bob)
    assert_whole(bob)


def test_fetch_while_gc_runs(tmp_path: Path, models: Models, lfs_server: LfsServer) -> None:
    origin, alice = publisher(tmp_path, models, lfs_server, (1, 2))
    run(["git", "push", "-q", "origin", "main"], alice)
    bob = a_clone(tmp_path, origin, "bob")
    fetch = start(["git-theta", "fetch", "--all"], bob)
    gc_while(fetch, bob)
    finish(fetch)
    assert_fsck_ok(bob)
    assert_whole(bob)
    run(["git", "checkout", "-q", "main"], bob)
    assert_worktree_file(bob, models.sha(2))
    assert_checks_out(bob, "main~1", models.sha(1))
    assert_status(bob)
