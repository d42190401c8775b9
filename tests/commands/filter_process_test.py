"""git theta filter-process: what it does around each request (the protocol itself: tests/filter_protocol_test.py)."""

from __future__ import annotations

import gc
import io
from typing import IO

import pytest

from git_theta.commands import filter_process


def test_the_cyclic_collector_is_paused_for_a_request_and_runs_again_after() -> None:
    seen: list[bool] = []

    def handler(path: str, content: IO[bytes], out: IO[bytes]) -> None:
        seen.append(gc.isenabled())
        if path == "bad":
            raise ValueError("the handler failed")

    paused = filter_process._uncollected(handler)
    assert gc.isenabled()
    paused("good", io.BytesIO(), io.BytesIO())
    with pytest.raises(ValueError):
        paused("bad", io.BytesIO(), io.BytesIO())
    assert seen == [False, False] and gc.isenabled()
    gc.disable()  # a process that disabled it keeps it disabled
    try:
        paused("good", io.BytesIO(), io.BytesIO())
        assert not gc.isenabled()
    finally:
        gc.enable()
