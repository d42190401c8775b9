"""git's long-running filter protocol, version 2 (handshake, capabilities, requests, status).

Knows nothing of models: each request goes to a handler that turns the
content stream into output. A failing request answers status=error and the
process carries on with the next file; an environment failure (disk full,
permission denied) is one such failure. When git goes away mid-request (killed,
out of memory: our stdin ends or our stdout is a broken pipe) the process ends
quietly: nobody is left to answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from git_theta import pktline
from git_theta.errors import OUT_OF_MEMORY, ThetaError, describe_os_error
from git_theta.pktline import PacketReader, PacketWriter, ProtocolError, TruncatedPacket

# handler(pathname, content, output): reads the whole content, writes the result.
Handler = Callable[[str, IO[bytes], IO[bytes]], None]


class _GitGone(BaseException):
    """git closed its end of the pipes in the middle of a request. A BaseException, as KeyboardInterrupt is:
    no handler's `except Exception` may turn it into a failure of the file being filtered."""


def handshake(stdin: IO[bytes], stdout: IO[bytes], capabilities: list[str]) -> list[str]:
    """Welcome and version, then capabilities; returns the capabilities both sides have."""
    try:
        welcome = pktline.read_text_list(stdin)
    except EOFError:
        raise ProtocolError(
            "no filter handshake on stdin: `git-theta filter-process` is started by git, not by hand"
        ) from None
    if not welcome or welcome[0] != "git-filter-client" or "version=2" not in welcome[1:]:
        raise ProtocolError(f"unexpected filter handshake {welcome!r}")
    try:
        pktline.write_text_list(stdout, ["git-filter-server", "version=2"])
        # git sent a valid welcome, so a clean end of stdin now means git went away, not a run by hand
        offered = {line.removeprefix("capability=") for line in pktline.read_text_list(stdin)}
    except EOFError:
        raise _GitGone from None
    agreed = [name for name in capabilities if name in offered]
    pktline.write_text_list(stdout, [f"capability={name}" for name in agreed])
    return agreed


def serve(stdin: IO[bytes], stdout: IO[bytes], handlers: Mapping[str, Handler], stderr: IO[str] = sys.stderr) -> None:
    """Answer requests until git closes our stdin (or goes away in the middle of one)."""
    try:
        handshake(stdin, stdout, list(handlers))
        while True:
            try:
                request = pktline.read_text_list(stdin)
            except EOFError:
                return
            fields = dict(line.split("=", 1) for line in request if "=" in line)
            command, path = fields.get("command", ""), fields.get("pathname", "")
            content = _Content(stdin)
            handler = handlers.get(command)
            if handler is None:
                content.drain()
                _send_error(stdout, stderr, f"git-theta: unsupported filter command {command!r}")
                continue
            if "\0" in path:
                # git paths never hold NUL, and no OS call (check-attr, open) accepts one
                content.drain()
                _send_error(stdout, stderr, f"git-theta: {path!r}: pathname contains a NUL byte; git never sends one")
                continue
            _answer(handler, path, content, stdout, stderr)
    except (_GitGone, BrokenPipeError, ConnectionResetError):
        return  # git is gone (our own writes to it and its end of stdin both failed): nothing left to answer


def _answer(handler: Handler, path: str, content: PacketReader, stdout: IO[bytes], stderr: IO[str]) -> None:
    """Run one request, sending status=success and the output, or status=error."""
    output = _Deferred(stdout)
    try:
        handler(path, content, output)  # type: ignore[arg-type]
        content.drain()
    except ThetaError as error:
        content.drain()
        from git_theta import redact  # a message may quote a URL with a token in it

        output.fail(stderr, f"git-theta: {redact.text(str(error))}")
        return
    except OSError as error:
        message = describe_os_error(error)
        content.drain()
        if message is None:
            output.fail(stderr, _internal_error(path))
        else:
            output.fail(stderr, f"git-theta: {path}: {message}")
        return
    except MemoryError:
        content.drain()
        output.fail(stderr, f"git-theta: {path}: {OUT_OF_MEMORY}")
        return
    except Exception:
        content.drain()
        output.fail(stderr, _internal_error(path))
        return
    output.finish()


def _internal_error(path: str) -> str:
    """What a bug while filtering `path` shows: its traceback, redacted (a frame may quote a URL with a token).
    Imported here: traceback, with linecache and tokenize, costs ~5 ms of every filter's start-up."""
    import traceback

    from git_theta import redact

    return redact.text(f"git-theta: internal error while filtering {path}:\n{traceback.format_exc()}")


class _Content(PacketReader):
    """The request's content; the end of stdin in the middle of it means git is gone."""

    def readinto(self, buffer: Any) -> int:
        try:
            return super().readinto(buffer)
        except (EOFError, TruncatedPacket):
            raise _GitGone from None

    def drain(self) -> None:
        try:
            super().drain()
        except (EOFError, TruncatedPacket):
            raise _GitGone from None


class _Deferred:
    """Sends status=success only when the first byte is ready, so an early failure can still say error."""

    def __init__(self, stdout: IO[bytes]) -> None:
        self._stdout = stdout
        self._writer: PacketWriter | None = None

    def write(self, data: bytes) -> int:
        try:
            if self._writer is None:
                pktline.write_text_list(self._stdout, ["status=success"])
                self._writer = PacketWriter(self._stdout)
            return self._writer.write(data)
        except (BrokenPipeError, ConnectionResetError):
            raise _GitGone from None  # not a failure of this file: the handler must not report it as one

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        if self._writer is None:
            pktline.write_text_list(self._stdout, ["status=success"])
            self._writer = PacketWriter(self._stdout)
        self._writer.close_stream()
        pktline.write_text_list(self._stdout, [])  # keep the status

    def fail(self, stderr: IO[str], message: str) -> None:
        print(message, file=stderr, flush=True)
        if self._writer is None:
            pktline.write_text_list(self._stdout, ["status=error"])
        else:
            self._writer.close_stream()
            pktline.write_text_list(self._stdout, ["status=error"])


def _send_error(stdout: IO[bytes], stderr: IO[str], message: str) -> None:
    print(message, file=stderr, flush=True)
    pktline.write_text_list(stdout, ["status=error"])
