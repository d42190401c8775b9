"""Upload and download sets of objects: batches of BATCH_OBJECTS, transfers in parallel.

Only what is missing moves: downloads skip objects the local store has, uploads
skip objects the server (or local remote) says it has. Every object lands
verified by sha256 or not at all, and every object is verified before it is
sent (`verified`): a corrupt local object is never uploaded. Objects received
before a failure are kept, so running the command again finishes the job.
`repair` re-downloads local objects that fail verification, replacing each
atomically once its good copy has arrived whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from git_theta import redact
from git_theta.errors import StoreError, ThetaError, TransferError, describe_os_error
from git_theta.repo import Repo
from git_theta.store import ObjectStore
from git_theta.transfer import endpoint, local, ssh_auth
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.lfs_http import CHUNK_BYTES, Cancelled, LfsHttp, ServerDown, Settings, answer_problem

BATCH_OBJECTS = 100
# How long interrupted transfers get to delete their temp files before we exit anyway.
CANCEL_GRACE_SECONDS = 5.0
SHOWN_FAILURES = 10
# OSErrors that are the machine's, not one object's: every other object would meet them too, so the transfer stops at
# the first and says it once (a full disk, a quota, a read-only or forbidden store).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

Job = tuple[str, Callable[[], int]]


@dataclass
class Moved:
    objects: int = 0
    bytes: int = 0


def download(
    repo: Repo, wanted: Mapping[str, int], remote: str | None = None, replace: frozenset[str] = frozenset()
) -> Moved:
    """Fetch the objects of `wanted` (oid -> size) that the local store lacks, and those in `replace` (present but
    corrupt): each of these is downloaded beside the store and then renamed over the damaged file."""
    missing = {oid: size for oid, size in sorted(wanted.items()) if oid in replace or not repo.store.has(oid)}
    if not missing:
        return Moved()
    where = endpoint.resolve(remote or endpoint.default_remote(repo.worktree), repo.worktree)
    _log(f"downloading {len(missing)} object(s), {_size(sum(missing.values()))}, from {where.describe()}")
    cancel = threading.Event()
    settings = Settings.from_config(repo.worktree)
    moved, failures = Moved(), []
    staging = _Staging(repo.store) if replace else None
    try:
        if where.local is not None:
            source = local.remote_store(where.local)
            jobs: list[Job] = []
            for oid in missing:
                if source.has(oid):
                    jobs.append(
                        (
                            oid,
                            _landing(staging, repo.store, oid, partial(local.copy, source), cancel)
                            if oid in replace
                            else partial(local.copy, source, repo.store, oid, cancel),
                        )
                    )
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
                    elif oid in replace:
                        jobs.append((oid, _landing(staging, repo.store, oid, partial(_http_get, http, answer), cancel)))
                    else:
                        jobs.append((oid, partial(http.download, answer, repo.store)))
                _run(jobs, settings.workers, cancel, moved, failures)
    except OSError as error:
        raise _environment_failure(error, "download", "from", where, moved, [repo.store]) from None
    finally:
        if staging is not None:
            staging.remove()
    _finish("download", "from", where, len(missing), moved, failures)
    return moved


def corrupt_objects(repo: Repo, wanted: Mapping[str, int]) -> list[str]:
    """Those of `wanted` that the local store has but that fail verification (sha256 or size)."""
    bad = []
    for oid, size in sorted(wanted.items()):
        if repo.store.has(oid):
            try:
                verified(repo.store, oid, size)
            except StoreError:
                bad.append(oid)
    return bad


def repair(repo: Repo, wanted: Mapping[str, int], remote: str | None = None) -> tuple[list[str], Moved]:
    """Verify the local objects of `wanted`; download the corrupt ones again (and any missing). Returns (the corrupt
    ones found, what moved)."""
    bad = corrupt_objects(repo, wanted)
    for oid in bad:
        _log(f"object {oid} is corrupt; downloading it again")
    return bad, download(repo, wanted, remote, replace=frozenset(bad))


def verified(store: ObjectStore, oid: str, size: int | None = None) -> int:
    """Re-hash a local object before it is sent anywhere; its size in bytes. A corrupt one raises StoreError naming
    it and the fix (it must never reach a remote, which would then keep the bad copy and refuse a good one)."""
    path = store.path(oid)
    hasher = hashlib.sha256()
    total = 0
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                hasher.update(chunk)
                total += len(chunk)
    except FileNotFoundError:
        raise StoreError(f"object {oid} is missing from {store.objects_dir}") from None
    except OSError as error:
        raise StoreError(f"object {oid}: cannot read {path}: {error.strerror}") from None
    if hasher.hexdigest() != oid or (size is not None and size and total != size):
        raise StoreError(
            f"object {oid} is corrupt in the local store ({path}: its sha256 or size does not match); not sent. "
            "Run `git theta fetch --repair` if a remote has a good copy, else `git add` the checkpoint it came from "
            "again"
        )
    return total


class _Staging:
    """A private object store under the store's tmp dir: repaired objects arrive whole here before they replace."""

    def __init__(self, store: ObjectStore) -> None:
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.root = tempfile.mkdtemp(dir=store.tmp_dir, prefix="repair-")
        self.store = ObjectStore(Path(self.root))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _landing(
    staging: _Staging | None,
    store: ObjectStore,
    oid: str,
    fetch: Callable[[ObjectStore, str, threading.Event], int],
    cancel: threading.Event,
) -> Callable[[], int]:
    """A job that fetches `oid` (verified) into `staging`, then renames it over the store's damaged copy."""
    assert staging is not None

    def job() -> int:
        size = fetch(staging.store, oid, cancel)
        final = store.path(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging.store.path(oid), final)
        # The unpushed name (if any) still holds the damaged file, and would bring it back after `git lfs prune`;
        # the remote has a good copy, so the object needs no protection.
        store.pushed([oid])
        return size

    return job


