"""Merge checkpoint metadata: take what the plan settles, compute conflicts parameter by parameter (two in parallel).

Only conflicting parameters whose strategy computes a value are loaded: the
versions (and the base, for task-vector methods) of one parameter, as
float64, then the result is cast back to the parameter's dtype and stored as
a dense object. Two parameters are merged at a time (numpy releases the GIL),
so memory stays near 2 × (versions + a few temporaries) × one tensor in float64.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from git_theta import dtypes, parallel, plugins
from git_theta.clean import StoringSink
from git_theta.errors import CheckpointError, StoreError, ThetaError
from git_theta.merge.plan import Conflict, layout, plan
from git_theta.merge.policy import Choice
from git_theta.metadata import Metadata, ParamEntry
from git_theta.packed import Packed
from git_theta.packed import packed as packed_groups
from git_theta.smudge import StoreSource, rebuild
from git_theta.store import ObjectStore
from git_theta.tensor import Tensor
from git_theta.update_engine import auto

# Parameters computed at once (one per core of the tensor pool); each holds its versions in float64.
PARALLEL_MERGES = 2

Chooser = Callable[[Sequence[Conflict]], dict[str, Choice]]
FileSection = Callable[[Mapping[str, Any], Mapping[str, ParamEntry], Mapping[str, ParamEntry]], dict[str, Any]]


class MergeError(ThetaError):
    """The versions cannot be merged as asked (layouts differ, a side deleted the parameter, ...)."""


@dataclass
class MergeResult:
    metadata: Metadata
    one_sided: list[str]
    picked: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)

    def summary(self, path: str) -> str:
        untouched = len(self.metadata.params) - len(self.one_sided) - len(self.picked) - len(self.computed)
        return (
            f"git-theta: merged {path}: {untouched} parameter(s) unchanged or identical, {len(self.one_sided)} taken "
            f"from the side that changed them, {len(self.picked)} picked by strategy, {len(self.computed)} computed"
        )


def to_float64(tensor: Tensor) -> np.ndarray[Any, Any]:
    return tensor.numpy().astype(np.float64)


def from_float64(array: np.ndarray[Any, Any], dtype: str) -> Tensor:
    """Cast a merged value back: floats round to nearest, integers round and clip, bools threshold at 0.5."""
    target = dtypes.numpy_dtype(dtype)
    if dtypes.is_float(dtype):
        return Tensor.from_numpy(array.astype(target), dtype)
    if dtype == "BOOL":
        return Tensor.from_numpy(array >= 0.5, dtype)
    info = np.iinfo(target)
    return Tensor.from_numpy(np.clip(np.rint(array), info.min, info.max).astype(target), dtype)


def merge_metadata(
    store: ObjectStore,
    path: str,
    versions: Sequence[Metadata],
    base: Metadata | None,
    labels: Sequence[str],
    choose: Chooser,
    exhaustive: bool = False,
    file_section: FileSection | None = None,
) -> MergeResult:
    """The merged metadata of `versions` (ours first) over `base`; stores new objects (`exhaustive`: see plan).

    `file_section(file, before, after)` replaces the format's file_for_params: a caller that merges several files
    as one (git_theta/merge/bundle.py) rebuilds what this file alone cannot."""
    formats = {meta.format for meta in [*versions, *([base] if base else [])]}
    if len(formats) != 1:
        raise MergeError(
            f"{path}: the versions are in different checkpoint formats ({', '.join(sorted(formats))}); they cannot be "
            "merged"
        )
    checkpoint = plugins.checkpoint(versions[0].format)()
    refusal = checkpoint.merge_refusal([meta.file for meta in versions], base.file if base else None)
    if refusal is not None:
        raise MergeError(f"{path}: {refusal}")
    settled = plan(versions, base, exhaustive)
    choices = choose(settled.conflicts) if settled.conflicts else {}
    packed = _packed(versions, base)
    for conflict in settled.conflicts:
        _check_packed(path, conflict, choices[conflict.name], packed)
        _check(path, conflict, choices[conflict.name], labels)
    _check_objects(store, path, settled.conflicts, choices)
    result = MergeResult(Metadata(versions[0].format), settled.one_sided)
    params = dict(settled.taken)
    params.update(_merge_conflicts(store, path, settled.conflicts, choices, result))
    start = next((meta for meta in versions if base is not None and meta.file != base.file), versions[0])
    source = StoreSource(store, params, path)  # file_for_params reads the merged groups
    try:
        if file_section is not None:
            file = file_section(start.file, start.params, params)
        else:
            file = checkpoint.file_for_params(start.file, start.params, params, source, StoringSink(store, []))
    except CheckpointError as error:  # the format's refusal, which does not know the path
        raise MergeError(f"{path}: {error}") from None
    result.metadata = Metadata(start.format, file, dict(sorted(params.items())))
    return result


def _packed(versions: Sequence[Metadata], base: Metadata | None) -> dict[str, Packed]:
    """Groups any version stores as opaque packed bytes (GGUF quantized blocks), by name."""
    found: dict[str, Packed] = {}
    for meta in [*versions, *([base] if base else [])]:
        found.update(packed_groups(meta.file))
    return found


def _check_packed(path: str, conflict: Conflict, choice: Choice, packed: dict[str, Packed]) -> None:
    """Value arithmetic on packed bytes would be meaningless: refuse it, naming the tensor's own type."""
    if conflict.name in packed and choice.plugin().pick(choice.arguments) is None:
        raise MergeError(
            f"{path}: parameter {conflict.name!r} is a {packed[conflict.name].describe()} tensor stored as packed "
            f"bytes (quantized); strategy {choice.strategy!r} cannot merge its values (use ours, theirs or base)"
        )


