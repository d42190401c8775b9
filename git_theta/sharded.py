"""Sharded Hugging Face checkpoints as one model: `model.safetensors.index.json` and its shards.

transformers (save_pretrained with max_shard_size) and huggingface_hub (save_torch_state_dict) write a large
model as shards `model-0000k-of-0000n.safetensors` beside an index

    {"metadata": {"total_size": ...}, "weight_map": {"tensor name": "model-00001-of-00002.safetensors", ...}}

Each shard is an ordinary tracked safetensors checkpoint (its own metadata, its tensors stored per group); the
index is a small plain file in git. Read together, they are one model: the API loads it whole, and `git theta
diff` / `git theta log` given the index compare models, where a tensor that went to another shard (re-sharding
with another max_shard_size) is a move, not a removal plus an addition. Its bytes are the same, so re-sharding
stores no new tensor object, only the new shards' headers.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

from git_theta import git, snapshots
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata, ParamEntry, unique_keys
from git_theta.repo import Repo

INDEX_SUFFIX = ".index.json"
# Limits on an index (docs/checkpoint-formats.md, "Sharded checkpoints"): checked before it is parsed / used.
MAX_INDEX_BYTES = 64 << 20
MAX_INDEX_TENSORS = 1_000_000
_SHARD_NUMBER = re.compile(r"-(\d+)-of-(\d+)\.[A-Za-z0-9]+$")


class ShardIndexError(ThetaError):
    """An index file that is not a valid weight_map, or shards that do not hold what it says."""


@dataclass(frozen=True)
class Move:
    """A tensor that is in another shard file than before (its content may have changed too)."""

    name: str
    old_shard: str
    new_shard: str
    entry: ParamEntry  # the new side's

    def text(self) -> str:
        old, new = _SHARD_NUMBER.search(self.old_shard), _SHARD_NUMBER.search(self.new_shard)
        if old and new:
            return f"moved from shard {int(old[1])} of {int(old[2])} to shard {int(new[1])} of {int(new[2])}"
        return f"moved from {posixpath.basename(self.old_shard)} to {posixpath.basename(self.new_shard)}"


@dataclass
class ShardedModel:
    """One side of a sharded model: every tensor of the weight_map with the shard (repo path) holding it."""

    index_path: str
    params: dict[str, ParamEntry] = field(default_factory=dict)
    shard_of: dict[str, str] = field(default_factory=dict)

    @property
    def shards(self) -> list[str]:
        return sorted(set(self.shard_of.values()))

    def as_metadata(self) -> Metadata:
        return Metadata("sharded", {}, dict(self.params))


def is_index(path: str) -> bool:
    return path.endswith(INDEX_SUFFIX)


def parse_index(data: bytes, where: str) -> dict[str, str]:
    """The weight_map {tensor name: shard file name} of an index, validated."""
    if len(data) > MAX_INDEX_BYTES:
        raise ShardIndexError(f"{where}: index is {len(data)} bytes, more than the limit of {MAX_INDEX_BYTES}")
    try:
        index = json.loads(data, object_pairs_hook=unique_keys)
    except RecursionError:
        raise ShardIndexError(f"{where}: index is nested too deeply to be a shard index") from None
    except ValueError as error:
        raise ShardIndexError(f"{where}: index is not valid JSON: {error}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise ShardIndexError(f'{where}: index has no "weight_map" object of tensor names to shard files')
    if len(weight_map) > MAX_INDEX_TENSORS:
        raise ShardIndexError(
            f"{where}: weight_map lists {len(weight_map)} tensors, more than the limit of {MAX_INDEX_TENSORS}"
        )
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not _plain_relative(shard):
            raise ShardIndexError(
                f"{where}: tensor {name[:80]!r} maps to {str(shard)[:80]!r}, not a file name beside the index"
            )
    return weight_map


def _plain_relative(shard: str) -> bool:
    """A shard lies beside the index or below it: no absolute path, no "..", no backslash, no empty part."""
    parts = shard.split("/")
    return bool(shard) and "\\" not in shard and all(part not in ("", ".", "..") for part in parts)


def shard_path(index_path: str, shard: str) -> str:
    return posixpath.join(posixpath.dirname(index_path), shard)


def _index_bytes(repo: Repo, side: str, index_path: str) -> bytes | None:
    if side == snapshots.WORKTREE:
        path = repo.worktree / index_path
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ShardIndexError(
                f"{index_path}: index is {path.stat().st_size} bytes, more than the limit of {MAX_INDEX_BYTES}"
            )
        return path.read_bytes()
    return git.blob(f":{index_path}" if side == snapshots.INDEX else f"{side}:{index_path}", cwd=repo.worktree)


def model_at(repo: Repo, side: str, index_path: str) -> ShardedModel | None:
    """The sharded model of index `index_path` on `side` (a revision, INDEX or WORKTREE); None if no index there.

    Every tensor of the weight_map must be in the shard the map names; a shard that is absent or not a
    git-theta checkpoint there is an error naming it.
    """
    data = _index_bytes(repo, side, index_path)
    if data is None:
        return None
    where = f"{snapshots.label(side)}:{index_path}"
    weight_map = parse_index(data, where)
    wanted = sorted({shard_path(index_path, shard) for shard in weight_map.values()})
    shards = snapshots.at(repo, side, wanted) if wanted else {}
    model = ShardedModel(index_path)
    for name, shard in weight_map.items():
        path = shard_path(index_path, shard)
        meta = shards.get(path)
        if meta is None:
            raise ShardIndexError(
                f"{where}: shard {shard} (holding {name[:80]!r}) is missing at {snapshots.label(side)}"
                " or not tracked by git-theta"
            )
        entry = meta.params.get(name)
        if entry is None:
            raise ShardIndexError(f"{where}: tensor {name[:80]!r} is not in {shard}, the shard its weight_map names")
        model.params[name] = entry
        model.shard_of[name] = path
    return model


def moves_text(moves: list[Move]) -> str:
    return f"{len(moves)} moved between shards" if moves else ""
