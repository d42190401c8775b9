"""git theta push / git push against a real LFS server (giftless on 127.0.0.1): a corrupt local object is never sent."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "transfer"))
from conftest import git  # noqa: E402
from hostile_support import assert_refused, run_bounded  # noqa: E402
from remote_support import Team, local_objects, write_model  # noqa: E402

MODEL = "model.safetensors"


def flip_a_bit(repo: Path, oid: str) -> Path:
    path = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_local_object_is_not_uploaded_and_the_push_names_it(team: Team) -> None:
    before = local_objects(team.alice)
    write_model(team.alice / MODEL, changed={4}, version=2)  # one new object
    git(team.alice, "commit", "-q", "-am", "v2")
    (new,) = local_objects(team.alice) - before
    flip_a_bit(team.alice, new)
    for command in (["git-theta", "-q", "push"], ["git", "push", "-q", "origin", "main"]):
        result = run_bounded(command, cwd=team.alice)
        line = assert_refused(result, names="127.0.0.1")
        assert new in result.stderr and "corrupt" in result.stderr and "git theta fetch --repair" in result.stderr, line
        assert new not in team.server.oids()  # the server never got the bad bytes (it would refuse a good copy later)
    assert git(team.origin, "rev-parse", "main").stdout != git(team.alice, "rev-parse", "main").stdout  # ref not moved


def test_a_corrupt_object_is_not_copied_to_a_file_remote_either(team: Team, tmp_path: Path) -> None:
    bare = tmp_path / "file-remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(team.alice, "config", "lfs.url", str(bare))  # over the committed .lfsconfig
    oid = sorted(local_objects(team.alice))[0]
    flip_a_bit(team.alice, oid)
    result = run_bounded(["git-theta", "-q", "push", "--all", str(bare)], cwd=team.alice)
    assert_refused(result, names=str(bare))
    assert oid in result.stderr and "git theta fetch --repair" in result.stderr
    assert not (bare / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
