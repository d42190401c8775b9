"""on_demand.repair: the function the smudge path calls for objects it found corrupt on use (real giftless server)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from hostile_support import assert_store_whole
from remote_support import Team, local_objects


def test_repair_downloads_the_corrupt_objects_again_and_replaces_them(team: Team) -> None:
    bob = team.clone("bob")
    oid = sorted(local_objects(bob))[0]
    path = bob / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    size = path.stat().st_size
    path.chmod(0o644)
    path.write_bytes(b"\0" * size)  # same size, wrong bytes: what has() cannot tell
    program = (
        "from git_theta.repo import Repo\nfrom git_theta.transfer import on_demand\n"
        f"on_demand.repair(Repo.discover('.'), {{'{oid}': {size}}})\n"
    )
    subprocess.run([sys.executable, "-c", program], cwd=bob, check=True, capture_output=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == oid
    assert_store_whole(bob)
