"""smudge.rebuild of update chains: links applied in place, one hash at the end, the checked run's errors on failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from git_theta import objects, smudge
from git_theta.errors import StoreError
from git_theta.metadata import ParamEntry, StoredLink
from git_theta.objects import Bundle
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor
from git_theta.updates.sparse import SparseUpdate
from git_theta.updates.xor import XorUpdate


def _versions(count: int) -> list[Tensor]:
    """`count` versions of a [64, 32] fp32 tensor, each changing a few entries of the one before."""
    rng = np.random.default_rng(7)
    array = rng.normal(0, 0.02, (64, 32)).astype(np.float32)
    found = [Tensor.from_numpy(array.copy())]
    for _ in range(count - 1):
        array.reshape(-1)[rng.choice(array.size, 20, replace=False)] = rng.normal(0, 0.02, 20)
        found.append(Tensor.from_numpy(array.copy()))
    return found


def _put(store: ObjectStore, kind: str, bundle: Bundle) -> StoredLink:
    oid, size = store.put(objects.encode(bundle))
    return StoredLink(kind, oid, size)


def _chain(store: ObjectStore, versions: list[Tensor]) -> list[StoredLink]:
    """dense, then sparse and xor links in turn, each on the version before it."""
    links = [_put(store, "dense", Bundle("dense", {"value": versions[0]}))]
    for number, (old, new) in enumerate(zip(versions, versions[1:])):
        update = SparseUpdate() if number % 2 == 0 else XorUpdate()
        bundle = update.encode(new, old)
        assert bundle is not None
        links.append(_put(store, update.name, bundle))
    return links


def _entry(value: Tensor, links: list[StoredLink]) -> ParamEntry:
    return ParamEntry(value.dtype, value.shape, value.hash(), tuple(links))


def _object_digests(store: ObjectStore) -> dict[str, str]:
    return {oid: hashlib.sha256(store.path(oid).read_bytes()).hexdigest() for oid in store.all_oids()}


@pytest.mark.parametrize("every_link", [False, True])
def test_a_chain_rebuilds_exactly_and_leaves_the_objects_alone(tmp_path: Path, every_link: bool) -> None:
    store = ObjectStore(tmp_path / "lfs")
    versions = _versions(8)
    links = _chain(store, versions)
    before = _object_digests(store)
    for depth in range(1, len(links) + 1):
        entry = _entry(versions[depth - 1], links[:depth])
        for _ in range(2):  # a second rebuild of the same chain starts from the untouched objects
            value = smudge.rebuild(store, "w", entry, every_link=every_link)
            assert bytes(value.data) == bytes(versions[depth - 1].data)
    assert _object_digests(store) == before


def test_a_link_made_for_another_base_is_named(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    versions = _versions(4)
    links = _chain(store, versions)
    stray = XorUpdate().encode(versions[3], versions[0])  # made for v0, placed after v2's link: a wrong result
    assert stray is not None
    links[3] = _put(store, "xor", stray)
    with pytest.raises(StoreError) as raised:
        smudge.rebuild(store, "w", _entry(versions[3], links), "model.safetensors")
    message = str(raised.value)
    assert message.startswith(f"model.safetensors: parameter 'w': object(s) {links[3].object}: "), message
    assert f"was made for base tensor {versions[0].hash()}" in message and "\n" not in message


def test_a_stray_link_that_still_gives_the_recorded_tensor_is_read_but_fsck_names_it(tmp_path: Path) -> None:
    """A sparse link sets values, so one made for v0 also turns v2 into v3: the hash proves the checkout right."""
    store = ObjectStore(tmp_path / "lfs")
    versions = _versions(4)
    links = _chain(store, versions)
    stray = SparseUpdate().encode(versions[3], versions[0])
    assert stray is not None
    links[3] = _put(store, "sparse", stray)
    entry = _entry(versions[3], links)
    assert bytes(smudge.rebuild(store, "w", entry).data) == bytes(versions[3].data)
    with pytest.raises(StoreError, match=f"was made for base tensor {versions[0].hash()}"):
        smudge.rebuild(store, "w", entry, every_link=True)


def test_a_wrong_recorded_hash_is_refused(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "lfs")
    versions = _versions(3)
    links = _chain(store, versions)
    entry = ParamEntry("F32", (64, 32), versions[1].hash(), tuple(links))  # the chain gives v2, not v1
    with pytest.raises(StoreError, match="rebuilt tensor does not match its recorded hash"):
        smudge.rebuild(store, "w", entry)


def test_in_place_links_keep_their_bounds_checks() -> None:
    base = Tensor("F32", (4,), bytearray(16))
    sparse = Bundle(
        "sparse",
        {"gaps": Tensor.from_numpy(np.array([9], np.uint32)), "values": Tensor.from_numpy(np.ones(1, np.float32))},
        {"base": base.hash()},
    )
    with pytest.raises(StoreError, match="out of range"):
        SparseUpdate().apply_in_place(sparse, base)
    xor = Bundle("xor", {"xor": Tensor.from_numpy(np.zeros(5, np.uint32))}, {"base": base.hash()})
    with pytest.raises(StoreError, match="does not fit"):
        XorUpdate().apply_in_place(xor, base)
    assert bytes(base.data) == bytes(16)
