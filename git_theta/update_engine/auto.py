"""Automatic deltas: store a changed parameter as the cheapest exact link on its prior version.

When `git add` sees a parameter whose bytes changed and the previous version of
the same name (index, then HEAD) has the same dtype and shape and is in the
store, the new value is stored as whichever of dense, sparse or xor encodes
smallest. Cheap estimates come first (a bitwise change count; zstd on a sample
of the XOR) so only the likely winner is fully encoded. Any other registered
update type that implements `encode` competes too (its result must rebuild the
new tensor exactly, or it is ignored).

Chains stay short, so checkout stays fast (the policy and its numbers: docs/design.md, "Update chains"):
  * at most MAX_CHAIN_DEPTH links (a dense start plus 7 updates);
  * the update links of a chain together never outgrow one dense copy of the
    tensor (stored bytes);
  * reading them costs at most CHAIN_READ_SHARE of reading a dense copy, counting
    LINK_READ_BYTES per object (opening, mapping and parsing one costs about what
    decoding that many bytes does) plus the bytes it decodes to. Only the first
    update on a dense start is exempt: one small link is always worth storing.
Past either bound the new value is stored dense (a materialized base) and the
chain restarts, so rebuilding a parameter costs at most ~1.5 dense reads
(one xor link: ~2), however long the history.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from git_theta import dtypes, objects, packs, plugins, smudge
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.objects import Bundle
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor
from git_theta.updates.base import UpdateType, bits

# numpy (and the sparse/xor encoders) load only when a delta is weighed: a first add,
# or a `git status` re-clean that finds nothing changed, never needs them (~0.1 s).
if TYPE_CHECKING:
    import numpy as np

MAX_CHAIN_DEPTH = 8
# Considered directly (with cheap estimates first); other registered types with an `encode` are asked too.
BUILT_IN = ("dense", "sparse", "xor")
# zstd runs on this many sampled windows of this many bytes to estimate a size.
SAMPLE_WINDOWS = 8
SAMPLE_BYTES = 64 << 10
# Sparse costs about its value bytes plus a compressed gap per entry.
SPARSE_GAP_COST = 1.5
# Read cost of a link, in bytes of dense decoding: this much per object plus what it decodes to. Measured on
# 2 cores: ~0.1-0.25 ms per small object (open, mmap, header, zstd context) against ~1 ms per MiB of dense decode.
LINK_READ_BYTES = 128 << 10
# The updates of a chain may cost this share of one dense read (benchmarks/chain_bench.py; docs/design.md).
CHAIN_READ_SHARE = 0.5


def prior_entry(prior: Sequence[Metadata], name: str, new: Tensor, store: ObjectStore) -> ParamEntry | None:
    """The latest earlier version of `name` a delta can build on (same dtype and shape, objects present)."""
    for meta in prior:
        entry = meta.params.get(name)
        if entry is not None and entry.dtype == new.dtype and entry.shape == new.shape:
            if all(store.has(oid) for oid in entry.objects()):
                return entry
    return None


class LinkWriter(Protocol):
    """Where a new link's object goes: an object of its own (packs.DirectLinks) or a pack (packs.PackWriter)."""

    def put_link(self, update: str, pieces: Iterable[bytes | memoryview]) -> StoredLink: ...

    def put_dense(self, tensor: Tensor) -> StoredLink: ...


def store_dense(store: ObjectStore, tensor: Tensor, digest: str, links: LinkWriter | None = None) -> ParamEntry:
    link = (links or packs.DirectLinks(store)).put_dense(tensor)
    return ParamEntry(tensor.dtype, tensor.shape, digest, (link,))


def store_changed(
    store: ObjectStore,
    name: str,
    new: Tensor,
    digest: str,
    prior: ParamEntry | None,
    links: LinkWriter | None = None,
) -> ParamEntry:
    """The entry for a changed tensor: a delta link on `prior` when that is smaller, else dense."""
    if prior is None or len(prior.stored) >= MAX_CHAIN_DEPTH or new.nbytes == 0:
        return store_dense(store, new, digest, links)
    dense_size = _dense_estimate(prior, new)
    budget = dense_size - sum(link.stored_bytes for link in prior.stored[1:])
    if budget <= 0:
        return store_dense(store, new, digest, links)
    try:
        read_budget = CHAIN_READ_SHARE * read_cost(new.nbytes) - sum(
            read_cost(_decoded_bytes(packs.link_bytes(store, link))) for link in prior.stored[1:]
        )
        if len(prior.stored) > 1 and read_budget < LINK_READ_BYTES:
            return store_dense(store, new, digest, links)  # no further link can fit: skip the rebuild
        base = smudge.rebuild(store, name, prior)
    except ThetaError:
        return store_dense(store, new, digest, links)  # an unreadable prior only costs the delta
    best = _smallest_delta(new, base, budget, read_budget, exempt=len(prior.stored) == 1)
    if best is None:
        return store_dense(store, new, digest, links)  # past a bound: a materialized base, later versions build on it
    kind, pieces = best
    link = (links or packs.DirectLinks(store)).put_link(kind, pieces)
    return ParamEntry(new.dtype, new.shape, digest, (*prior.stored, link))


def read_cost(decoded_bytes: int) -> int:
    """What reading one link costs at checkout, in bytes of dense decoding (see LINK_READ_BYTES)."""
    return LINK_READ_BYTES + decoded_bytes


