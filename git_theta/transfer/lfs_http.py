"""The Git LFS batch API and the "basic" transfer adapter, over urllib.

Spec: git-lfs docs/api/batch.md and basic-transfers.md. One POST to
<endpoint>/objects/batch per group of objects says which exist and where to
PUT/GET them; transfers then go to the returned hrefs with the returned headers.
Transient failures (connection refused/reset, timeouts, HTTP 429 and 5xx,
truncated or corrupt downloads) are retried with exponential backoff; a 401 on
the batch request asks git's credential helpers once, then gives up clearly.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

from git_theta import git
from git_theta.errors import StoreError, TransferError
from git_theta.store import ObjectStore
from git_theta.transfer import credentials
from git_theta.transfer.credentials import Credential

LFS_JSON = "application/vnd.git-lfs+json"
CHUNK_BYTES = 1 << 20
USER_AGENT = "git-theta (git-lfs protocol)"

R = TypeVar("R")


class Cancelled(BaseException):
    """The user interrupted the transfer; a BaseException so cleanup handlers see it but retries do not."""


class Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Settings:
    """git-lfs's own config keys, so one setting serves both tools."""

    retries: int = 4
    max_delay: float = 10.0
    workers: int = 8
    timeout: float = 60.0

    @classmethod
    def from_config(cls, cwd: Path) -> Settings:
        def number(key: str, default: float) -> float:
            value = git.config_get(key, cwd=cwd)
            try:
                return float(value) if value else default
            except ValueError:
                raise TransferError(f"git config {key} = {value!r} is not a number") from None

        return cls(
            retries=max(0, int(number("lfs.transfer.maxretries", cls.retries))),
            max_delay=number("lfs.transfer.maxretrydelay", cls.max_delay),
            workers=max(1, int(number("lfs.concurrenttransfers", cls.workers))),
            timeout=number("lfs.activitytimeout", cls.timeout),
        )


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


