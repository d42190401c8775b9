"""The Git LFS batch API and the "basic" transfer adapter, over urllib.

Spec: git-lfs docs/api/batch.md and basic-transfers.md. One POST to
<endpoint>/objects/batch per group of objects says which exist and where to
PUT/GET them; transfers then go to the returned hrefs with the returned headers.
Transient failures (connection refused/reset, timeouts, HTTP 429 and 5xx,
truncated or corrupt downloads) are retried with exponential backoff; a 401 on
the batch request asks git's credential helpers once, then gives up clearly.

The server is not trusted (docs/security.md): its answers are read up to a limit,
checked for shape before use (`answer_problem`), redirects are followed by hand
(at most MAX_REDIRECTS, http(s) only, credentials never sent to another origin),
and a server that stops answering is said so after WAIT_NOTICE_SECONDS and, once
it is given up on, not tried again by this process (`ServerDown`).
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

from git_theta import git, redact
from git_theta.errors import StoreError, TransferError
from git_theta.store import ObjectStore
from git_theta.transfer import credentials
from git_theta.transfer.credentials import Credential

LFS_JSON = "application/vnd.git-lfs+json"
CHUNK_BYTES = 1 << 20
USER_AGENT = "git-theta (git-lfs protocol)"

# Limits on what a server may send (docs/remotes.md, "An untrusted server"). A batch answer for BATCH_OBJECTS (100)
# objects with pre-signed hrefs and headers is well under 1 MiB; 16 MiB leaves room for verbose servers.
MAX_JSON_BYTES = 16 << 20
# Of an error answer (4xx/5xx body) only a message is shown; the rest is not read.
MAX_ERROR_BODY_BYTES = 64 << 10
# git-lfs follows at most 3 redirects as well.
MAX_REDIRECTS = 3
# After this long without a byte from the server, say once what we are waiting for.
WAIT_NOTICE_SECONDS = 5.0

REDIRECT_CODES = (301, 302, 303, 307, 308)
# The only headers that follow a redirect to another origin (scheme, host, port): no credentials, no action headers.
CROSS_ORIGIN_HEADERS = frozenset({"user-agent", "accept", "content-type", "content-length"})
HEADER_NAME = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # \Z: `$` would let "Name\n" through

R = TypeVar("R")


class Cancelled(BaseException):
    """The user interrupted the transfer; a BaseException so cleanup handlers see it but retries do not."""


class ServerDown(TransferError):
    """A server that did not answer (refused, unreachable, timed out) through every retry: the whole transfer stops,
    and later transfers to it in this process (the next checkpoint of a clone) fail at once."""


class Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's hint in seconds; `unreachable` for no answer at all."""

    def __init__(self, message: str, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


@dataclass(frozen=True)
class Settings:
    """git-lfs's own config keys, so one setting serves both tools. A timeout of 0 means none."""

    retries: int = 4
    max_delay: float = 10.0
    workers: int = 8
    timeout: float = 60.0  # lfs.activitytimeout: a connection silent this long counts as failed
    dial_timeout: float = 30.0  # lfs.dialtimeout: connecting (TCP and TLS) may take this long

    @classmethod
    def from_config(cls, cwd: Path) -> Settings:
        def number(key: str, default: float) -> float:
            value = git.config_get(key, cwd=cwd)
            try:
                result = float(value) if value else default
            except ValueError:
                raise TransferError(f"git config {key} = {value!r} is not a number") from None
            if not result >= 0 or result == float("inf"):
                raise TransferError(f"git config {key} = {value!r} must be a number >= 0")
            return result

        return cls(
            retries=max(0, int(number("lfs.transfer.maxretries", cls.retries))),
            max_delay=number("lfs.transfer.maxretrydelay", cls.max_delay),
            workers=max(1, int(number("lfs.concurrenttransfers", cls.workers))),
            timeout=number("lfs.activitytimeout", cls.timeout),
            dial_timeout=number("lfs.dialtimeout", cls.dial_timeout),
        )


# Origins (scheme, host, port) given up on by this process, with why; see ServerDown.
_DOWN: dict[tuple[str, str, int | None], str] = {}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def answer_problem(answer: dict[str, Any], size: int, operation: str) -> str | None:
    """What is wrong with a server's answer for one object of `size` bytes (0: unknown) (None: usable). Checked
    before any of it is used: a size other than the one asked for, an href that is not http(s), headers that are not
    strings or would inject lines into the request."""
    answered = answer.get("size")
    # size 0 is "not recorded" (a file-section object of old metadata): any whole number may answer it
    if answered is not None and (type(answered) is not int or answered < 0 or (size and answered != size)):
        return f"the server answered for size {redact.one_line(answered, 40)}, not the {size} bytes asked for"
    actions = answer.get("actions")
    if not isinstance(actions, dict):
        return None  # no actions: the caller decides what that means
    for name in (operation, "verify"):
        if name in actions:
            problem = _action_problem(actions[name])
            if problem:
                return f"the server's {name} action {problem}"
    return None


def _action_problem(action: object) -> str | None:
    if not isinstance(action, dict):
        return "is not an object"
    href = action.get("href")
    if (
        not isinstance(href, str)
        or urlsplit(href).scheme.lower() not in ("http", "https")
        or not urlsplit(href).hostname
    ):
        return f"has href {redact.one_line(redact.url(str(href)), 120)}, not an http(s) URL"
    if any(ch in href for ch in "\r\n\x00 "):
        return "has an href with spaces or control characters"
    header = action.get("header") or {}
    if not isinstance(header, dict):
        return "has headers that are not an object"
    for key, value in header.items():
        if not isinstance(value, str) or not HEADER_NAME.match(key) or any(ch in value for ch in "\r\n\x00"):
            return f"has an invalid header {redact.one_line(key, 60)!r} (not a string, or with line breaks)"
    return None


class LfsHttp:
    """One LFS server: batch requests and basic transfers, safe to use from several threads."""

    def __init__(
        self,
        url: str,
        cwd: Path,
        settings: Settings,
        cancel: threading.Event,
        api_headers: dict[str, str] | None = None,
    ) -> None:
        self.url = _strip_credentials(url).rstrip("/")
        self.shown = redact.url(self.url)  # the URL as messages show it
        self.api_headers = api_headers or {}  # from git-lfs-authenticate, for batch requests only
        self.cwd = cwd
        self.settings = settings
        self.cancel = cancel
        self.credential: Credential | None = credentials.from_url(url)
        self._credential_from_helper = False
        # Credentials the helper gave for other origins that redirects led to (never the API host's own).
        self._elsewhere: dict[tuple[str, str, int | None], Credential] = {}
        self._opener = urllib.request.build_opener(
            _NoRedirects(), _Handler(settings.dial_timeout), _SecureHandler(settings.dial_timeout)
        )
        self._lock = threading.Lock()
        self._busy = 0
        self._last_activity = time.monotonic()
        self._waiting_for = ""
        self._watchdog: threading.Thread | None = None
        self._said_waiting = False

    # -- batch API -------------------------------------------------------

    def batch(self, operation: str, objects: list[tuple[str, int]], ref: str | None = None) -> list[dict[str, Any]]:
        """The server's answer for each object (with "actions" or "error")."""
        request: dict[str, Any] = {
            "operation": operation,
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": size} for oid, size in objects],
            "hash_algo": "sha256",
        }
        if ref:
            request["ref"] = {"name": ref}
        body = json.dumps(request).encode()
        url = f"{self.url}/objects/batch"
        while True:
            status, payload = self._retrying(
                f"LFS batch request to {self.shown}", url, lambda: self._post_json(url, body, self.api_headers)
            )
            if status in (401, 403):
                self._on_auth_failure(status, payload)
                continue
            if status == 404:
                raise TransferError(
                    f"LFS server {self.shown} answered HTTP 404 to the {operation} batch request "
                    f"({_message(payload)}): it has none of the {len(objects)} object(s) asked for, or the repository "
                    "does not exist there or is not visible to you"
                )
            if status != 200:
                raise TransferError(
                    f"LFS server {self.shown} refused the {operation} batch request: HTTP {status}: {_message(payload)}"
                )
            if payload is None:
                raise TransferError(f"LFS server {self.shown} sent a batch answer that is not JSON; is lfs.url right?")
            if self._credential_from_helper:
                credentials.approve(self.credential, self.cwd)  # type: ignore[arg-type]
                self._credential_from_helper = False
            if payload.get("transfer", "basic") != "basic":
                raise TransferError(
                    f"LFS server {self.shown} chose transfer {redact.one_line(payload.get('transfer'), 60)!r}; "
                    "git-theta speaks only 'basic'"
                )
            answers = payload.get("objects")
            if not isinstance(answers, list):
                raise TransferError(f"LFS server {self.shown} sent a batch answer without an objects list")
            return answers

    def _on_auth_failure(self, status: int, payload: dict[str, Any] | None) -> None:
        if self.credential is not None or status == 403:
            if self._credential_from_helper:
                credentials.reject(self.credential, self.cwd)  # type: ignore[arg-type]
            who = f" for user {redact.one_line(self.credential.username, 80)!r}" if self.credential else ""
            raise TransferError(
                f"LFS server {self.shown} refused access{who} (HTTP {status}: {_message(payload)}); check your "
                "credentials"
            )
        self.credential = credentials.fill(self.url, self.cwd)
        self._credential_from_helper = True

    def _post_json(
        self, url: str, body: bytes, extra: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any] | None]:
        """(status, the JSON object answered; {} for another JSON value, None for no JSON). An error answer's body
        is read up to MAX_ERROR_BODY_BYTES only; a 2xx answer larger than MAX_JSON_BYTES is refused."""
        headers = {"Accept": LFS_JSON, "Content-Type": LFS_JSON, **self._auth_for(url, extra or {})}
        with self._open("POST", url, headers, lambda: body) as response:
            ok = 200 <= response.status < 300
            raw = _read_limited(response, MAX_JSON_BYTES if ok else MAX_ERROR_BODY_BYTES, self.shown, refuse=ok)
        try:
            payload = json.loads(raw) if raw else {}
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's parser goes
            return response.status, None if ok else {"message": raw[:200].decode(errors="replace")}
        return response.status, payload if isinstance(payload, dict) else {}

    # -- basic transfers -------------------------------------------------

    def download(self, answer: dict[str, Any], store: ObjectStore) -> int:
        """GET the object into the store, verified by sha256; returns bytes received. The answer passed
        answer_problem."""
        oid, action = answer["oid"], answer["actions"]["download"]
        size = answer.get("size")
        href = action["href"]
        headers = self._auth_for(href, action.get("header") or {})

        def attempt() -> int:
            with self._open("GET", href, headers) as response:
                if response.status != 200:
                    raise TransferError(f"object {oid}: HTTP {response.status} from {redact.url(href)}")
                try:
                    return store.put(
                        self._chunks(response, oid, size if isinstance(size, int) and size > 0 else None), expect=oid
                    )[1]
                except StoreError as error:
                    raise Transient(str(error)) from None

        return self._retrying(f"downloading object {oid}", href, attempt)

    def upload(self, answer: dict[str, Any], path: Path) -> int:
        """PUT the object (if the server asked for it) and run its verify action; returns bytes sent."""
        oid, size, actions = answer["oid"], int(answer["size"]), answer.get("actions") or {}
        if "upload" not in actions:
            return 0
        action = actions["upload"]
        href = action["href"]
        headers = {
            **self._auth_for(href, action.get("header") or {}),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }

        def attempt() -> int:
            with path.open("rb") as source:

                def body() -> _CancellableReader:
                    source.seek(0)  # from the start again when a 307/308 redirect repeats the PUT
                    return _CancellableReader(source, self.cancel)

                with self._open("PUT", href, headers, body) as response:
                    _read_limited(response, MAX_ERROR_BODY_BYTES, self.shown, refuse=False)
                    if not 200 <= response.status < 300:
                        raise TransferError(
                            f"object {oid}: upload refused: HTTP {response.status} from {redact.url(href)}"
                        )
            return size

        sent = self._retrying(f"uploading object {oid}", href, attempt)
        if "verify" in actions:
            verify = actions["verify"]
            body = json.dumps({"oid": oid, "size": size}).encode()
            status, payload = self._retrying(
                f"verifying object {oid}",
                verify["href"],
                lambda: self._post_json(verify["href"], body, verify.get("header")),
            )
            if not 200 <= status < 300:
                raise TransferError(
                    f"object {oid}: the server could not verify the upload: HTTP {status}: {_message(payload)}"
                )
        return sent

    def _chunks(self, response: http.client.HTTPResponse, oid: str, size: int | None) -> Iterator[bytes]:
        declared = _content_length(response)
        if size is not None and declared is not None and declared > size:
            raise TransferError(
                f"object {oid}: {self.shown} sends {declared} bytes for an object of {size} bytes; refused"
            )
        received = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            try:
                chunk = response.read1(CHUNK_BYTES)  # what has arrived: a stalled server cannot delay Ctrl-C
            except (http.client.HTTPException, OSError) as error:
                raise Transient(f"the download broke off: {_reason(error)}") from None
            if not chunk:
                return
            self._active()
            received += len(chunk)
            if size is not None and received > size:  # never let a server fill the disk past what was asked for
                raise TransferError(f"object {oid}: {self.shown} sent more than the object's {size} bytes; discarded")
            yield chunk

    # -- plumbing --------------------------------------------------------

    def _auth_for(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """The action's own headers; our credentials only for the API's own origin, and only if none are given."""
        headers = dict(headers)
        if (
            self.credential
            and "authorization" not in {k.lower() for k in headers}
            and _origin(url) == _origin(self.url)
        ):
            headers["Authorization"] = self.credential.authorization()
        return headers

    def _open(self, method: str, url: str, headers: dict[str, str], body: Callable[[], Any] | None = None) -> Any:
        """The response to the request, redirects followed by hand: urllib would send every header (credentials
        included) to wherever the server points. To another origin only CROSS_ORIGIN_HEADERS go along; if that
        origin asks for credentials (401), git's credential helpers are asked for that origin's own."""
        first = url
        moved = False
        for hop in range(MAX_REDIRECTS + 1):
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise TransferError(
                    f"{redact.url(first)} redirected to {redact.one_line(redact.url(url), 120)}; only http(s) "
                    "redirects are followed"
                )
            response = self._send(method, url, headers, body)
            if response.status in REDIRECT_CODES:
                location = response.headers.get("Location")
                _read_limited(response, MAX_ERROR_BODY_BYTES, self.shown, refuse=False)
                response.close()
                if hop == MAX_REDIRECTS:
                    raise TransferError(
                        f"{redact.url(first)}: more than {MAX_REDIRECTS} redirects; refused (a redirect loop?)"
                    )
                if not location:
                    raise TransferError(f"{redact.url(first)}: HTTP {response.status} redirect without a Location")
                target = urljoin(url, location.strip())
                if response.status in (301, 302, 303) and method not in ("GET", "HEAD"):
                    method, body = "GET", None  # what browsers and Go's client do; 307/308 keep method and body
                    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
                if _origin(target) != _origin(url):
                    headers = {k: v for k, v in headers.items() if k.lower() in CROSS_ORIGIN_HEADERS}
                moved = moved or _origin(target) != _origin(self.url)
                url = target
                continue
            if response.status == 401 and moved and _origin(url) != _origin(self.url):
                return self._with_credentials_for(url, method, headers, body, response)
            return response
        raise AssertionError("unreachable")

    def _with_credentials_for(
        self, url: str, method: str, headers: dict[str, str], body: Callable[[], Any] | None, refused: Any
    ) -> Any:
        """Ask again with credentials for `url`'s own origin (a redirect led there and it answered 401)."""
        refused.close()
        origin = _origin(url)
        credential = self._elsewhere.get(origin)
        if credential is None:
            credential = credentials.fill(url, self.cwd)
            with self._lock:
                self._elsewhere[origin] = credential
        response = self._send(method, url, {**headers, "Authorization": credential.authorization()}, body)
        if response.status == 401:
            credentials.reject(credential, self.cwd)
            with self._lock:
                self._elsewhere.pop(origin, None)
        elif 200 <= response.status < 300:
            credentials.approve(credential, self.cwd)
        return response

    def _send(self, method: str, url: str, headers: dict[str, str], body: Callable[[], Any] | None) -> Any:
        request = urllib.request.Request(
            url, data=body() if body else None, method=method, headers={"User-Agent": USER_AGENT, **headers}
        )
        timeout = self.settings.timeout or None
        try:
            response = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code == 429 or error.code >= 500:
                _read_limited(error, MAX_ERROR_BODY_BYTES, self.shown, refuse=False)
                raise Transient(
                    f"HTTP {error.code} {redact.one_line(error.reason, 80)}",
                    _retry_after(error.headers.get("Retry-After")),
                ) from None
            response = error  # a 3xx or 4xx answer is a response the caller reads
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise Transient(
                f"cannot reach {redact.url(url)}: {redact.one_line(_reason(error), 200)}",
                unreachable=_unreachable(error),
            ) from None
        except ValueError as error:  # e.g. a port that is not a number in a Location
            raise TransferError(
                f"{redact.one_line(redact.url(url), 120)}: not a usable URL ({redact.one_line(error, 80)})"
            ) from None
        self._active()
        return response

    def _retrying(self, what: str, url: str, attempt: Callable[[], R]) -> R:
        origin = _origin(url)
        with self._lock:
            reason = _DOWN.get(origin)
            self._busy += 1
            if self._busy == 1:
                self._last_activity = time.monotonic()
            self._waiting_for = f"{redact.url(url)} ({what})"
            if self._watchdog is None and not self._said_waiting:
                self._watchdog = threading.Thread(target=self._watch, daemon=True, name="theta-transfer-watchdog")
                self._watchdog.start()
        try:
            if reason is not None:
                raise ServerDown(f"{what}: {reason}; not trying it again")
            for number in range(self.settings.retries + 1):
                if self.cancel.is_set():
                    raise Cancelled()
                try:
                    return attempt()
                except Transient as error:
                    if number == self.settings.retries:
                        message = f"{error} (gave up after {number + 1} attempt(s))"
                        if error.unreachable:
                            with self._lock:
                                _DOWN.setdefault(origin, message)
                            raise ServerDown(f"{what}: {message}") from None
                        raise TransferError(f"{what}: {message}") from None
                    delay = error.retry_after if error.retry_after is not None else 0.25 * 2**number
                    if self.cancel.wait(min(delay, self.settings.max_delay)):
                        raise Cancelled() from None
            raise AssertionError("unreachable")
        finally:
            with self._lock:
                self._busy -= 1

    def _active(self) -> None:
        self._last_activity = time.monotonic()

    def _watch(self) -> None:
        """Say once, on stderr, what we wait for when the server has been silent for WAIT_NOTICE_SECONDS."""
        while not self.cancel.wait(0.25):
            with self._lock:
                if self._busy == 0:
                    self._watchdog = None  # idle: the next request starts a new one (no thread left per client)
                    return
                silent = time.monotonic() - self._last_activity
                waiting = silent >= WAIT_NOTICE_SECONDS
                what = self._waiting_for
            if waiting:
                timeout = f"{self.settings.timeout:g} s" if self.settings.timeout else "no limit"
                print(
                    f"git-theta: waiting for {what}: no answer for {silent:.0f} s "
                    f"(read timeout lfs.activitytimeout = {timeout}, {self.settings.retries} retries)",
                    file=sys.stderr,
                    flush=True,
                )
                with self._lock:
                    self._said_waiting = True
                    self._watchdog = None
                return


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects come back as responses; LfsHttp._open follows them itself."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _connection(base: type[http.client.HTTPConnection], dial_timeout: float) -> type[http.client.HTTPConnection]:
    class Connection(base):  # type: ignore[valid-type,misc]
        """Connecting may take lfs.dialtimeout; after that the socket times out after lfs.activitytimeout of silence."""

        def connect(self) -> None:
            activity: float | None = self.timeout  # type: ignore[has-type]
            self.timeout = dial_timeout or None
            try:
                super().connect()
            finally:
                self.timeout = activity
            self.sock.settimeout(activity)

    return Connection


class _Handler(urllib.request.HTTPHandler):
    def __init__(self, dial_timeout: float) -> None:
        super().__init__()
        self._connection = _connection(http.client.HTTPConnection, dial_timeout)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _SecureHandler(urllib.request.HTTPSHandler):
    def __init__(self, dial_timeout: float) -> None:
        super().__init__()
        self._connection = _connection(http.client.HTTPSConnection, dial_timeout)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._context)  # type: ignore[attr-defined]


