"""pkt-line framing as git's filter protocol uses it (pure; knows nothing of filters).

A packet is a 4-hex-digit length (including those 4 bytes) and a payload;
"0000" is a flush packet that ends a list or a stream.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

from git_theta.errors import ThetaError

MAX_PAYLOAD = 65516
FLUSH = b"0000"


class ProtocolError(ThetaError):
    """The peer broke pkt-line framing or the filter protocol."""


class TruncatedPacket(ProtocolError):
    """The stream ended inside a packet: the peer went away (or was killed) mid-write."""


def read_packet(stream: IO[bytes]) -> bytes | None:
    """The next payload; None for a flush packet. EOFError at a clean end of stream."""
    header = stream.read(4)
    if not header:
        raise EOFError
    if len(header) != 4:
        raise TruncatedPacket(f"truncated pkt-line header {header!r}")
    # int(x, 16) alone would also accept " 00a", "+0a" or "0_0a"
    if not all(c in b"0123456789abcdefABCDEF" for c in header):
        raise ProtocolError(f"invalid pkt-line header {header!r}")
    length = int(header, 16)
    if length == 0:
        return None
    if length < 4 or length - 4 > MAX_PAYLOAD:
        raise ProtocolError(f"invalid pkt-line length {length}")
    payload = stream.read(length - 4)
    if len(payload) != length - 4:
        raise TruncatedPacket("truncated pkt-line payload")
    return payload


def read_text_list(stream: IO[bytes]) -> list[str]:
    """Text packets up to the next flush, without their trailing newlines."""
    lines: list[str] = []
    while True:
        payload = read_packet(stream)
        if payload is None:
            return lines
        lines.append(payload.decode("utf-8", errors="surrogateescape").rstrip("\n"))


def write_packet(stream: IO[bytes], payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"pkt-line payload of {len(payload)} bytes is too long")
    stream.write(b"%04x" % (len(payload) + 4) + payload)


def write_text_list(stream: IO[bytes], lines: list[str]) -> None:
    for line in lines:
        write_packet(stream, (line + "\n").encode("utf-8", errors="surrogateescape"))
    stream.write(FLUSH)
    stream.flush()


class PacketReader(io.RawIOBase):
    """Reads the payloads of data packets up to (and including) the next flush as one stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._buffer = memoryview(b"")
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer and not self.finished:
            payload = read_packet(self._stream)
            if payload is None:
                self.finished = True
            else:
                self._buffer = memoryview(payload)
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def drain(self) -> None:
        """Skip what is left, so the next request starts at a packet boundary."""
        self._buffer = memoryview(b"")
        while not self.finished:
            if read_packet(self._stream) is None:
                self.finished = True


class PacketWriter(io.RawIOBase):
    """Frames bytes into full data packets (MAX_PAYLOAD each, whatever the sizes of the writes)
    and hands them to the stream in batches of about BATCH_BYTES, so a large file costs few
    system calls; `close_stream` sends the last short packet and the flush.

    Packets are framed in one buffer allocated once: a fresh buffer per batch
    would cost a page fault per 4 KiB written (~20k for a 90 MB checkpoint).
    A large write to a stream with a file descriptor (git's pipe) skips that
    buffer: its whole packets go out with os.writev, headers beside slices of
    the caller's memory, because copying a 1 GB checkpoint into the batch
    buffer first costs ~0.15 s of CPU and a Python loop per 64 KB packet."""

    BATCH_BYTES = 1 << 20
    PACKET_BYTES = 4 + MAX_PAYLOAD
    # Packets per writev call: two iovecs each, well under Linux's IOV_MAX of 1024.
    DIRECT_PACKETS = 256

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._batch = bytearray(self.BATCH_BYTES + self.PACKET_BYTES)
        self._used = 0  # bytes of self._batch holding framed packets not yet written
        self._pending = 0  # bytes of the open packet's payload, framed after self._used
        self._fd = _descriptor(stream)
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self._fd is not None and size >= 2 * MAX_PAYLOAD:
            view = self._copy(view, MAX_PAYLOAD - self._pending if self._pending else 0)
            whole = len(view) - len(view) % MAX_PAYLOAD
            if whole:
                self._write_direct(self._fd, view[:whole])
                view = view[whole:]
        self._copy(view, len(view))
        self.written += size
        return size

    def _copy(self, view: memoryview, count: int) -> memoryview:
        """Frame the first `count` bytes of `view` in the batch buffer; returns the rest."""
        while count:
            take = min(MAX_PAYLOAD - self._pending, count)
            start = self._used + 4 + self._pending
            self._batch[start : start + take] = view[:take]
            self._pending += take
            view = view[take:]
            count -= take
            if self._pending == MAX_PAYLOAD:
                self._close_packet()
        return view

    def _write_direct(self, fd: int, view: memoryview) -> None:
        """Whole packets of `view` (a multiple of MAX_PAYLOAD bytes) after what the batch buffer holds."""
        self._stream.flush()  # bytes the stream itself buffered (a status list) go first
        header = b"%04x" % (MAX_PAYLOAD + 4)
        pieces: list[memoryview | bytes] = [memoryview(self._batch)[: self._used]] if self._used else []
        self._used = 0
        for start in range(0, len(view), MAX_PAYLOAD):
            pieces += (header, view[start : start + MAX_PAYLOAD])
            if len(pieces) >= 2 * self.DIRECT_PACKETS:
                _writev_all(fd, pieces)
                pieces = []
        _writev_all(fd, pieces)

    def _close_packet(self) -> None:
        self._batch[self._used : self._used + 4] = b"%04x" % (self._pending + 4)
        self._used += 4 + self._pending
        self._pending = 0
        if self._used >= self.BATCH_BYTES:
            self._send()

    def _send(self) -> None:
        self._stream.write(memoryview(self._batch)[: self._used])
        self._used = 0

    def close_stream(self) -> None:
        if self._pending:
            self._close_packet()
        if self._used:
            self._send()
        self._stream.write(FLUSH)
        self._stream.flush()


def _descriptor(stream: IO[bytes]) -> int | None:
    """The stream's file descriptor, or None for an in-memory stream (tests, BytesIO)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the latter
        return None


def _writev_all(fd: int, pieces: list[memoryview | bytes]) -> None:
    """os.writev until every byte is written (a signal can cut a write to a pipe short)."""
    first = 0
    while first < len(pieces):
        written = os.writev(fd, pieces[first:] if first else pieces)
        while first < len(pieces) and written >= len(pieces[first]):
            written -= len(pieces[first])
            first += 1
        if written:
            pieces[first] = memoryview(pieces[first])[written:]