class LfsHttp:
    """One LFS server: batch requests and basic transfers, safe to use from several threads."""

    def __init__(self, url: str, cwd: Path, settings: Settings, cancel: threading.Event, api_headers: dict[str, str] | None = None) -> None:
        self.url = _strip_credentials(url).rstrip("/")
        self.api_headers = api_headers or {}  # from git-lfs-authenticate, for batch requests only
        self.cwd = cwd
        self.settings = settings
        self.cancel = cancel
        self.credential: Credential | None = credentials.from_url(url)
        self._credential_from_helper = False
        self._opener = urllib.request.build_opener()

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
        while True:
            status, payload = self._retrying(f"LFS batch request to {self.url}", lambda: self._post_json(f"{self.url}/objects/batch", body, self.api_headers))
            if status in (401, 403):
                self._on_auth_failure(status, payload)
                continue
            if status == 404:
                raise TransferError(
                    f"LFS server {self.url} answered HTTP 404 to the {operation} batch request ({_message(payload)}): "
                    f"it has none of the {len(objects)} object(s) asked for, or the repository does not exist there or is not visible to you"
                )
            if status != 200:
                raise TransferError(f"LFS server {self.url} refused the {operation} batch request: HTTP {status}: {_message(payload)}")
            if self._credential_from_helper:
                credentials.approve(self.credential, self.cwd)  # type: ignore[arg-type]
                self._credential_from_helper = False
            if payload.get("transfer", "basic") != "basic":
                raise TransferError(f"LFS server {self.url} chose transfer {payload.get('transfer')!r}; git-theta speaks only 'basic'")
            answers = payload.get("objects")
            if not isinstance(answers, list):
                raise TransferError(f"LFS server {self.url} sent a batch answer without an objects list")
            return answers

    def _on_auth_failure(self, status: int, payload: dict[str, Any]) -> None:
        if self.credential is not None or status == 403:
            if self._credential_from_helper:
                credentials.reject(self.credential, self.cwd)  # type: ignore[arg-type]
            who = f" for user {self.credential.username!r}" if self.credential else ""
            raise TransferError(f"LFS server {self.url} refused access{who} (HTTP {status}: {_message(payload)}); check your credentials")
        self.credential = credentials.fill(self.url, self.cwd)
        self._credential_from_helper = True

    def _post_json(self, url: str, body: bytes, extra: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": LFS_JSON, "Content-Type": LFS_JSON, **self._auth_for(url, extra or {})}
        with self._open("POST", url, headers, body) as response:
            raw = response.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"message": raw[:200].decode(errors="replace")}
        return response.status, payload if isinstance(payload, dict) else {}

    # -- basic transfers -------------------------------------------------

    def download(self, answer: dict[str, Any], store: ObjectStore) -> int:
        """GET the object into the store, verified by sha256; returns bytes received."""
        oid, action = answer["oid"], answer["actions"]["download"]
        headers = self._auth_for(action["href"], action.get("header") or {})

        def attempt() -> int:
            with self._open("GET", action["href"], headers) as response:
                if response.status != 200:
                    raise TransferError(f"object {oid}: HTTP {response.status} from {credentials.describe(action['href'])}")
                try:
                    return store.put(self._chunks(response), expect=oid)[1]
                except StoreError as error:
                    raise Transient(str(error)) from None

        return self._retrying(f"downloading object {oid}", attempt)

    def upload(self, answer: dict[str, Any], path: Path) -> int:
        """PUT the object (if the server asked for it) and run its verify action; returns bytes sent."""
        oid, size, actions = answer["oid"], int(answer["size"]), answer.get("actions") or {}
        if "upload" not in actions:
            return 0
        action = actions["upload"]
        headers = {**self._auth_for(action["href"], action.get("header") or {}), "Content-Type": "application/octet-stream", "Content-Length": str(size)}

        def attempt() -> int:
            with path.open("rb") as source:
                with self._open("PUT", action["href"], headers, _CancellableReader(source, self.cancel)) as response:
                    response.read()
                    if not 200 <= response.status < 300:
                        raise TransferError(f"object {oid}: upload refused: HTTP {response.status} from {credentials.describe(action['href'])}")
            return size

        sent = self._retrying(f"uploading object {oid}", attempt)
        if "verify" in actions:
            verify = actions["verify"]
            body = json.dumps({"oid": oid, "size": size}).encode()
            status, payload = self._retrying(f"verifying object {oid}", lambda: self._post_json(verify["href"], body, verify.get("header")))
            if not 200 <= status < 300:
                raise TransferError(f"object {oid}: the server could not verify the upload: HTTP {status}: {_message(payload)}")
        return sent

    def _chunks(self, response: http.client.HTTPResponse) -> Iterator[bytes]:
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            try:
                chunk = response.read1(CHUNK_BYTES)  # what has arrived: a stalled server cannot delay Ctrl-C
            except (http.client.HTTPException, OSError) as error:
                raise Transient(f"the download broke off: {_reason(error)}") from None
            if not chunk:
                return
            yield chunk

    # -- plumbing --------------------------------------------------------

    def _auth_for(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """The action's own headers; our credentials only for the API's own host, and only if none are given."""
        headers = dict(headers)
        if self.credential and "authorization" not in {k.lower() for k in headers} and urlsplit(url).netloc.rsplit("@", 1)[-1] == urlsplit(self.url).netloc:
            headers["Authorization"] = self.credential.authorization()
        return headers

    def _open(self, method: str, url: str, headers: dict[str, str], data: Any = None) -> Any:
        request = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": USER_AGENT, **headers})
        try:
            return self._opener.open(request, timeout=self.settings.timeout)
        except urllib.error.HTTPError as error:
            if error.code == 429 or error.code >= 500:
                error.read()
                raise Transient(f"HTTP {error.code} {error.reason}", _retry_after(error.headers.get("Retry-After"))) from None
            return error  # a 4xx answer is a response the caller reads
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise Transient(f"cannot reach {credentials.describe(url)}: {_reason(error)}") from None

    def _retrying(self, what: str, attempt: Callable[[], R]) -> R:
        for number in range(self.settings.retries + 1):
            if self.cancel.is_set():
                raise Cancelled()
            try:
                return attempt()
            except Transient as error:
                if number == self.settings.retries:
                    raise TransferError(f"{what}: {error} (gave up after {number + 1} attempt(s))") from None
                delay = error.retry_after if error.retry_after is not None else 0.25 * 2**number
                if self.cancel.wait(min(delay, self.settings.max_delay)):
                    raise Cancelled() from None
        raise AssertionError("unreachable")


class _CancellableReader:
    """A file body for urllib that stops an upload as soon as the user interrupts."""

    def __init__(self, source: BinaryIO, cancel: threading.Event) -> None:
        self._source = source
        self._cancel = cancel

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled()
        return self._source.read(size)


def _message(payload: dict[str, Any]) -> str:
    message = payload.get("message")
    return str(message) if message else "no message"


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason if reason is not None else error) or type(error).__name__


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