def _check(path: str, conflict: Conflict, choice: Choice, labels: Sequence[str]) -> None:
    """Fail before any work when a choice cannot apply to this parameter."""
    strategy = choice.plugin()
    where = f"{path}: parameter {conflict.name!r} ({choice.source})"
    index = strategy.pick(choice.arguments)
    if index is not None:
        if index < 0 and conflict.base is None and strategy.needs_base:
            return  # taking an absent base means deleting the parameter
        if index >= len(conflict.versions):
            raise MergeError(
                f"{where}: strategy {choice.strategy!r} takes version {index + 1}, but there are only "
                f"{len(conflict.versions)}"
            )
        return
    for label, entry in zip(labels, conflict.versions):
        if entry is None:
            raise MergeError(
                f"{where}: deleted in {label} and changed elsewhere; strategy {choice.strategy!r} cannot merge that "
                "(use ours, theirs or base)"
            )
    layouts = {layout(entry) for entry in conflict.versions if entry is not None}
    refusal = dtypes.arithmetic_refusal(next(e for e in conflict.versions if e is not None).dtype)
    if refusal is not None:  # packed F4/F6 or complex: no real numbers to compute with (said before "not a float")
        raise MergeError(f"{where}: {refusal}; strategy {choice.strategy!r} cannot merge it (use ours, theirs or base)")
    _check_float(path, conflict, choice)
    if len(layouts) > 1:
        found = ", ".join(f"{label} {layout(e)}" for label, e in zip(labels, conflict.versions) if e is not None)
        raise MergeError(
            f"{where}: dtype or shape differ between sides ({found}); strategy {choice.strategy!r} cannot merge them "
            "(use ours or theirs)"
        )
    if strategy.uses_base(choice.arguments):
        if conflict.base is None:
            raise MergeError(
                f"{where}: has no merge-base version (added on several sides); strategy {choice.strategy!r} needs one"
            )
        if layout(conflict.base) not in layouts:
            raise MergeError(
                f"{where}: the merge base has {layout(conflict.base)}, the sides {layouts.pop()}; strategy "
                f"{choice.strategy!r} needs the same layout"
            )