def _http_get(http: LfsHttp, answer: dict[str, Any], target: ObjectStore, oid: str, cancel: threading.Event) -> int:
    return http.download(answer, target)


def upload(repo: Repo, wanted: Mapping[str, int], remote: str, ref: str | None = None) -> Moved:
    """Send the objects of `wanted` that the remote lacks, each verified first; returns what moved."""
    if not wanted:
        return Moved()
    sizes = {oid: _local_size(repo, oid, size) for oid, size in sorted(wanted.items())}
    where = endpoint.resolve(remote, repo.worktree, upload=True)
    cancel = threading.Event()
    settings = Settings.from_config(repo.worktree)
    moved = Moved()
    failures: list[str] = []
    try:
        _upload(repo, sizes, where, settings, cancel, moved, failures, ref)
    except OSError as error:
        raise _environment_failure(error, "upload", "to", where, moved, [repo.store]) from None
    _finish("upload", "to", where, len(sizes), moved, failures)
    # Every one is on the remote now (uploaded, or it had them): `git lfs prune` may delete them, since a checkout
    # fetches them again. After a partial failure all keep their second name, which is only cautious.
    repo.store.pushed(sizes)
    return moved


def _upload(
    repo: Repo,
    sizes: dict[str, int],
    where: Endpoint,
    settings: Settings,
    cancel: threading.Event,
    moved: Moved,
    failures: list[str],
    ref: str | None,
) -> None:
    if where.local is not None:
        target = local.remote_store(where.local)
        jobs: list[Job] = []
        for oid in sizes:
            if target.has(oid):
                continue
            if repo.store.has(oid):
                jobs.append((oid, partial(_verified_copy, repo.store, target, oid, sizes[oid], cancel)))
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
                    jobs.append((oid, partial(_verified_upload, http, answer, repo.store, oid)))
            _run(jobs, settings.workers, cancel, moved, failures)


def _verified_copy(source: ObjectStore, target: ObjectStore, oid: str, size: int, cancel: threading.Event) -> int:
    verified(source, oid, size)
    return local.copy(source, target, oid, cancel)


def _verified_upload(http: LfsHttp, answer: dict[str, Any], store: ObjectStore, oid: str) -> int:
    verified(store, oid, int(answer["size"]))
    return http.upload(answer, store.path(oid))


