"""The LFS client against servers that are not to be trusted: redirects elsewhere, credentials, hostile or broken
answers, silence. Real servers on 127.0.0.1 (and 127.0.0.2 as "another host"), real git, real checkpoints."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git, theta
from hostile_support import RepoState, assert_nothing_internal, assert_refused, run_bounded
from lfs_server import Answer, ScriptedServer, Seen, SilentServer
from remote_support import Team, local_objects, write_model

from git_theta.transfer.lfs_http import MAX_JSON_BYTES, MAX_REDIRECTS

MODEL = "model.safetensors"
SECRET = "t0ps3cr3t-tok"
LFS_JSON = [("Content-Type", "application/vnd.git-lfs+json")]


@pytest.fixture
def bob(team: Team) -> Path:
    """A clone with alice's commits and none of the objects (so a fetch asks the server for all of them)."""
    return team.clone("bob", "--no-checkout")


def requested(seen: Seen) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = json.loads(seen.body)["objects"]
    return objects


def serving(
    team: Team, answer_objects: Callable[[list[dict[str, Any]], ScriptedServer], Any], host_server: list[ScriptedServer]
) -> Callable[[Seen], Answer]:
    """A handler: batch POSTs answered with `answer_objects(requested, server)`, GET /obj/<oid> with the real bytes."""

    def handle(seen: Seen) -> Answer:
        if seen.method == "POST" and seen.path.endswith("/objects/batch"):
            body = json.dumps(
                {"transfer": "basic", "objects": answer_objects(requested(seen), host_server[0])}
            ).encode()
            return 200, LFS_JSON, body
        if seen.method == "GET" and seen.path.startswith("/obj/"):
            return 200, [], team.server.object_path(seen.path.rsplit("/", 1)[1]).read_bytes()
        return 404, LFS_JSON, b'{"message": "no"}'

    return handle


def scripted(
    team: Team, answer_objects: Callable[[list[dict[str, Any]], ScriptedServer], Any]
) -> Iterator[ScriptedServer]:
    holder: list[ScriptedServer] = []
    server = ScriptedServer(serving(team, answer_objects, holder))
    holder.append(server)
    yield server
    server.stop()


def download_action(server: ScriptedServer, oid: str, **extra: Any) -> dict[str, Any]:
    return {"download": {"href": server.url(f"/obj/{oid}"), **extra}}


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- 1. credentials never follow a redirect to another origin ----------------------------------------------------


def test_a_redirected_download_does_not_send_our_credentials_to_another_host_and_asks_the_helper_for_that_one(
    team: Team, bob: Path
) -> None:
    other_host: list[Seen] = []

    def storage(seen: Seen) -> Answer:  # 127.0.0.2: a different host; wants its own credentials
        other_host.append(seen)
        if seen.headers.get("Authorization") != basic_auth("carol", "storage-pw"):
            return 401, [("WWW-Authenticate", 'Basic realm="storage"')], b""
        return 200, [], team.server.object_path(seen.path.rsplit("/", 1)[1]).read_bytes()

    second = ScriptedServer(storage, host="127.0.0.2")

    def api(seen: Seen) -> Answer:  # 127.0.0.1: the LFS API, whose hrefs redirect to the storage host
        if seen.path.endswith("/objects/batch"):
            assert seen.headers.get("Authorization") == basic_auth("alice", SECRET)
            objects = [
                {"oid": o["oid"], "size": o["size"], "actions": download_action(first, o["oid"])}
                for o in requested(seen)
            ]
            return 200, LFS_JSON, json.dumps({"objects": objects}).encode()
        return 302, [("Location", second.url(seen.path))], b""

    first = ScriptedServer(api)
    store = team.root / "credentials"
    store.write_text(f"http://carol:storage-pw@127.0.0.2:{second.port}\n")
    git(bob, "config", "credential.helper", f"store --file {store}")
    git(bob, "config", "lfs.url", first.url().replace("http://", f"http://alice:{SECRET}@"))
    try:
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob)
    finally:
        first.stop()
        second.stop()
    assert result.returncode == 0, result.describe()
    assert local_objects(bob) == local_objects(team.alice)
    assert other_host and all(basic_auth("alice", SECRET) != seen.headers.get("Authorization") for seen in other_host)
    assert {seen.headers.get("Authorization") for seen in other_host} == {None, basic_auth("carol", "storage-pw")}
    assert SECRET not in result.stdout + result.stderr and "storage-pw" not in result.stdout + result.stderr


