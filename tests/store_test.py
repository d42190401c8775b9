"""The object store (docs/formats.md, "Store layout"): Git LFS paths, atomic and idempotent writes."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git

from git_theta.errors import StoreError
from git_theta.repo import Repo
from git_theta.store import ObjectStore, check_oid

CONTENT = [b"hello ", b"object ", b"store"]
OID = hashlib.sha256(b"".join(CONTENT)).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "lfs")


def test_put_uses_the_git_lfs_layout(store: ObjectStore, tmp_path: Path) -> None:
    oid, size = store.put(CONTENT)
    assert (oid, size) == (OID, 18)
    path = tmp_path / "lfs" / "objects" / OID[:2] / OID[2:4] / OID
    assert store.path(OID) == path
    assert path.read_bytes() == b"hello object store"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert store.has(OID) and bytes(store.get(OID, verify=True)) == b"hello object store"
    assert os.listdir(tmp_path / "lfs" / "tmp") == []


def test_put_is_idempotent_and_refreshes_the_mtime(store: ObjectStore, tmp_path: Path) -> None:
    store.put(CONTENT)
    os.utime(store.path(OID), (1, 1))  # as old as can be: gc judges age by mtime
    before = store.path(OID).stat()
    assert store.put([b"hello object store"]) == (OID, 18)
    after = store.path(OID).stat()
    assert before.st_ino == after.st_ino and after.st_mtime > 1e9
    assert list(store.all_oids()) == [OID]
    assert os.listdir(tmp_path / "lfs" / "tmp") == []


def test_interrupted_put_leaves_nothing(store: ObjectStore, tmp_path: Path) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"half an object"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put(pieces())
    assert list(store.all_oids()) == []
    assert os.listdir(tmp_path / "lfs" / "tmp") == []


def test_put_with_expected_oid_discards_other_bytes(store: ObjectStore) -> None:
    with pytest.raises(StoreError, match=f"object {'0' * 64}: received 18 bytes whose sha256 is {OID}; discarded"):
        store.put(CONTENT, expect="0" * 64)
    assert not store.has(OID)
    assert store.put(CONTENT, expect=OID) == (OID, 18)


def test_damaged_copy_is_replaced_by_put(store: ObjectStore) -> None:
    store.put(CONTENT)
    store.path(OID).write_bytes(b"hello")  # truncated
    store.put(CONTENT)
    assert bytes(store.get(OID, verify=True)) == b"hello object store"


def test_verify_detects_corruption(store: ObjectStore) -> None:
    store.put(CONTENT)
    store.path(OID).write_bytes(b"hello object storE")
    assert bytes(store.get(OID)) == b"hello object storE"  # a plain read trusts the name
    with pytest.raises(StoreError, match=f"object {OID} is corrupt: its sha256 does not match"):
        store.get(OID, verify=True)


def test_an_emptied_object_reads_as_empty_and_fails_verification(store: ObjectStore) -> None:
    store.put(CONTENT)
    store.path(OID).write_bytes(b"")  # mmap refuses empty files: get must not
    assert bytes(store.get(OID)) == b""
    with pytest.raises(StoreError, match=f"object {OID} is corrupt"):
        store.get(OID, verify=True)


UNMAPPABLE = Path("/sys/kernel/mm/transparent_hugepage/enabled")  # sysfs: st_size 4096, mmap gives ENODEV


@pytest.mark.skipif(not UNMAPPABLE.is_file(), reason="needs a file the kernel refuses to map")
def test_an_object_on_a_filesystem_that_cannot_map_files_is_read(store: ObjectStore) -> None:
    path = store.path(OID)
    path.parent.mkdir(parents=True)
    path.symlink_to(UNMAPPABLE)
    assert bytes(store.get(OID)) == UNMAPPABLE.read_bytes()


def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(StoreError, match=f"object {OID} is missing"):
        store.get(OID)
    assert not store.has(OID)


@pytest.mark.parametrize("oid", [OID.upper(), OID[:63], OID + "0", "../" * 21 + "x", "", None, 12])
def test_invalid_oid(store: ObjectStore, oid: object) -> None:
    with pytest.raises(StoreError, match="invalid object id .*: expected 64 lowercase hex digits"):
        store.path(oid)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        check_oid(oid)  # type: ignore[arg-type]


def test_all_oids_is_sorted_and_skips_strays(store: ObjectStore) -> None:
    first, _ = store.put([b"b"])
    second, _ = store.put([b"a"])
    (store.objects_dir / "ab" / "cd").mkdir(parents=True)
    (store.objects_dir / "ab" / "cd" / "not-an-oid").write_text("x")
    assert list(store.all_oids()) == sorted([first, second])


def test_store_lives_in_the_common_git_dir(repo: Path, tmp_path: Path) -> None:
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"))
    main = Repo.discover(repo).store.objects_dir
    assert main == (repo / ".git" / "lfs" / "objects").resolve()
    assert Repo.discover(tmp_path / "wt").store.objects_dir == main


def test_put_replaces_an_object_whose_mtime_it_may_not_set(store: ObjectStore) -> None:
    """Another user's object (0644, not ours): a fresh copy is renamed over it, young for gc too."""
    store.put(CONTENT)
    os.utime(store.path(OID), (1, 1))
    os.chown(store.path(OID), 65534, 65534)  # nobody's; the tests run as root, so drop the override below
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from pathlib import Path\nfrom git_theta.store import ObjectStore\n"
        f"print(ObjectStore(Path({str(store.lfs_dir)!r})).put([b'hello object store']))"
    )
    subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", sys.executable, "-c", script],
        check=True,
    )
    assert store.path(OID).stat().st_mtime > 1e9 and store.path(OID).stat().st_uid == os.getuid()
    assert bytes(store.get(OID, verify=True)) == b"hello object store"


