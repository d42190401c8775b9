"""One shared thread pool: zstd, BLAKE3 and numpy copies release the GIL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Chunk work (compress, decompress, hash) runs on `pool()` and never submits
# more work; per-tensor jobs that fan out into chunks run on `tensor_pool()`,
# so a tensor job waiting for its chunks can never starve the chunk pool.
_pool: ThreadPoolExecutor | None = None
_tensor_pool: ThreadPoolExecutor | None = None


def workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="theta")
    return _pool


def tensor_pool() -> ThreadPoolExecutor:
    global _tensor_pool
    if _tensor_pool is None:
        _tensor_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="theta-tensor")
    return _tensor_pool


def map_ordered(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """Run `function` over `items` on the pool (inline for a single item)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    return list(pool().map(function, items))


def submit_tensor_job(function: Callable[[], R]) -> Future[R]:
    return tensor_pool().submit(function)