def _decoded_bytes(data: bytes | mmap.mmap) -> int:
    """The bytes an object's buffers decode to, from its header (the object's first bytes suffice)."""
    header, _ = objects.read_header(data)
    return sum(sum(buf["chunk_bytes"]) for buf in header["buffers"])


def _smallest_delta(
    new: Tensor, base: Tensor, limit: float, read_budget: float, exempt: bool
) -> tuple[str, list[bytes]] | None:
    """(update name, encoded object) of the smallest delta under `limit` bytes whose read cost fits `read_budget`
    (sparse often does where a slightly smaller xor, which decodes to the whole tensor, does not), or None.
    `exempt` (the first update on a dense start): the smallest under `limit` when none fits the read budget."""
    import numpy as np

    from git_theta.updates import sparse, xor

    itemsize = dtypes.itemsize(new.dtype)
    new_bits, base_bits = bits(new), bits(base)
    indices = np.flatnonzero(new_bits != base_bits)
    found: list[tuple[int, str, list[bytes]]] = []
    # A packed dtype's changed bytes are not elements: no sparse values tensor of it (xor covers it exactly).
    if new.dtype not in dtypes.PACKED and len(indices) * (itemsize + SPARSE_GAP_COST) < limit:
        values = Tensor(new.dtype, (len(indices),), memoryview(new_bits[indices].view(np.uint8)))  # type: ignore[arg-type]
        pieces = objects.encode(sparse.make_bundle(base, indices, values))
        found.append((_size(pieces), sparse.NAME, pieces))
    cheapest = min([limit, *(f[0] for f in found)])
    if _xor_estimate(new_bits, base_bits, itemsize) < cheapest:
        bundle = xor.XorUpdate().encode(new, base)
        assert bundle is not None  # same dtype and shape, checked by prior_entry
        pieces = objects.encode(bundle)
        found.append((_size(pieces), xor.NAME, pieces))
    found.extend(_plugin_deltas(new, base))
    found = [f for f in found if f[0] < limit]
    readable = [f for f in found if read_cost(_decoded_bytes(b"".join(f[2][:3]))) <= read_budget]
    found = readable or (found if exempt else [])
    if not found:
        return None
    size, kind, pieces = min(found, key=lambda f: f[0])
    return kind, pieces


def _plugin_deltas(new: Tensor, base: Tensor) -> list[tuple[int, str, list[bytes]]]:
    """Candidates from other registered update types that implement `encode`, each checked to rebuild `new` exactly."""
    found = []
    # A third-party update type that fails to load only loses its candidacy, like one that fails to encode.
    for name, plugin in plugins.loadable(plugins.UPDATES)[0].items():
        if name in BUILT_IN or plugin.encode is UpdateType.encode or not plugin.needs_base:
            continue
        update, exact = plugin(), False
        try:
            bundle = update.encode(new, base)
            if bundle is not None:
                bundle = Bundle(name, bundle.buffers, bundle.fields)
                exact = bytes(update.apply(bundle, base).data) == bytes(new.data)
        except Exception:  # noqa: BLE001 - a failing third-party encoder only loses its candidacy
            continue
        if exact and bundle is not None:  # a plugin that cannot rebuild what it encoded is never trusted with the data
            pieces = objects.encode(bundle)
            found.append((_size(pieces), name, pieces))
    return found


def _size(pieces: list[bytes]) -> int:
    return sum(len(piece) for piece in pieces)


def _dense_estimate(prior: ParamEntry, new: Tensor) -> float:
    """A dense copy's size: the prior chain's dense start (same shape and dtype), else a sampled estimate."""
    if prior.stored[0].update == "dense":
        return prior.stored[0].stored_bytes
    import numpy as np

    raw = np.frombuffer(new.data, dtype=np.uint8)
    return _compressed_estimate(raw, dtypes.itemsize(new.dtype))


def _xor_estimate(new_bits: np.ndarray[Any, Any], base_bits: np.ndarray[Any, Any], itemsize: int) -> float:
    import numpy as np

    total = new_bits.size
    window = max(1, SAMPLE_BYTES // itemsize)
    if total <= window * SAMPLE_WINDOWS:
        return _compressed_estimate(np.bitwise_xor(new_bits, base_bits).view(np.uint8), itemsize)
    starts = np.linspace(0, total - window, SAMPLE_WINDOWS).astype(np.int64)
    sample = np.concatenate([np.bitwise_xor(new_bits[s : s + window], base_bits[s : s + window]) for s in starts])
    return _compressed_estimate(sample.view(np.uint8), itemsize) * total / sample.size


def _compressed_estimate(raw: np.ndarray[Any, Any], itemsize: int) -> float:
    """Bytes the object encoding would need for `raw`, from zstd on (a sample of) it."""
    import numpy as np

    step = SAMPLE_BYTES - SAMPLE_BYTES % itemsize
    if raw.size <= step * SAMPLE_WINDOWS:
        return float(len(objects._compress_chunk(raw.data, itemsize)))
    starts = (np.linspace(0, raw.size // itemsize - step // itemsize, SAMPLE_WINDOWS).astype(np.int64)) * itemsize
    sample = sum(len(objects._compress_chunk(raw[s : s + step].data, itemsize)) for s in starts)
    return sample * raw.size / (step * SAMPLE_WINDOWS)
