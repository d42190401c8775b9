"""Output buffers for decoded tensors, reused once nothing else holds them.

A checkout decodes every tensor into a fresh buffer, and a fresh buffer of a few MB costs a memset
plus a page fault per 4 KiB (checking out the 1 GB bf16 benchmark file took 60-85k page faults, 22-30k
with the pool). Checkpoints repeat a few shapes, so a buffer whose tensor has been written can hold
the next one of its size.

A buffer is idle when this pool holds its only reference: every reader of a decoded tensor (a
Tensor, a memoryview, a numpy or torch array over it) holds a reference to the bytearray, so no one
can see the bytes it is given next. Only that test, no release call: the writers of every format stay
as they are.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

# A fresh buffer not zeroed first: bytearray(size) zeroes it (~30 us per MB), and its taker overwrites every byte.
_empty: Callable[[int], bytearray] | None
try:
    from git_theta._bytegroup import empty as _empty
except ImportError:  # the extension was not built
    _empty = None

# Below this, malloc reuses freed memory well and a scan of the pool would cost more than it saves.
MIN_BYTES = 1 << 20
# Bytes of buffers the pool may keep, above what a checkout holds at once (smudge.PREFETCH_BYTES waiting,
# two tensors being rebuilt, one being written); a new buffer beyond it is handed out untracked (freed as
# usual), and idle buffers of sizes no longer asked for are forgotten to make room.
MAX_BYTES = 96 << 20
# sys.getrefcount(_buffers[i]) of a buffer only the pool's list holds: the list and getrefcount's argument.
_IDLE_REFCOUNT = 2

_lock = threading.Lock()
_buffers: list[bytearray] = []
_held = 0


def take(size: int) -> bytearray:
    """A buffer of exactly `size` bytes, its contents undefined: the caller overwrites all of them."""
    global _held
    if size < MIN_BYTES:
        return bytearray(size)
    with _lock:
        for index in range(len(_buffers)):  # indexing, not a loop variable: that would be one more reference
            if len(_buffers[index]) == size and sys.getrefcount(_buffers[index]) == _IDLE_REFCOUNT:
                return _buffers[index]
        _drop_idle(size)
        fresh = bytearray(size) if _empty is None else _empty(size)
        if _held + size <= MAX_BYTES:
            _buffers.append(fresh)
            _held += size
        return fresh


def _drop_idle(needed: int) -> None:
    """Forget idle buffers, oldest first, until `needed` more bytes fit under MAX_BYTES (called locked)."""
    global _held
    index = 0
    while _held + needed > MAX_BYTES and index < len(_buffers):
        if sys.getrefcount(_buffers[index]) == _IDLE_REFCOUNT:
            _held -= len(_buffers.pop(index))
        else:
            index += 1


def clear() -> None:
    """Forget every buffer (after a file is written: the next may have other sizes, or be a clean)."""
    global _held
    with _lock:
        _buffers.clear()
        _held = 0