def _check_float(path: str, conflict: Conflict, choice: Choice) -> None:
    """Refuse to compute a value from integer or packed-quantized data (the one check, before any float64 conversion).

    Rounding an average of packed 4-bit codes or of token ids back to integers gives valid-looking garbage;
    picking a version as is stays possible.
    """
    for entry in (*conflict.versions, conflict.base):
        if entry is not None and not dtypes.is_float(entry.dtype):
            raise MergeError(
                f"{path}: cannot merge parameter {conflict.name!r} with {choice.strategy!r}: {entry.dtype} values are "
                "quantized/integer data; pick ours, theirs or base for it in .thetamerge.toml (or with --strategy)"
            )


def _check_objects(store: ObjectStore, path: str, conflicts: Sequence[Conflict], choices: dict[str, Choice]) -> None:
    """Every object a computed parameter needs is here (else fail before storing anything)."""
    for conflict in conflicts:
        strategy = choices[conflict.name].plugin()
        if strategy.pick(choices[conflict.name].arguments) is not None:
            continue
        entries = [*conflict.versions, conflict.base if strategy.uses_base(choices[conflict.name].arguments) else None]
        missing = [oid for entry in entries if entry is not None for oid in entry.objects() if not store.has(oid)]
        if missing:
            raise StoreError(
                f"{path}: parameter {conflict.name!r} needs object {missing[0]}, missing from the store; fetch it "
                "first (`git theta fetch --all`) and merge again"
            )


def _merge_conflicts(
    store: ObjectStore, path: str, conflicts: Sequence[Conflict], choices: dict[str, Choice], result: MergeResult
) -> dict[str, ParamEntry]:
    """Picked entries at once; computed ones on the tensor pool, at most PARALLEL_MERGES at a time."""
    merged: dict[str, ParamEntry] = {}
    pending: deque[tuple[str, parallel.Job[ParamEntry]]] = deque()
    try:
        for conflict in conflicts:
            choice = choices[conflict.name]
            index = choice.plugin().pick(choice.arguments)
            if index is not None:
                result.picked.append(conflict.name)
                entry = conflict.base if index < 0 else conflict.versions[index]
                if entry is not None:
                    merged[conflict.name] = entry
                continue
            while len(pending) >= PARALLEL_MERGES:
                name, future = pending.popleft()
                merged[name] = future.result()
            result.computed.append(conflict.name)
            pending.append(
                (conflict.name, parallel.submit_tensor_job(functools.partial(_compute, store, path, conflict, choice)))
            )
        while pending:
            name, future = pending.popleft()
            merged[name] = future.result()
    finally:
        for _, future in pending:
            future.cancel()
    return merged


def _compute(store: ObjectStore, path: str, conflict: Conflict, choice: Choice) -> ParamEntry:
    """Load one parameter's versions as float64, merge, cast back, store (or reuse an equal input)."""
    strategy = choice.plugin()
    entries = [entry for entry in conflict.versions if entry is not None]
    arrays = [to_float64(rebuild(store, conflict.name, entry, path)) for entry in entries]
    base = (
        to_float64(rebuild(store, conflict.name, conflict.base, path))
        if strategy.uses_base(choice.arguments) and conflict.base
        else None
    )
    try:
        merged = strategy.merge(arrays, base, choice.arguments, conflict.name)
    except MergeError:
        raise
    except ThetaError as error:  # a strategy's own refusal (antipodal versions, density ± epsilon, ...): name the file
        raise MergeError(f"{path}: {error}") from None
    del arrays, base
    first = entries[0]
    if merged.shape != first.shape:
        raise MergeError(
            f"{path}: parameter {conflict.name!r}: strategy {choice.strategy!r} returned shape {list(merged.shape)}, "
            f"expected {list(first.shape)}"
        )
    tensor = from_float64(merged, first.dtype)
    digest = tensor.hash()
    same = next((e for e in [*entries, conflict.base] if e is not None and e.hash == digest), None)
    if same is not None:
        return same
    return auto.store_dense(store, tensor, digest)
