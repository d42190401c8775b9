"""`git theta add PATH --update-type T --update-data FILE`: apply an update file and stage the result.

Steps, in an order that leaves nothing behind on a mismatch:
  1. read the checkpoint and the update file into memory; match every update
     entry to a parameter and validate shapes and dtypes (errors stop here);
  2. compute each new tensor with the update type's own `apply`, the exact
     bits checkout will rebuild;
  3. store the update objects (and a dense base where the base is not stored yet),
     leave a pending record for the clean filter (git_theta.update_engine.pending);
  4. rewrite PATH with the new tensors and run `git add PATH`; on failure the
     original file is put back. The record is removed in every case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from git_theta import clean, dtypes, files, git, objects, plugins
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata, ParamEntry, StoredLink
from git_theta.objects import Bundle
from git_theta.repo import Repo
from git_theta.sideload import lora_config, peft
from git_theta.store import object_id
from git_theta.tensor import Tensor
from git_theta.update_engine import auto, pending
from git_theta.updates import low_rank
from git_theta.updates.base import SideLoad, UpdateType, cast_to


def side_loadable(name: str) -> type[UpdateType]:
    """The update type `name`, if it can be side-loaded (declares `side_load_suffixes`); else a ThetaError listing
    the types that can."""
    plugin = plugins.update(name)
    if not plugin.side_load_suffixes:
        can = [n for n, p in plugins.loadable(plugins.UPDATES)[0].items() if p.side_load_suffixes]
        raise ThetaError(f"update type {name!r} cannot be side-loaded; types that can: {', '.join(can) or 'none'}")
    return plugin


class _MemoryCheckpoint:
    """A checkpoint's tensors and blobs, read into memory: the sink for a format's `read`, the source for its
    `write`."""

    def __init__(self) -> None:
        self.by_name: dict[str, Tensor] = {}
        self.blobs: dict[str, bytes] = {}

    def add(self, name: str, tensor: Tensor) -> None:
        # A copy: a format may reuse the buffer after `add` returns (see ParamSink).
        self.by_name[name] = Tensor(tensor.dtype, tensor.shape, bytes(tensor.data))

    def put_blob(self, data: bytes) -> dict[str, Any]:
        oid, size = object_id(objects.encode_blob(data))
        self.blobs[oid] = data
        return {"object": oid, "size": size}

    def tensors(self, names: Sequence[str]) -> Iterator[Tensor]:
        return (self.by_name[name] for name in names)

    def get_blob(self, ref: Mapping[str, Any]) -> bytes:
        return self.blobs[ref["object"]]


@dataclass
class Updates:
    """What an update file does to a checkpoint."""

    bundles: dict[str, Bundle]  # parameter -> update object
    replaced: dict[str, Tensor]  # parameter -> its new value, saved whole by the adapter (modules_to_save)


def make_updates(update_type: str, checkpoint: Mapping[str, Tensor], update_file: Path, alpha: float | None) -> Updates:
    """The update objects and saved parameters of the update file, validated against the checkpoint."""
    plugin = side_loadable(update_type)
    tensors = peft.read_update_file(update_file)
    if not tensors:
        raise ThetaError(f"update file {update_file} holds no tensors")
    try:
        adapter = peft.read_adapter_config(update_file)
        if plugin.name == low_rank.NAME:
            lora_config.refuse_unsupported(adapter)
    except ThetaError as error:
        raise ThetaError(f"{update_file}: {error}") from None
    layout = {name: (t.dtype, t.shape) for name, t in checkpoint.items()}
    grouped = peft.group_by_param(plugin, tensors, layout, str(update_file), adapter)
    update, context = plugin(), SideLoad(checkpoint, update_file, alpha, adapter)
    bundles: dict[str, Bundle] = {}
    origin = {param: repr(key) for param, (key, _) in grouped.replaced.items()}  # parameter -> its entries
    for param, roles in grouped.roles.items():
        base = checkpoint[param]
        try:
            made = update.side_load(param, base, roles, context)
        except ThetaError as error:
            raise ThetaError(f"{update_file}: parameter {param!r} ({base.dtype}{list(base.shape)}): {error}") from None
        for target in made:
            if target in origin:
                raise _two_updates(update_file, target, origin[target], grouped.entries[param])
            origin[target] = grouped.entries[param]
        bundles.update(made)
    replaced = {
        param: _saved_value(update_file, key, value, checkpoint[param])
        for param, (key, value) in grouped.replaced.items()
    }
    return Updates(bundles, replaced)


def _saved_value(update_file: Path, key: str, value: Tensor, current: Tensor) -> Tensor:
    """A saved module's tensor as the checkpoint holds it: same shape; a float of another float dtype is rounded to
    the checkpoint's (to nearest even, as PEFT's load_state_dict copies it into the loaded model)."""
    if value.shape != current.shape:
        raise ThetaError(
            f"{update_file}: entry {key!r} has shape {list(value.shape)}, the checkpoint's parameter "
            f"{list(current.shape)}"
        )
    if value.dtype == current.dtype:
        return value
    if not (dtypes.is_float(value.dtype) and dtypes.is_float(current.dtype)):
        raise ThetaError(f"{update_file}: entry {key!r} is {value.dtype}, the checkpoint's parameter {current.dtype}")
    return cast_to(value.numpy(), current.dtype, current.shape)


def _two_updates(update_file: Path, param: str, first: str, second: str) -> ThetaError:
    """One parameter, two updates: applying both in some order (or keeping one) would commit a value nobody trained."""
    why = ""
    if param.endswith(".bias"):
        why = (
            " (PEFT's IA3 scales an output-scaled layer's bias with that layer's own vector, so a separate bias entry "
            "is not PEFT's)"
        )
    return ThetaError(
        f"{update_file}: parameter {param!r} gets two updates, from {first} and from {second}{why}; remove one of the "
        "entries"
    )


def _base_chain(repo: Repo, prior: list[Metadata], base: Tensor, digest: str) -> tuple[StoredLink, ...]:
    """Links that rebuild `base`: an earlier stored version with its hash if its chain has room, else a new dense
    object."""
    for meta in prior:
        for entry in meta.params.values():
            if (
                entry.hash == digest
                and len(entry.stored) < auto.MAX_CHAIN_DEPTH
                and all(repo.store.has(o) for o in entry.objects())
            ):
                return entry.stored
    return auto.store_dense(repo.store, base, digest).stored


def stage(
    repo: Repo, path: str, update_type: str, update_file: Path, alpha: float | None
) -> tuple[dict[str, ParamEntry], list[str]]:
    """Apply the update file to the checkpoint at `path` (relative to the top level), rewrite it, stage it.

    Returns the updated parameters' entries and the names of the parameters replaced by saved modules (those are
    not in the pending record: the clean filter stores them as any changed tensor, by automatic selection)."""
    root = git.toplevel(cwd=repo.worktree)
    if git.check_attr("filter", path, cwd=root) != "theta":
        raise ThetaError(f"{path} is not tracked by git-theta; run `git theta track` on it first")
    target = root / path
    memory, checkpoint, file_section = _read_checkpoint(repo, path, target)
    updates = make_updates(update_type, memory.by_name, update_file, alpha)
    prior = repo.prior_metadata(path)
    before = _layout(memory)
    memory.by_name.update(updates.replaced)
    entries: dict[str, ParamEntry] = {}
    for param, bundle in sorted(updates.bundles.items()):
        base = memory.by_name[param]
        new = plugins.update(bundle.kind)().apply(bundle, base)
        oid, size = repo.store.put(objects.encode(bundle))
        chain = (*_base_chain(repo, prior, base, bundle.fields["base"]), StoredLink(bundle.kind, oid, size))
        entries[param] = ParamEntry(new.dtype, new.shape, new.hash(), chain)
        memory.by_name[param] = new
    pending.write(repo.common_dir, path, entries)
    try:
        # The format may need a new file section for new values (a .pt zip records each storage's CRC-32).
        file_section = checkpoint.file_for_params(file_section, before, _layout(memory), memory, memory)
        _rewrite_and_add(root, path, target, checkpoint, file_section, memory)
    finally:
        pending.remove(repo.common_dir, path)
    return entries, sorted(updates.replaced)


def _read_checkpoint(repo: Repo, path: str, target: Path) -> tuple[_MemoryCheckpoint, Any, dict[str, Any]]:
    memory = _MemoryCheckpoint()
    try:
        with files.open_regular(target) as stream:
            checkpoint = clean.choose_format(repo, path, stream.read(4096))
            stream.seek(0)
            file_section = checkpoint.read(stream, path, memory)
    except OSError as error:
        raise ThetaError(f"cannot read {path}: {error.strerror}") from None
    except ThetaError as error:
        raise ThetaError(f"{path}: {error}") from None
    return memory, checkpoint, file_section


def _layout(memory: _MemoryCheckpoint) -> dict[str, ParamEntry]:
    """Entries (no stored links) describing the tensors held in memory now."""
    return {name: ParamEntry(t.dtype, t.shape, t.hash(), ()) for name, t in memory.by_name.items()}


def _rewrite_and_add(
    root: Path, path: str, target: Path, checkpoint: Any, file_section: dict[str, Any], memory: _MemoryCheckpoint
) -> None:
    """Write the new file next to the old one, swap them, `git add`; put the old one back on failure."""
    params = _layout(memory)
    mode = target.stat().st_mode & 0o7777
    with files.temp_file(target.parent, f".{target.name}.") as (out, new_name):
        backup = new_name.with_name(f"{new_name.name}.orig")
        try:
            checkpoint.write(file_section, params, memory, out)
            os.replace(target, backup)
            try:
                files.replace(out, new_name, target, mode)
                git.run("add", "--", path, cwd=root)
            except BaseException:  # the user's file comes back whatever failed (disk full at the sync too)
                os.replace(backup, target)
                raise
        finally:
            backup.unlink(missing_ok=True)
