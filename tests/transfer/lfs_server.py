"""A real Git LFS server for tests: giftless (local storage backend) on 127.0.0.1, in a thread.

giftless answers the batch API and serves basic transfers through its own
"objects/storage" views, handing out pre-signed (JWT) hrefs. A thin WSGI layer in
front of it counts requests and bytes (what moved, measured server-side) and can
inject faults: HTTP 500s, truncated or corrupted downloads, slow downloads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from giftless.app import init_app
from giftless.auth.identity import DefaultIdentity, Permission
from werkzeug.serving import make_server

ORG, REPO = "team", "model"


def _full_access(name: str) -> DefaultIdentity:
    # An id is needed: giftless puts it in its JWT "sub" claim, which PyJWT >= 2.10 requires to be a
    # string (giftless's own allow_anon identities have none, so their pre-signed hrefs are refused).
    identity = DefaultIdentity(name=name, id=name)
    identity.allow(permissions=Permission.all())
    return identity


# giftless keeps its authenticators in a process-wide singleton, initialised by the first app that
# serves a request; so every test server shares this one authenticator, which looks up the rules of
# the server a request came to: None (anyone may read and write) or the one (user, password) allowed.
_AUTH_BY_PORT: dict[int, tuple[str, str] | None] = {}


def authenticator(**_: Any) -> Callable[[Any], DefaultIdentity | None]:
    def authenticate(request: Any) -> DefaultIdentity | None:
        port = int(request.host.rsplit(":", 1)[1])
        wanted = _AUTH_BY_PORT.get(port)
        if wanted is None:
            return _full_access("anonymous")
        auth = request.authorization
        if auth is not None and auth.type == "basic" and (auth.username, auth.password) == wanted:
            return _full_access(wanted[0])
        return None  # giftless answers 401

    return authenticate


@dataclass
class Request:
    method: str
    path: str
    sent: int = 0  # response body bytes
    received: int = 0  # request body bytes
    status: str = ""


@dataclass
class Faults:
    """Faults for download GETs of object storage, consumed one per request."""

    downloads: list[str] = field(default_factory=list)  # "500", "truncate", "corrupt"
    only_oid: str | None = None  # apply `downloads` to this object's GETs only
    batch_500: int = 0
    batch_bad_actions: int = 0  # batch answers whose objects' "actions" is a number, not an object
    slow_seconds_per_chunk: float = 0.0


class LfsServer:
    def __init__(self, root: Path, auth: tuple[str, str] | None = None) -> None:
        self.storage = root / "giftless-storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        app = init_app(
            additional_config={
                "LEGACY_ENDPOINTS": False,
                "AUTH_PROVIDERS": [{"factory": "lfs_server:authenticator", "options": {}}],
                "TRANSFER_ADAPTERS": {"basic": {"options": {"storage_options": {"path": str(self.storage)}}}},
                "PRE_AUTHORIZED_ACTION_PROVIDER": {"options": {"private_key": "a test-only secret, 32 bytes long"}},
            }
        )
        self.requests: list[Request] = []
        self.faults = Faults()
        self._lock = threading.Lock()
        self._app = app
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.port = self._server.server_port
        _AUTH_BY_PORT[self.port] = auth
        # giftless's local storage creates this folder racily under parallel PUTs; have it ready
        (self.storage / ORG / REPO).mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ORG}/{REPO}.git/info/lfs"

    def object_path(self, oid: str) -> Path:
        return self.storage / ORG / REPO / oid

    def oids(self) -> set[str]:
        folder = self.storage / ORG / REPO
        return {path.name for path in folder.iterdir()} if folder.is_dir() else set()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def restart(self) -> None:
        """Serve again on the same port after stop() (the "server is back" half of an outage)."""
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for r in self.requests if r.method == method and path_part in r.path)

    def bytes_sent(self, method: str = "GET", path_part: str = "/objects/storage/") -> int:
        return sum(r.sent for r in self.requests if r.method == method and path_part in r.path)

    # -- the WSGI layer ---------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        record = Request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        record.received = int(environ.get("CONTENT_LENGTH") or 0)
        with self._lock:
            self.requests.append(record)
        is_download = record.method == "GET" and "/objects/storage/" in record.path
        fault = None
        with self._lock:
            targeted = self.faults.only_oid is None or record.path.endswith(self.faults.only_oid)
            if is_download and targeted and self.faults.downloads:
                fault = self.faults.downloads.pop(0)
            elif record.path.endswith("/objects/batch") and self.faults.batch_500:
                self.faults.batch_500 -= 1
                fault = "500"
            elif record.path.endswith("/objects/batch") and self.faults.batch_bad_actions:
                self.faults.batch_bad_actions -= 1
                fault = "bad actions"
        if fault == "bad actions":
            return self._bad_actions(environ, start_response, record)
        if fault == "500":
            record.status = "500"
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "4")])
            return [b"boom"]

        def recording_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record.status = status
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        body = self._app(environ, recording_start)
        return self._body(body, record, fault if is_download else None)

    def _bad_actions(self, environ: dict[str, Any], start_response: Any, record: Request) -> list[bytes]:
        """giftless's batch answer with every object's "actions" replaced by 42 (a server bug to survive)."""
        answered: dict[str, Any] = {}
        body = b"".join(
            self._app(environ, lambda status, headers, exc_info=None: answered.update(status=status, headers=headers))
        )
        doc = json.loads(body)
        for item in doc.get("objects", []):
            item["actions"] = 42
        data = json.dumps(doc).encode()
        record.status = answered["status"]
        headers = [(k, v) for k, v in answered["headers"] if k.lower() != "content-length"]
        start_response(answered["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]

    def _body(self, body: Iterable[bytes], record: Request, fault: str | None) -> Iterator[bytes]:
        try:
            data = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close:
                close()
        if fault == "truncate":
            data = data[: len(data) // 2]
        elif fault == "corrupt" and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        step = 4096 if self.faults.slow_seconds_per_chunk else max(1, len(data))
        for start in range(0, len(data), step):
            if self.faults.slow_seconds_per_chunk:
                time.sleep(self.faults.slow_seconds_per_chunk)
            record.sent += len(data[start : start + step])
            yield data[start : start + step]


@dataclass
class Seen:
    """One request a ScriptedServer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, list[tuple[str, str]], bytes | Iterable[bytes]]