def test_a_redirected_batch_request_does_not_carry_our_credentials_to_another_host(team: Team, bob: Path) -> None:
    other_host: list[Seen] = []

    def recorder(seen: Seen) -> Answer:
        other_host.append(seen)
        return 404, LFS_JSON, b'{"message": "not here"}'

    second = ScriptedServer(recorder, host="127.0.0.2")
    first = ScriptedServer(lambda seen: (302, [("Location", second.url(seen.path))], b""))
    git(bob, "config", "lfs.url", first.url().replace("http://", f"http://alice:{SECRET}@"))
    state = RepoState.capture(bob)
    try:
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob)
    finally:
        first.stop()
        second.stop()
    assert_refused(result, names=f"127.0.0.1:{first.port}")
    assert len(other_host) == 1 and "Authorization" not in other_host[0].headers
    assert SECRET not in result.stdout + result.stderr
    state.assert_unchanged(bob)


def test_a_same_origin_redirect_keeps_the_credentials(team: Team, bob: Path) -> None:
    def api(seen: Seen) -> Answer:
        if seen.path.startswith("/moved/"):
            if seen.headers.get("Authorization") != basic_auth("alice", SECRET):
                return 401, [], b""
            return 200, [], team.server.object_path(seen.path.rsplit("/", 1)[1]).read_bytes()
        if seen.path.endswith("/objects/batch"):
            objects = [
                {"oid": o["oid"], "size": o["size"], "actions": download_action(server, o["oid"])}
                for o in requested(seen)
            ]
            return 200, LFS_JSON, json.dumps({"objects": objects}).encode()
        return 307, [("Location", "/moved/" + seen.path.rsplit("/", 1)[1])], b""

    server = ScriptedServer(api)
    git(bob, "config", "lfs.url", server.url().replace("http://", f"http://alice:{SECRET}@"))
    try:
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob)
    finally:
        server.stop()
    assert result.returncode == 0, result.describe()
    assert local_objects(bob) == local_objects(team.alice)


# -- 2. no secret is ever printed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("server_state", ["down", "401", "404", "up"])
def test_credentials_in_lfs_url_never_appear_in_any_output(team: Team, tmp_path: Path, server_state: str) -> None:
    answers = {"401": (401, [], b'{"message": "who are you"}'), "404": (404, LFS_JSON, b'{"message": "no such repo"}')}
    server = None
    if server_state == "up":
        url = team.server.url
    else:
        server = ScriptedServer(lambda seen: answers.get(server_state, (500, [], b"")))
        url = server.url()
        if server_state == "down":
            server.stop()
    secret_url = url.replace("http://", f"http://alice:{SECRET}@")
    git(team.alice, "config", "lfs.url", secret_url)
    git(tmp_path, "config", "--global", "lfs.url", secret_url)  # the clone reads it too
    git(tmp_path, "config", "--global", "lfs.transfer.maxretries", "0")
    write_model(team.alice / MODEL, changed={1}, version=7)
    git(team.alice, "commit", "-q", "-am", "v2")
    outputs = [
        theta(team.alice, "push", check=False),
        git(team.alice, "push", "origin", "main", check=False),
        git(tmp_path, "clone", str(team.origin), "carol", check=False),
    ]
    outputs.append(theta(tmp_path / "carol", "fetch", "--all", check=False))
    if server is not None and server_state != "down":
        server.stop()
    expect_ok = server_state == "up"
    for result in outputs:
        text = result.stdout + result.stderr
        assert SECRET not in text, text
        assert (result.returncode == 0) == expect_ok, text
        assert expect_ok or "127.0.0.1" in text, text  # the server is still named, without the secret


