"""Upload and download sets of objects: batches of BATCH_OBJECTS, transfers in parallel.

Only what is missing moves: downloads skip objects the local store has, uploads
skip objects the server (or local remote) says it has. Every object lands
verified by sha256 or not at all; objects received before a failure are kept,
so running the command again finishes the job.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from git_theta.errors import ThetaError, TransferError
from git_theta.repo import Repo
from git_theta.transfer import endpoint, local, ssh_auth
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.lfs_http import Cancelled, LfsHttp, Settings

BATCH_OBJECTS = 100
# How long interrupted transfers get to delete their temp files before we exit anyway.
CANCEL_GRACE_SECONDS = 5.0
SHOWN_FAILURES = 10

Job = tuple[str, Callable[[], int]]


@dataclass
class Moved:
    objects: int = 0
    bytes: int = 0


def download(repo: Repo, wanted: Mapping[str, int], remote: str | None = None) -> Moved:
    """Fetch the objects of `wanted` (oid -> size) that the local store lacks."""
    missing = {oid: size for oid, size in sorted(wanted.items()) if not repo.store.has(oid)}
    if not missing:
        return Moved()
    where = endpoint.resolve(remote or endpoint.default_remote(repo.worktree), repo.worktree)
    _log(f"downloading {len(missing)} object(s), {_size(sum(missing.values()))}, from {where.describe()}")
    cancel = threading.Event()
    settings = Settings.from_config(repo.worktree)
    moved, failures = Moved(), []
    if where.local is not None:
        source = local.remote_store(where.local)
        jobs: list[Job] = []
        for oid in missing:
            if source.has(oid):
                jobs.append((oid, partial(local.copy, source, repo.store, oid, cancel)))
            else:
                failures.append(f"{oid}: not in {source.objects_dir}")
        _run(jobs, settings.workers, cancel, moved, failures)
    else:
        http = _http(where, "download", repo, settings, cancel)
        for group in _groups(list(missing.items())):
            jobs = []
            for oid, answer in _answers(http, "download", group, failures):
                if answer is None:
                    failures.append(f"{oid}: the server offered no download action")
                else:
                    jobs.append((oid, partial(http.download, answer, repo.store)))
            _run(jobs, settings.workers, cancel, moved, failures)
    _finish("download", "from", where, len(missing), moved, failures)
    return moved


def upload(repo: Repo, wanted: Mapping[str, int], remote: str, ref: str | None = None) -> Moved:
    """Send the objects of `wanted` that the remote lacks; returns what moved."""
    if not wanted:
        return Moved()
    sizes = {oid: _local_size(repo, oid, size) for oid, size in sorted(wanted.items())}
    where = endpoint.resolve(remote, repo.worktree, upload=True)
    cancel = threading.Event()
    settings = Settings.from_config(repo.worktree)
    moved, failures = Moved(), []
    if where.local is not None:
        target = local.remote_store(where.local)
        jobs: list[Job] = []
        for oid in sizes:
            if target.has(oid):
                continue
            if repo.store.has(oid):
                jobs.append((oid, partial(local.copy, repo.store, target, oid, cancel)))
            else:
                failures.append(f"{oid}: the remote lacks it and so does this repository")
        _run(jobs, settings.workers, cancel, moved, failures)
    else:
        http = _http(where, "upload", repo, settings, cancel)
        for group in _groups(list(sizes.items())):
            jobs = []
            for oid, answer in _answers(http, "upload", group, failures, ref):
                if answer is None:
                    continue  # the server has it
                elif not repo.store.has(oid):
                    failures.append(f"{oid}: the server lacks it and so does this repository")
                else:
                    jobs.append((oid, partial(http.upload, answer, repo.store.path(oid))))
            _run(jobs, settings.workers, cancel, moved, failures)
    _finish("upload", "to", where, len(sizes), moved, failures)
    return moved


def _answers(
    http: LfsHttp, operation: str, group: list[tuple[str, int]], failures: list[str], ref: str | None = None
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(oid, the server's answer) for one batch request; an answer without the operation's action comes as
    None, and an error (or no answer at all) goes to `failures` instead."""
    answers = _by_oid(http.batch(operation, group, ref))
    for oid, _ in group:
        answer = answers.get(oid, {"error": {"message": "the server did not answer for it"}})
        if "error" in answer:
            failures.append(f"{oid}: {_error(answer)}")
        else:
            yield oid, answer if operation in _actions(answer) else None