class _CancellableReader:
    """A file body for urllib that stops an upload as soon as the user interrupts."""

    def __init__(self, source: BinaryIO, cancel: threading.Event) -> None:
        self._source = source
        self._cancel = cancel

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled()
        return self._source.read(size)


def _message(payload: dict[str, Any] | None) -> str:
    message = payload.get("message") if payload else None
    return redact.one_line(message) if message else "no message"


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason if reason is not None else error) or type(error).__name__


def _unreachable(error: BaseException) -> bool:
    """No answer at all (refused, unreachable, timed out), as opposed to a broken answer."""
    reason = getattr(error, "reason", error)
    return isinstance(reason, OSError) and not isinstance(reason, (ConnectionResetError, BrokenPipeError))


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length") if response.headers else None
    return int(value) if value and value.strip().isdigit() else None


def _read_limited(response: Any, limit: int, server: str, refuse: bool) -> bytes:
    """At most `limit` bytes of the body, read in chunks. `refuse`: a longer body is an error (we need all of it);
    else the rest is left unread (an error message needs only its start)."""
    declared = _content_length(response)
    if refuse and declared is not None and declared > limit:
        raise TransferError(
            f"LFS server {server} sent an answer of {declared} bytes, over the limit of {limit} bytes; refused"
        )
    chunks, total = [], 0
    while total <= limit:
        try:
            chunk = response.read1(CHUNK_BYTES) if hasattr(response, "read1") else response.read(CHUNK_BYTES)
        except (http.client.HTTPException, OSError) as error:
            raise Transient(f"the answer from {server} broke off: {_reason(error)}") from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        if refuse:
            raise TransferError(f"LFS server {server} sent an answer of more than {limit} bytes, the limit; refused")
        return b"".join(chunks)[:limit]
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