def _answers(
    http: LfsHttp, operation: str, group: list[tuple[str, int]], failures: list[str], ref: str | None = None
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(oid, the server's answer) for one batch request; an answer without the operation's action comes as
    None, and an error (or no answer at all) goes to `failures` instead."""
    answers = _by_oid(http.batch(operation, group, ref))
    for oid, size in group:
        answer = answers.get(oid, {"error": {"message": "the server did not answer for it"}})
        problem = None if "error" in answer else answer_problem(answer, size, operation)
        if "error" in answer:
            failures.append(f"{oid}: {_error(answer)}")
        elif problem is not None:
            failures.append(f"{oid}: {problem} ({http.shown})")
        else:
            # the size asked for (or, if it was unknown, the one answered) bounds what a download may write
            known = size or answer.get("size") or 0
            yield oid, {**answer, "oid": oid, "size": known} if operation in _actions(answer) else None


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
    return path.stat().st_size if repo.store.has(oid) else recorded  # has: relinks one git lfs prune deleted


def _run(jobs: list[Job], workers: int, cancel: threading.Event, moved: Moved, failures: list[str]) -> None:
    """Run transfer jobs on daemon threads; Ctrl-C stops them and lets them delete their temp files. A server found
    down (ServerDown) stops the rest at once: every remaining job would only wait for it in turn."""
    if not jobs:
        return
    todo: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        todo.put(job)
    done: queue.Queue[tuple[str, int, str | None]] = queue.Queue()
    stop = threading.Event()
    down: list[ServerDown] = []
    environment: list[OSError] = []  # a failure of this machine (ENVIRONMENT_ERRNOS): stops the rest, told once

    def worker() -> None:
        while not cancel.is_set() and not stop.is_set():
            try:
                oid, job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((oid, job(), None))
            except Cancelled:
                return
            except ServerDown as error:
                down.append(error)
                stop.set()
                done.put((oid, 0, str(error)))
            except ThetaError as error:
                done.put((oid, 0, str(error)))
            except OSError as error:
                if error.errno in ENVIRONMENT_ERRNOS:
                    environment.append(error)
                    stop.set()
                done.put((oid, 0, redact.text(describe_os_error(error) or f"{type(error).__name__}: {error}")))
            except Exception as error:  # a bug in one transfer must not hang the others
                done.put((oid, 0, redact.text(f"{type(error).__name__}: {error}")))

    threads = [
        threading.Thread(target=worker, daemon=True, name="theta-transfer") for _ in range(min(workers, len(jobs)))
    ]
    for thread in threads:
        thread.start()
    try:
        received = 0
        while received < len(jobs):
            try:
                oid, size, problem = done.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set() and not any(thread.is_alive() for thread in threads) and done.empty():
                    break  # the jobs never started are abandoned: the server is down
                continue
            received += 1
            if problem is None:
                moved.objects += 1
                moved.bytes += size
            elif not down and not environment:
                failures.append(problem if oid in problem else f"{oid}: {problem}")
    except KeyboardInterrupt:
        cancel.set()
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise
    if down:
        raise down[0]
    if environment:
        raise environment[0]


def _environment_failure(
    error: OSError, verb: str, direction: str, where: Endpoint, moved: Moved, stores: list[ObjectStore]
) -> Exception:
    """One line for a transfer stopped by the machine (disk full, read-only, permission): the store directory (not a
    temp file in it), the system's reason and what to do. Any other OSError is returned as it is (main.py decides)."""
    if error.errno not in ENVIRONMENT_ERRNOS:
        return error
    name = error.filename
    for store in stores:
        if name is not None and Path(os.fsdecode(name)).is_relative_to(store.lfs_dir):
            name = store.lfs_dir
    described = describe_os_error(OSError(error.errno, error.strerror, str(name)) if name is not None else error)
    kept = f"; {moved.objects} object(s) that did arrive are kept" if moved.objects else ""
    return TransferError(f"{described} (stopped {verb}ing objects {direction} {where.describe()}{kept})")


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


def _by_oid(answers: list[Any]) -> dict[str, dict[str, Any]]:
    """Answers by object id; anything that is not an object with a string oid is no answer."""
    return {
        answer["oid"]: answer for answer in answers if isinstance(answer, dict) and isinstance(answer.get("oid"), str)
    }


def _error(answer: Mapping[str, object]) -> str:
    error = answer.get("error")
    if isinstance(error, dict):
        return (
            f"server error {redact.one_line(error.get('code', '?'), 20)}: "
            f"{redact.one_line(error.get('message', 'no message'))}"
        )
    return f"server error: {redact.one_line(error)}"


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count} bytes"


def _log(message: str) -> None:
    from git_theta import progress

    if not progress.is_quiet():
        print(f"git-theta: {message}", file=sys.stderr, flush=True)