@pytest.fixture
def kept(tmp_path: Path) -> ObjectStore:
    """A repository's store: it keeps a second name of each object it makes, until a push."""
    return ObjectStore(tmp_path / "lfs", tmp_path / "unpushed")


def _pruned(store: ObjectStore) -> None:
    """What `git lfs prune` of git-lfs < 3.5 does to an object no pointer names."""
    store.path(OID).unlink()


def test_an_object_made_here_has_a_second_name_on_the_same_file(kept: ObjectStore) -> None:
    kept.put(CONTENT)
    second = kept.unpushed_path(OID)
    assert second is not None and os.path.samefile(second, kept.path(OID))  # a hard link: no extra disk
    assert list(kept.unpushed_oids()) == [OID]


def test_a_downloaded_object_has_no_second_name(kept: ObjectStore) -> None:
    kept.put(CONTENT, expect=OID)  # downloads come with expect: the remote has them
    assert kept.has(OID) and list(kept.unpushed_oids()) == []


def test_an_object_a_git_lfs_pointer_names_has_no_second_name(kept: ObjectStore) -> None:
    kept.put(CONTENT, lfs_object=True)  # an export: git-lfs pushes it, and its prune spares it while unpushed
    assert kept.has(OID) and list(kept.unpushed_oids()) == []


@pytest.mark.parametrize("read", ["has", "get", "read_range"])
def test_a_pruned_unpushed_object_is_linked_back_when_read(kept: ObjectStore, read: str) -> None:
    kept.put(CONTENT)
    _pruned(kept)
    if read == "has":
        assert kept.has(OID)
    elif read == "get":
        assert bytes(kept.get(OID, verify=True)) == b"hello object store"
    else:
        assert kept.read_range(OID, 6, 6) == b"object"
    assert kept.path(OID).read_bytes() == b"hello object store" and kept.restored == 1
    assert list(kept.unpushed_oids()) == [OID]  # still unpushed: protected from the next prune too


def test_a_pushed_object_is_no_longer_kept(kept: ObjectStore) -> None:
    kept.put(CONTENT)
    kept.pushed([OID])
    assert list(kept.unpushed_oids()) == [] and kept.has(OID)
    _pruned(kept)
    assert not kept.has(OID)
    with pytest.raises(StoreError, match="is missing from"):
        kept.get(OID)


def test_forget_deletes_both_names(kept: ObjectStore) -> None:
    kept.put(CONTENT)
    kept.forget(OID)
    assert not kept.has(OID) and list(kept.unpushed_oids()) == [] and kept.stored_path(OID) is None


def test_stored_path_and_restore_unpushed_find_a_pruned_object(kept: ObjectStore) -> None:
    kept.put(CONTENT)
    _pruned(kept)
    assert kept.stored_path(OID) == kept.unpushed_path(OID) and list(kept.all_oids()) == []
    kept.restore_unpushed()
    assert list(kept.all_oids()) == [OID] and kept.stored_path(OID) == kept.path(OID)


def test_a_replaced_damaged_copy_is_kept_not_the_damaged_file(kept: ObjectStore) -> None:
    kept.put(CONTENT)
    kept.path(OID).write_bytes(b"trunc")  # in place: the shared file is damaged under both names
    kept.put(CONTENT)  # wrong size: replaced by a new file
    second = kept.unpushed_path(OID)
    assert second is not None and os.path.samefile(second, kept.path(OID))
    _pruned(kept)
    assert bytes(kept.get(OID, verify=True)) == b"hello object store"


def test_a_pruned_object_made_again_is_kept_again(kept: ObjectStore) -> None:
    kept.put(CONTENT)
    _pruned(kept)
    kept.put(CONTENT)
    second = kept.unpushed_path(OID)
    assert second is not None and os.path.samefile(second, kept.path(OID))
    assert sorted(p.name for p in second.parent.iterdir()) == [OID]  # no spare link left behind


def test_without_hard_links_the_object_is_stored_unprotected(
    kept: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # as some FUSE, SMB and FAT mounts answer

    monkeypatch.setattr(os, "link", refuse)
    assert kept.put(CONTENT) == (OID, 18)
    assert kept.has(OID) and list(kept.unpushed_oids()) == []


def test_a_repository_store_keeps_unpushed_objects_in_the_common_git_dir(repo: Path) -> None:
    store = Repo.discover(repo).store
    assert store.unpushed_dir == (repo / ".git" / "theta" / "unpushed").resolve()


def test_a_mapped_range_is_the_range_read(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    data = bytes(range(256)) * 64  # 16 KiB: ranges that start off a page boundary and run past the end
    oid, size = store.put([data])
    for offset, length in [(0, size), (1, 100), (4095, 4098), (5000, 20000), (size - 1, 10), (size, 5), (size + 9, 1)]:
        assert (
            bytes(store.map_range(oid, offset, length))
            == store.read_range(oid, offset, length)
            == data[offset : offset + length]
        )
    with pytest.raises(StoreError, match="is missing"):
        store.map_range("ab" * 32, 0, 10)
