"""A progress bar on stderr for long clean/smudge runs.

Shown only when stderr is a terminal (git passes a filter's stderr through to
the user's terminal) and the checkpoint is at least MIN_BYTES; silent
otherwise, after `set_quiet()` (commands with a --quiet flag call it), and when
`git config theta.progress` is false (read once, only when a bar would be drawn).
clean.py and smudge.py wrap their sink/source with `counting_sink` /
`counting_source`, so formats know nothing about progress.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from git_theta.checkpoints.base import ParamSink, ParamSource
    from git_theta.tensor import Buffer, Tensor

MIN_BYTES = 64 << 20
REDRAW_SECONDS = 0.1
BAR_WIDTH = 24

_quiet = False
_off_in_config: bool | None = None


def set_quiet(quiet: bool = True) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """--quiet was given: informational lines (e.g. the transfer client's "downloading ...") are not shown either."""
    return _quiet


def _turned_off_in_config() -> bool:
    """`git config theta.progress false` (or no/off/0), for every git-theta process, filters included."""
    global _off_in_config
    if _off_in_config is None:
        from git_theta import git

        result = git.run("config", "--type=bool", "--get", "theta.progress", check=False)
        _off_in_config = result.returncode == 0 and result.stdout.strip() == b"false"
    return _off_in_config


class Progress:
    """Counts bytes; draws `label  42% [#####     ] 120.0/286.0 MiB  85.3 MiB/s` when enabled."""

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self.drawn_at = 0.0
        # Git sets GIT_PAGER_IN_USE for its children while a pager shows its output (e.g. `git log -p`
        # smudging versions for textconv); a bar drawn over the pager would garble the screen.
        self.enabled = (
            not _quiet
            and total >= MIN_BYTES
            and _is_terminal(self.stream)
            and not os.environ.get("GIT_PAGER_IN_USE")
            and not _turned_off_in_config()
        )

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self.drawn_at >= REDRAW_SECONDS:
            self.drawn_at = now
            self._draw(now)

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def _draw(self, now: float) -> None:
        share = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(share * BAR_WIDTH)
        rate = self.done / max(now - self.started, 1e-6) / (1 << 20)
        self.stream.write(
            f"\r{self.label}  {share:4.0%} [{'#' * filled}{' ' * (BAR_WIDTH - filled)}] "
            f"{self.done / (1 << 20):.1f}/{self.total / (1 << 20):.1f} MiB  {rate:.1f} MiB/s"
        )
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.done = max(self.done, self.total)  # a file's total includes headers no tensor accounts for
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class counting_sink:  # noqa: N801 - used like a function
    """A ParamSink that advances `bar` by each tensor's size and passes everything on."""

    def __init__(self, sink: ParamSink, bar: Progress) -> None:
        self.sink = sink
        self.bar = bar

    def add(self, name: str, tensor: Tensor) -> None:
        self.sink.add(name, tensor)
        self.bar.advance(tensor.nbytes)

    def put_blob(self, data: bytes) -> dict[str, Any]:
        return self.sink.put_blob(data)


class counting_source:  # noqa: N801 - used like a function
    """A ParamSource that advances `bar` as each tensor is handed to the writer."""

    def __init__(self, source: ParamSource, bar: Progress) -> None:
        self.source = source
        self.bar = bar

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        for tensor in self.source.tensors(names):
            yield tensor
            self.bar.advance(tensor.nbytes)

    def tensor_data(self, names: Sequence[str]) -> Iterator[Buffer]:
        """checkpoints.base.tensor_bytes of the source (batches joined where it joins them), counted."""
        from git_theta.checkpoints.base import tensor_bytes

        for data in tensor_bytes(self.source, names):
            yield data
            self.bar.advance(memoryview(data).nbytes)

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return self.source.get_blob(ref)
