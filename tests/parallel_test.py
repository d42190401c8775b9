"""The shared thread pools (git_theta/parallel.py): results in order, exceptions to whoever waits, cancellation of
what has not started, at most `size` threads. That a filter imports no concurrent.futures is checked with the
filter's other imports (tests/filter_protocol_test.py)."""

from __future__ import annotations

import threading

import pytest

from git_theta import parallel


def test_results_come_in_submission_order_from_at_most_size_threads() -> None:
    pool = parallel.Pool(3, "test-order")
    seen: set[str] = set()

    def work(n: int) -> int:
        seen.add(threading.current_thread().name)
        return n * n

    assert pool.map(work, range(50)) == [n * n for n in range(50)]
    assert 1 <= len(seen) <= 3 and all(name.startswith("test-order_") for name in seen)
    assert pool.submit(lambda: "alone").result() == "alone"


def test_a_job_s_exception_is_raised_where_its_result_is_asked() -> None:
    pool = parallel.Pool(2, "test-error")

    def fail() -> None:
        raise ValueError("bad tensor")

    job = pool.submit(fail)
    with pytest.raises(ValueError, match="bad tensor"):
        job.result()
    assert isinstance(job.exception(), ValueError)
    assert pool.submit(lambda: 7).exception() is None


def test_cancel_stops_a_queued_job_and_not_a_running_one() -> None:
    pool = parallel.Pool(1, "test-cancel")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocker() -> str:
        started.set()
        release.wait(10)
        ran.append("blocker")
        return "blocker"

    running = pool.submit(blocker)
    started.wait(10)
    queued = pool.submit(lambda: ran.append("queued"))
    assert queued.cancel() and queued.cancelled()
    assert not running.cancel() and not running.cancelled()
    release.set()
    assert running.result() == "blocker"
    with pytest.raises(parallel.CancelledError):
        queued.result()
    pool.submit(lambda: None).result()  # the one worker has passed the cancelled job by now
    assert ran == ["blocker"]


def test_map_cancels_what_has_not_started_when_one_fails() -> None:
    pool = parallel.Pool(1, "test-map")
    ran: list[int] = []

    def work(n: int) -> int:
        ran.append(n)
        if n == 0:
            raise RuntimeError("first fails")
        return n

    with pytest.raises(RuntimeError, match="first fails"):
        pool.map(work, range(200))
    pool.submit(lambda: None).result()
    assert ran[0] == 0 and len(ran) < 200


def test_a_thread_is_added_only_when_none_is_idle() -> None:
    pool = parallel.Pool(4, "test-idle")
    names = {pool.submit(lambda: threading.current_thread().name).result() for _ in range(20)}
    assert len(names) == 1  # one job at a time: the first thread, idle again, takes each
    assert pool._threads == 1