class ScriptedServer:
    """A plain HTTP server (http.server, in a thread) whose every answer a test writes: a hostile or broken LFS
    server, a redirector, or a second host (bind 127.0.0.2) that records what it was sent.

    `handle(seen) -> (status, headers, body)`; the body may be an iterable of chunks (streamed, no Content-Length
    unless given)."""

    def __init__(self, handle: Callable[[Seen], Answer], host: str = "127.0.0.1") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command, self.path, dict(self.headers.items()), self.rfile.read(length) if length else b""
                )
                server.seen.append(seen)
                status, headers, body = handle(seen)
                self.send_response(status)
                names = {name.lower() for name, _ in headers}
                for name, value in headers:
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    if "content-length" not in names:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for chunk in body:
                            self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client stopped reading: that is what a limit does
                    self.close_connection = True

            do_GET = do_POST = do_PUT = _any

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = f"/{ORG}/{REPO}.git/info/lfs") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SilentServer:
    """Accepts TCP connections and never answers (a hung server); counts the connections; stops itself after
    `lifetime` seconds so no test can hang on it."""

    def __init__(self, lifetime: float = 120.0) -> None:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._held: list[Any] = []
        self._deadline = time.monotonic() + lifetime
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ORG}/{REPO}.git/info/lfs"

    def _accept(self) -> None:
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self.connections += 1
            self._held.append(connection)  # kept open, never read or answered
        for connection in self._held:
            connection.close()
        self._socket.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
