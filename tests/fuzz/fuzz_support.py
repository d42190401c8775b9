"""What every fuzz target asserts, and the fixed budget that keeps CI time bounded.

Each parser under fuzz (safetensors header and stream reader, metadata, store objects, pkt-line) is called
in-process on bytes hypothesis makes: any bytes, and structured mutations of valid inputs (flip a byte, cut at any
point, change a length field, duplicate a key, nest deeper). For every input the parser must either return a
result or raise a git_theta.errors.ThetaError subclass: never another exception, never allocate more than the input
can justify (tracemalloc peak), never loop (an alarm). Valid inputs must round-trip.

Budget: CI runs FUZZ_EXAMPLES examples per target (derandomized, so a failure reproduces on every machine, and with
no example database, so no .hypothesis directory appears). A longer, random campaign by hand:

    GIT_THETA_FUZZ_EXAMPLES=20000 PYTHONPATH=. python3 -m pytest -q -p no:randomly tests/fuzz

With GIT_THETA_FUZZ_EXAMPLES set the search is randomized (a new seed each run) and a failure is shrunk to a
minimal input; in CI a failure is reported as found (no shrinking), so a broken parser cannot stall the suite.
"""

from __future__ import annotations

import os
import resource
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from git_theta import parallel
from git_theta.errors import ThetaError

_CAMPAIGN = os.environ.get("GIT_THETA_FUZZ_EXAMPLES")
FUZZ_EXAMPLES = int(_CAMPAIGN) if _CAMPAIGN else 100
# CI neither shrinks a failing example nor explains it (both can take minutes): the failure is reported as found,
# with the blob that reproduces it. A campaign runs every phase and reports the minimal failing input.
_CI_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # wall time on a shared 2-core machine is no signal; the alarm below catches real loops
    derandomize=_CAMPAIGN is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
    phases=tuple(Phase) if _CAMPAIGN else _CI_PHASES,
)

# Address space a parse may add before the kernel refuses (MemoryError, reported as a failure): a parser that
# allocates what an input declares must fail the example, not take the machine's memory (and the other helpers').
ADDRESS_SPACE_MARGIN = 256 << 20
# A parse of a few KB that runs this long is looping (or exponential), not slow.
MAX_SECONDS_PER_INPUT = 10
# What the input can justify: a parser builds Python objects for what it reads (JSON values cost ~100 bytes per
# input byte at worst: "[0,0,0" is 2 bytes per list slot of 8 bytes plus growth), plus a fixed allowance.
FIXED_ALLOWANCE = 4 << 20
BYTES_PER_INPUT_BYTE = 128

T = TypeVar("T")


def _start_pool_threads() -> None:
    """Start the shared pool's threads now: a thread started under the address-space limit would fail to start."""
    import time

    for pool in (parallel.pool(), parallel.tensor_pool()):
        list(pool.map(lambda _: time.sleep(0.01), range(parallel.workers() * 2)))


_start_pool_threads()


class _Looping(Exception):
    pass


@contextmanager
def _address_space_limit(extra: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    limit = used + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def ring(signum: int, frame: FrameType | None) -> None:
        raise _Looping(f"still parsing after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def bounded_parse(parse: Callable[[], T], input_bytes: int, *, allowance: int | None = None) -> T | ThetaError:
    """Run `parse`; its result, or the ThetaError it raised. Any other exception fails the example, and so does a
    tracemalloc peak above what `input_bytes` of input can justify (or `allowance` bytes when given)."""
    limit = allowance if allowance is not None else FIXED_ALLOWANCE + BYTES_PER_INPUT_BYTE * input_bytes
    tracemalloc.start()
    try:
        with _alarm(MAX_SECONDS_PER_INPUT), _address_space_limit(limit + ADDRESS_SPACE_MARGIN):
            try:
                outcome: T | ThetaError = parse()
            except ThetaError as error:
                # without its frames: a failing example's buffers must not live on in hypothesis's records
                outcome = error.with_traceback(None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= limit, f"peak {peak} bytes allocated for {input_bytes} bytes of input (limit {limit})"
    return outcome


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with one structural damage: a flipped bit, a cut, a byte set, a run inserted or removed."""
    kind = draw(st.sampled_from(["flip", "cut", "set", "insert", "delete", "as_is"]))
    if kind == "as_is" or not valid:
        return valid
    at = draw(st.integers(0, len(valid) - 1))
    if kind == "flip":
        return valid[:at] + bytes([valid[at] ^ (1 << draw(st.integers(0, 7)))]) + valid[at + 1 :]
    if kind == "cut":
        return valid[:at]
    if kind == "set":
        return valid[:at] + bytes([draw(st.integers(0, 255))]) + valid[at + 1 :]
    if kind == "insert":
        return valid[:at] + draw(st.binary(min_size=1, max_size=16)) + valid[at:]
    return valid[:at] + valid[at + draw(st.integers(1, 16)) :]