def test_signed_href_query_secrets_are_redacted_in_errors(team: Team, bob: Path) -> None:
    def answer(objects: list[dict[str, Any]], server: ScriptedServer) -> Any:
        return [
            {
                "oid": o["oid"],
                "size": o["size"],
                "actions": {
                    "download": {"href": server.url(f"/nothere/{o['oid']}?X-Amz-Signature={SECRET}&sig={SECRET}")}
                },
            }
            for o in objects
        ]

    for server in scripted(team, answer):
        git(bob, "config", "lfs.url", server.url())
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob)
    assert_refused(result, names=f"127.0.0.1:{server.port}")
    assert "X-Amz-Signature=REDACTED" in result.stderr and SECRET not in result.stderr


# -- 5. hostile answers: each a clear refusal, nothing lands ----------------------------------------------------------


def _each(
    make: Callable[[dict[str, Any], ScriptedServer], dict[str, Any]],
) -> Callable[[list[dict[str, Any]], ScriptedServer], Any]:
    return lambda objects, server: [make(o, server) for o in objects]


def _ok(o: dict[str, Any], server: ScriptedServer, **actions: Any) -> dict[str, Any]:
    return {"oid": o["oid"], "size": o["size"], "actions": actions or download_action(server, o["oid"])}


HOSTILE_ANSWERS: dict[str, tuple[Callable[[list[dict[str, Any]], ScriptedServer], Any], str]] = {
    "objects is not a list": (lambda objects, server: {"a": 1}, "without an objects list"),
    "objects are numbers": (lambda objects, server: [1, 2, 3], "did not answer for it"),
    "wrong oid": (_each(lambda o, s: {**_ok(o, s), "oid": "f" * 64}), "did not answer for it"),
    "path in oid": (_each(lambda o, s: {**_ok(o, s), "oid": "../../../../etc/passwd"}), "did not answer for it"),
    "wrong size": (_each(lambda o, s: {**_ok(o, s), "size": o["size"] + 1}), "not the"),
    "size is a string": (_each(lambda o, s: {**_ok(o, s), "size": str(o["size"])}), "not the"),
    "size is true": (_each(lambda o, s: {**_ok(o, s), "size": True}), "not the"),
    "file href": (_each(lambda o, s: _ok(o, s, download={"href": "file:///etc/passwd"})), "not an http(s) URL"),
    "ftp href": (_each(lambda o, s: _ok(o, s, download={"href": "ftp://127.0.0.1/x"})), "not an http(s) URL"),
    "href not a string": (
        _each(lambda o, s: _ok(o, s, download={"href": ["http://127.0.0.1/"]})),
        "not an http(s) URL",
    ),
    "header with a newline": (
        _each(
            lambda o, s: _ok(o, s, download={"href": s.url(f"/obj/{o['oid']}"), "header": {"X-A": "1\r\nX-Evil: 2"}})
        ),
        "invalid header",
    ),
    "header not a string": (
        _each(lambda o, s: _ok(o, s, download={"href": s.url(f"/obj/{o['oid']}"), "header": {"X-A": 5}})),
        "invalid header",
    ),
    "header name with a colon": (
        _each(lambda o, s: _ok(o, s, download={"href": s.url(f"/obj/{o['oid']}"), "header": {"X-A: b": "c"}})),
        "invalid header",
    ),
    "header name ending in a newline": (
        _each(lambda o, s: _ok(o, s, download={"href": s.url(f"/obj/{o['oid']}"), "header": {"X-A\n": "c"}})),
        "invalid header",
    ),
    "headers a list": (
        _each(lambda o, s: _ok(o, s, download={"href": s.url(f"/obj/{o['oid']}"), "header": ["a"]})),
        "not an object",
    ),
    "download action a string": (_each(lambda o, s: _ok(o, s, download="http://127.0.0.1/")), "is not an object"),
    "error with a forged line": (
        _each(lambda o, s: {"oid": o["oid"], "error": {"code": 500, "message": "x\ngit-theta: error: forged\x1b[2J"}}),
        "forged",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ANSWERS))
