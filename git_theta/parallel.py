"""Two shared thread pools: zstd, BLAKE3 and numpy copies release the GIL.

Our own, not concurrent.futures: that package imports logging (with traceback, string and their patterns), ~4 ms
of the start-up of every filter, and git starts one per command. What git-theta asks of a pool is small: submit a
function, wait for its result (or its exception), cancel what has not started, map in order.
"""

from __future__ import annotations

import os
import threading
from _queue import SimpleQueue  # queue.SimpleQueue itself; the queue module adds heapq and more to import
from collections.abc import Callable, Iterable
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PENDING, _RUNNING, _FINISHED, _CANCELLED = range(4)
_states = threading.Lock()  # guards every job's state change: a job starts or is cancelled, never both


class CancelledError(Exception):
    """The result of a job cancelled before it started."""


class Job(Generic[R]):
    """A function's result to come: `result()` waits for it (raising what the function raised), `cancel()` keeps
    it from starting."""

    __slots__ = ("_function", "_done", "_state", "_value", "_error")

    def __init__(self, function: Callable[[], R]) -> None:
        self._function: Callable[[], R] | None = function
        self._done = threading.Event()
        self._state = _PENDING
        self._value: R | None = None
        self._error: BaseException | None = None

    def _run(self, idle: threading.Semaphore) -> None:
        """Run the function (unless cancelled), count the worker `idle`, then wake whoever waits: so a job submitted
        right after the result is in finds the worker idle."""
        with _states:
            if self._state != _PENDING:
                idle.release()
                return  # cancelled while queued
            self._state = _RUNNING
        function, self._function = self._function, None  # dropped once run: the job may outlive what it held
        try:
            self._value = function()  # type: ignore[misc]
        except BaseException as error:  # noqa: BLE001 (handed to whoever waits, as a Future does)
            self._error = error
        with _states:
            self._state = _FINISHED
        idle.release()
        self._done.set()

    def cancel(self) -> bool:
        """Keep the job from starting; False once it has started (it then runs to its end)."""
        with _states:
            if self._state == _PENDING:
                self._state, self._function = _CANCELLED, None
                self._done.set()
            return self._state == _CANCELLED

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def exception(self) -> BaseException | None:
        """What the function raised (None if it returned), once it has finished; CancelledError if cancelled."""
        self._done.wait()
        if self._state == _CANCELLED:
            raise CancelledError()
        return self._error

    def result(self) -> R:
        error = self.exception()
        if error is not None:
            raise error
        return self._value  # type: ignore[return-value]


class Pool:
    """At most `size` daemon threads, running jobs in the order they were submitted; a thread is added only when
    a job comes and none is idle (as concurrent.futures does: each thread keeps its own zstd contexts and scratch
    buffers, so threads started eagerly were +6 MiB of a 100,000-tensor add's peak RSS).

    Daemon threads: an idle worker never holds up the interpreter's exit, and every caller waits for the jobs whose
    results it needs (concurrent.futures joins its workers at exit instead)."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self.name = size, name
        self._queue: SimpleQueue[Job[object]] = SimpleQueue()
        self._threads = 0
        self._starting = threading.Lock()
        self._idle = threading.Semaphore(0)  # one count per job finished: a worker that may be waiting

    def submit(self, function: Callable[[], R]) -> Job[R]:
        job = Job(function)
        self._queue.put(job)  # type: ignore[arg-type]
        if not self._idle.acquire(blocking=False) and self._threads < self.size:
            self._add_thread()
        return job

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """function(item) of each item, in order; the first exception is raised, and jobs not started are
        cancelled."""
        jobs = [self.submit(partial(function, item)) for item in items]
        try:
            return [job.result() for job in jobs]
        finally:
            for job in jobs:
                job.cancel()

    def _add_thread(self) -> None:
        with self._starting:
            if self._threads >= self.size:
                return
            self._threads += 1
            number = self._threads
        threading.Thread(target=self._work, name=f"{self.name}_{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._queue.get()._run(self._idle)


# Chunk work (compress, decompress, hash) runs on `pool()` and never submits
# more work; per-tensor jobs that fan out into chunks run on `tensor_pool()`,
# so a tensor job waiting for its chunks can never starve the chunk pool.
_pool: Pool | None = None
_tensor_pool: Pool | None = None


def workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def pool() -> Pool:
    global _pool
    if _pool is None:
        _pool = Pool(workers(), "theta")
    return _pool


def tensor_pool() -> Pool:
    global _tensor_pool
    if _tensor_pool is None:
        _tensor_pool = Pool(2, "theta-tensor")
    return _tensor_pool


def map_ordered(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """Run `function` over `items` on the pool (inline for a single item)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    return pool().map(function, items)


def submit_tensor_job(function: Callable[[], R]) -> Job[R]:
    return tensor_pool().submit(function)