def _actions(answer: dict[str, Any]) -> dict[str, Any]:
    """The object's actions in a batch answer; anything but an object counts as none (a server's mistake)."""
    actions = answer.get("actions")
    return actions if isinstance(actions, dict) else {}


def _http(where: Endpoint, operation: str, repo: Repo, settings: Settings, cancel: threading.Event) -> LfsHttp:
    """The LFS API client; for SSH remotes, with the URL and headers `git-lfs-authenticate` hands out."""
    assert where.url is not None
    url, headers = where.url, {}
    if where.ssh is not None:
        answer = ssh_auth.authenticate(where.ssh, operation, repo.worktree)
        if answer is not None:
            url, headers = answer.href or url, answer.header
    return LfsHttp(url, repo.worktree, settings, cancel, headers)


def _local_size(repo: Repo, oid: str, recorded: int) -> int:
    path = repo.store.path(oid)
    return path.stat().st_size if path.is_file() else recorded


def _run(jobs: list[Job], workers: int, cancel: threading.Event, moved: Moved, failures: list[str]) -> None:
    """Run transfer jobs on daemon threads; Ctrl-C stops them and lets them delete their temp files."""
    if not jobs:
        return
    todo: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        todo.put(job)
    done: queue.Queue[tuple[str, int, str | None]] = queue.Queue()

    def worker() -> None:
        while not cancel.is_set():
            try:
                oid, job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((oid, job(), None))
            except Cancelled:
                return
            except ThetaError as error:
                done.put((oid, 0, str(error)))
            except Exception as error:  # a bug in one transfer must not hang the others
                done.put((oid, 0, f"{type(error).__name__}: {error}"))

    threads = [threading.Thread(target=worker, daemon=True, name="theta-transfer") for _ in range(min(workers, len(jobs)))]
    for thread in threads:
        thread.start()
    try:
        for _ in jobs:
            oid, size, problem = done.get()
            if problem is None:
                moved.objects += 1
                moved.bytes += size
            else:
                failures.append(problem if oid in problem else f"{oid}: {problem}")
    except KeyboardInterrupt:
        cancel.set()
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise


def _finish(verb: str, direction: str, where: Endpoint, total: int, moved: Moved, failures: list[str]) -> None:
    if moved.objects:
        _log(f"{verb}ed {moved.objects} object(s), {_size(moved.bytes)}, {direction} {where.describe()}")
    if failures:
        shown = "\n  ".join(failures[:SHOWN_FAILURES])
        more = f"\n  ... and {len(failures) - SHOWN_FAILURES} more" if len(failures) > SHOWN_FAILURES else ""
        raise TransferError(
            f"could not {verb} {len(failures)} of {total} object(s) {direction} {where.describe()}:\n  {shown}{more}\n"
            f"objects that did arrive are kept; run the command again to retry"
        )


def _groups(items: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    return [items[start : start + BATCH_OBJECTS] for start in range(0, len(items), BATCH_OBJECTS)]


def _by_oid(answers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(answer.get("oid")): answer for answer in answers if isinstance(answer, dict)}


def _error(answer: Mapping[str, object]) -> str:
    error = answer.get("error")
    if isinstance(error, dict):
        return f"server error {error.get('code', '?')}: {error.get('message', 'no message')}"
    return f"server error: {error}"


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count} bytes"


def _log(message: str) -> None:
    print(f"git-theta: {message}", file=sys.stderr, flush=True)