def test_a_hostile_batch_answer_is_refused_naming_the_server_and_lands_nothing(
    team: Team, bob: Path, case: str
) -> None:
    answer, says = HOSTILE_ANSWERS[case]
    state = RepoState.capture(bob)
    for server in scripted(team, answer):
        git(bob, "config", "lfs.url", server.url())
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob, max_seconds=30)
    assert_refused(result, names=f"127.0.0.1:{server.port}")
    assert says in result.stderr, result.describe()
    assert "\x1b" not in result.stderr
    state.assert_unchanged(bob)


def _raw(status: int, headers: list[tuple[str, str]], body: bytes | Iterator[bytes]) -> Callable[[Seen], Answer]:
    return lambda seen: (status, headers, body) if seen.path.endswith("/objects/batch") else (404, [], b"")


def _endless(chunk: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < 4 * MAX_JSON_BYTES:  # stops on its own: the client must stop far earlier
        yield chunk
        sent += len(chunk)


HOSTILE_BODIES: dict[str, tuple[Callable[[], Callable[[Seen], Answer]], str]] = {
    "not JSON": (lambda: _raw(200, LFS_JSON, b"<html>hello</html>"), "not JSON"),
    "JSON nested 200000 deep": (lambda: _raw(200, LFS_JSON, b"[" * 200_000 + b"]" * 200_000), "not JSON"),
    "a JSON array": (lambda: _raw(200, LFS_JSON, b"[1, 2]"), "without an objects list"),
    "declares 1 GiB": (
        lambda: _raw(200, [*LFS_JSON, ("Content-Length", str(1 << 30))], iter([b"{" * 1000])),
        "over the limit",
    ),
    "streams without end": (lambda: _raw(200, LFS_JSON, _endless(b" " * (1 << 20))), "more than"),
    "another transfer adapter": (
        lambda: _raw(200, LFS_JSON, b'{"transfer": "tus\\nforged", "objects": []}'),
        "speaks only 'basic'",
    ),
    "redirect loop": (
        lambda: lambda seen: (302, [("Location", seen.path)], b""),
        f"more than {MAX_REDIRECTS} redirects",
    ),
    "redirect to file:": (
        lambda: lambda seen: (307, [("Location", "file:///etc/passwd")], b""),
        "only http(s) redirects",
    ),
    "redirect without location": (lambda: lambda seen: (302, [], b""), "without a Location"),
    "huge error body": (lambda: _raw(403, LFS_JSON, _endless(b"x" * (1 << 20))), "HTTP 403"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
def test_a_hostile_batch_body_is_refused_bounded(team: Team, bob: Path, case: str) -> None:
    make, says = HOSTILE_BODIES[case]
    server = ScriptedServer(make())
    git(bob, "config", "lfs.url", server.url())
    git(bob, "config", "lfs.transfer.maxretries", "0")
    state = RepoState.capture(bob)
    try:
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob, max_rss_mb=300, max_seconds=30)
    finally:
        server.stop()
    assert_refused(result, names=f"127.0.0.1:{server.port}")
    assert says in result.stderr, result.describe()
    assert len(server.seen) <= MAX_REDIRECTS + 1
    state.assert_unchanged(bob)


def test_a_download_longer_than_the_object_is_cut_off_and_nothing_lands(team: Team, bob: Path) -> None:
    def handle(seen: Seen) -> Answer:
        if seen.path.endswith("/objects/batch"):
            objects = [_ok(o, server) for o in requested(seen)]
            return 200, LFS_JSON, json.dumps({"objects": objects}).encode()
        return 200, [], _endless(b"\0" * (1 << 20))  # far more than any object, no Content-Length

    server = ScriptedServer(handle)
    git(bob, "config", "lfs.url", server.url())
    state = RepoState.capture(bob)
    try:
        result = run_bounded(["git-theta", "-q", "fetch"], cwd=bob, max_rss_mb=300, max_seconds=30)
    finally:
        server.stop()
    assert_refused(result, names=f"127.0.0.1:{server.port}")
    assert "sent more than the object's" in result.stderr
    state.assert_unchanged(bob)


# -- 6. silent and dead servers -------------------------------------------------------------------------------------


def test_a_silent_server_is_reported_and_given_up_on_within_the_configured_timeout(team: Team) -> None:
    write_model(team.alice / "second.safetensors", version=3, changed={0})
    git(team.alice, "add", ".")
    git(team.alice, "commit", "-q", "-m", "two checkpoints")
    git(team.alice, "push", "-q", "origin", "main")
    silent = SilentServer(lifetime=90)
    git(team.root, "config", "--global", "lfs.url", silent.url())
    git(team.root, "config", "--global", "lfs.activitytimeout", "2")
    git(team.root, "config", "--global", "lfs.transfer.maxretries", "2")
    start = time.monotonic()
    try:
        result = run_bounded(["git", "clone", str(team.origin), "bob"], cwd=team.root, max_seconds=40)
    finally:
        silent.stop()
    assert result.returncode != 0
    assert_nothing_internal(result)
    assert f"git-theta: waiting for http://127.0.0.1:{silent.port}/" in result.stderr, result.describe()
    assert "no answer for" in result.stderr
    assert "timed out (gave up after 3 attempt(s))" in result.stderr, result.describe()
    assert silent.connections == 3, result.describe()  # 1 + 2 retries; the rest of the checkout is not tried again
    assert time.monotonic() - start < 40  # was 5 x 60 s per checkpoint file


def test_push_to_a_dead_storage_host_fails_fast_not_once_per_object(team: Team) -> None:
    write_model(team.alice / MODEL, changed=set(range(20)), version=5)  # 20 new objects
    git(team.alice, "commit", "-q", "-am", "all new")
    dead = ScriptedServer(lambda seen: (500, [], b""), host="127.0.0.2")
    dead.stop()  # its port now refuses connections

    def api(seen: Seen) -> Answer:
        objects = [
            {"oid": o["oid"], "size": o["size"], "actions": {"upload": {"href": dead.url(f"/up/{o['oid']}")}}}
            for o in requested(seen)
        ]
        return 200, LFS_JSON, json.dumps({"objects": objects}).encode()

    server = ScriptedServer(api)
    git(team.alice, "config", "lfs.url", server.url())
    git(team.alice, "config", "lfs.transfer.maxretries", "4")  # 0.25+0.5+1+2 s of backoff per object before the fix
    git(team.alice, "config", "lfs.concurrenttransfers", "2")
    try:
        result = run_bounded(["git-theta", "-q", "push"], cwd=team.alice, max_seconds=20)
    finally:
        server.stop()
    line = assert_refused(result, names=f"127.0.0.2:{dead.port}")
    assert "Connection refused" in line
    assert result.seconds < 12, result.describe()


def test_once_a_server_is_given_up_on_later_transfers_in_the_same_process_fail_at_once(team: Team, bob: Path) -> None:
    """What a filter process meets when git goes on to the next checkpoint: the second transfer does not wait again."""
    dead = ScriptedServer(lambda seen: (500, [], b""))
    dead.stop()
    git(bob, "config", "lfs.url", dead.url())
    git(bob, "config", "lfs.transfer.maxretries", "3")  # 0.25 + 0.5 + 1 s of backoff for the first transfer
    program = (
        "import time\nfrom git_theta.errors import TransferError\nfrom git_theta.repo import Repo\n"
        "from git_theta.transfer import client, scan\nfrom git_theta import git\n"
        "repo = Repo.discover('.')\n"
        "wanted = scan.referenced(scan.metadata_of(scan.tree_blobs(git.commit_ids(['HEAD'], repo.worktree), "
        "repo.worktree), repo.worktree))\n"
        "for half in (dict(list(wanted.items())[:10]), dict(list(wanted.items())[10:])):\n"
        "    start = time.monotonic()\n"
        "    try:\n"
        "        client.download(repo, half)\n"
        "    except TransferError as error:\n"
        "        print(f'{time.monotonic() - start:.2f} {error}')\n"
    )
    result = run_bounded([sys.executable, "-c", program], cwd=bob, max_seconds=30)
    first, second = result.stdout.splitlines()
    assert float(first.split()[0]) >= 1.5 and "gave up after 4 attempt(s)" in first, result.describe()
    assert float(second.split()[0]) < 1.0 and "not trying it again" in second, result.describe()
