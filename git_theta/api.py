"""The Python API: read any version of a checkpoint without a checkout, save a state dict as a commit.

`import git_theta` stays light: numpy, torch and the store are imported
inside the functions that need them. The examples below run in a repository
where `git theta install` and `git theta track '*.safetensors'` were done;
tests/api_test.py executes them.

    >>> import numpy as np
    >>> import git_theta
    >>> first = git_theta.save({"w": np.ones((2, 3), dtype=np.float32)}, "model.safetensors", message="v1")
    >>> second = git_theta.save({"w": np.zeros((2, 3), dtype=np.float32)}, "model.safetensors", message="v2")
    >>> git_theta.load("model.safetensors", rev="HEAD~1")["w"].tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    >>> git_theta.load_param("model.safetensors", "w", rev=first).sum().item()
    6.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Union

if TYPE_CHECKING:
    from git_theta.checkpoints.base import CheckpointFormat
    from git_theta.metadata import Metadata
    from git_theta.repo import Repo
    from git_theta.tensor import Tensor

Framework = Literal["numpy", "torch"]
PathLike = Union[str, "os.PathLike[str]"]


def load(
    path: PathLike, rev: str = "HEAD", repo: PathLike | None = None, framework: Framework = "numpy"
) -> dict[str, Any]:
    """Every parameter group of checkpoint `path` at revision `rev`, as {name: array}.

    `path` is relative to `repo` (default: the current directory) or absolute
    (then `repo` defaults to the repository holding it); `rev` is any revision git
    understands, or ":" for the index. The working tree is not touched.
    Arrays are numpy (bf16 and fp8 as ml_dtypes types) or, with
    framework="torch", torch tensors (bf16 as torch.bfloat16).

        >>> weights = git_theta.load("model.safetensors", rev="HEAD")
        >>> sorted(weights), weights["w"].dtype.name
        (['w'], 'float32')

    A sharded Hugging Face checkpoint loads whole through its index: give
    `model.safetensors.index.json` (any path ending in .index.json) and get
    every tensor of its weight_map, each read from the shard the map names
    (see docs/checkpoint-formats.md, "Sharded checkpoints").
    """
    from git_theta import smudge

    if os.fspath(path).endswith(".index.json"):
        return _load_sharded(path, rev, repo, framework)
    store_repo, where, meta = _checkpoint(path, rev, repo)
    _check_objects(store_repo, meta, where)
    return {
        name: _convert(smudge.rebuild(store_repo.store, name, entry, where), framework)
        for name, entry in meta.params.items()
    }


def load_param(
    path: PathLike, name: str, rev: str = "HEAD", repo: PathLike | None = None, framework: Framework = "numpy"
) -> Any:
    """One parameter group of checkpoint `path` at `rev`; only its objects are read.

    >>> git_theta.load_param("model.safetensors", "w", rev="HEAD", framework="torch").shape
    torch.Size([2, 3])
    """
    import difflib

    from git_theta import smudge
    from git_theta.errors import ThetaError

    store_repo, where, meta = _checkpoint(path, rev, repo)
    entry = meta.params.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(meta.params), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else f"; it has {len(meta.params)} groups (see `git theta show {rev}:{where.split(':', 1)[-1]}`)"
        )
        raise ThetaError(f"{where}: no parameter group {name!r}{hint}")
    return _convert(smudge.rebuild(store_repo.store, name, entry, where), framework)


def save(
    state_dict: Mapping[str, Any],
    path: PathLike,
    message: str,
    repo: PathLike | None = None,
    format: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write `state_dict` ({name: numpy array or torch tensor}) to `path`, `git add` and commit it; returns the
    commit id.

    The file is written by the checkpoint format plugin named `format`, else the
    one whose extensions match `path` (safetensors for .safetensors, torch.save
    for .pt/.pth/.bin, numpy.savez for .npz, or a plugin's), with its
    `write_new`. The path must be tracked (`git theta track`); only this path is
    committed, whatever else is staged. A safetensors file keeps the `__metadata__`
    of the file it replaces (transformers reads its {"format": "pt"}), unless
    `metadata` gives another (`{}` for none); other formats take no metadata.

        >>> commit = git_theta.save({"w": np.full((2, 3), 2, dtype=np.float32)}, "model.safetensors", message="v3")
        >>> len(commit)
        40
    """
    from git_theta import git, snapshots
    from git_theta.errors import ThetaError
    from git_theta.files import write_atomically

    here = _start(path, repo)
    root = git.toplevel(here)
    relative = snapshots.repo_paths(root, [os.fspath(path)], cwd=here)[0]
    if git.check_attr(snapshots.FILTER_ATTRIBUTE, relative, cwd=root) != snapshots.FILTER_NAME:
        raise ThetaError(
            f"{relative}: not tracked by git-theta; run `git theta track` with a pattern that matches it first"
        )
    tensors = {str(name): _to_tensor(name, value) for name, value in state_dict.items()}
    target = root / relative
    writer = _writer(relative, format)
    write = _metadata_writer(writer, target, metadata, relative)
    try:
        write_atomically(target, lambda out: write(tensors, out))
    except ThetaError as error:
        raise ThetaError(f"{relative}: {error}") from None
    git.run("add", "--", relative, cwd=root)
    has_head = git.run("rev-parse", "--verify", "--quiet", "HEAD", cwd=root, check=False).returncode == 0
    if (
        has_head
        and git.run("diff", "--cached", "--quiet", "HEAD", "--", relative, cwd=root, check=False).returncode == 0
    ):
        raise ThetaError(f"{relative}: the same as at HEAD; nothing to commit")
    git.run("commit", "-q", "-m", message, "--only", "--", relative, cwd=root)
    return git.output("rev-parse", "HEAD", cwd=root)


def _load_sharded(path: PathLike, rev: str, repo: PathLike | None, framework: Framework) -> dict[str, Any]:
    """Every tensor of a sharded checkpoint's weight_map at `rev`, each from the shard the map names."""
    from git_theta import sharded, smudge
    from git_theta.errors import ThetaError
    from git_theta.metadata import Metadata

    store_repo, side, relative = _side(path, rev, repo)
    model = sharded.model_at(store_repo, side, relative)
    if model is None:
        raise ThetaError(f"{relative}: no such index file at {'the index' if side == ':' else rev}")
    for shard in model.shards:
        held = {name: entry for name, entry in model.params.items() if model.shard_of[name] == shard}
        _check_objects(store_repo, Metadata("sharded", {}, held), f"{rev}:{shard}")
    found = {}
    for name, entry in model.params.items():
        tensor = smudge.rebuild(store_repo.store, name, entry, f"{rev}:{model.shard_of[name]}")
        found[name] = _convert(tensor, framework)
    return found


def _side(path: PathLike, rev: str, repo: PathLike | None) -> tuple[Repo, str, str]:
    """(repo, side for git_theta.snapshots, path from the top level) of `path` at `rev`, the revision checked."""
    from git_theta import git, snapshots
    from git_theta.errors import ThetaError
    from git_theta.repo import Repo

    here = _start(path, repo)
    root = git.toplevel(here)
    relative = snapshots.repo_paths(root, [os.fspath(path)], cwd=here)[0]
    side = snapshots.INDEX if rev == ":" else rev
    if side != snapshots.INDEX and git.commit_id(side, root) is None:
        raise ThetaError(f"{rev}: not a revision in the repository at {root}")
    return Repo.discover(root), side, relative


def _checkpoint(path: PathLike, rev: str, repo: PathLike | None) -> tuple[Repo, str, Metadata]:
    """(repo, "rev:path" for messages, metadata) of `path` at `rev`."""
    from git_theta import snapshots
    from git_theta.errors import ThetaError

    store_repo, side, relative = _side(path, rev, repo)
    meta = snapshots.blob_metadata(store_repo, side, relative)
    if meta is None:
        raise ThetaError(
            f"{relative}: no git-theta checkpoint at {snapshots.label(side)} (absent, or not stored by git-theta)"
        )
    return store_repo, f"{rev}:{relative}", meta


def _start(path: PathLike, repo: PathLike | None) -> Path:
    """Where to look for the repository: `repo`, else the directory of an absolute `path`, else here."""
    if repo is not None:
        return Path(repo).resolve()
    return Path(path).resolve().parent if Path(path).is_absolute() else Path.cwd()


def _check_objects(repo: Repo, meta: Metadata, where: str) -> None:
    from git_theta import smudge
    from git_theta.errors import StoreError

    missing = smudge.missing_objects(repo.store, meta)
    if missing:
        raise StoreError(
            f"{where}: {len(missing)} object(s) missing from the store, e.g. {missing[0]}; fetch them from a remote "
            "(git theta fetch)"
        )


def _convert(tensor: Tensor, framework: Framework) -> Any:
    """A writable numpy array or torch tensor holding the tensor's values."""
    if framework == "numpy":
        array = tensor.numpy()
        return array if array.flags.writeable else array.copy()
    if framework == "torch":
        from git_theta.checkpoints.pytorch import to_torch

        return to_torch(tensor)
    from git_theta.errors import ThetaError

    raise ThetaError(f"unknown framework {framework!r}; use 'numpy' or 'torch'")


def _to_tensor(name: object, value: Any) -> Tensor:
    """A numpy array (ml_dtypes for bf16/fp8) or torch tensor as raw bytes with our dtype name."""
    import numpy as np

    from git_theta.errors import ThetaError
    from git_theta.tensor import Tensor

    if type(value).__module__.startswith("torch"):
        import torch

        from git_theta import dtypes

        names = {getattr(torch, attr): ours for ours, attr in dtypes.TORCH_NAMES.items() if hasattr(torch, attr)}
        if value.dtype not in names:
            raise ThetaError(f"parameter {name!r}: torch dtype {value.dtype} has no git-theta name")
        flat = value.detach().cpu().contiguous().reshape(-1)
        raw: np.ndarray[Any, Any] = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
        return Tensor(names[value.dtype], tuple(value.shape), raw.data.cast("B"))
    if isinstance(value, np.ndarray):
        return Tensor.from_numpy(value)
    raise ThetaError(
        f"parameter {name!r}: expected a numpy array or a torch tensor, got {type(value).__name__} (nested state "
        "dicts are not supported)"
    )


def _metadata_writer(
    writer: CheckpointFormat, target: Path, metadata: Mapping[str, str] | None, relative: str
) -> Callable[[Mapping[str, Tensor], BinaryIO], None]:
    """The writer's write_new, given the file-level metadata to keep or set (safetensors `__metadata__` only)."""
    from git_theta.checkpoints import safetensors
    from git_theta.errors import ThetaError

    if not isinstance(writer, safetensors.SafetensorsFormat):
        if metadata:
            raise ThetaError(f"{relative}: the {writer.name} format has no file metadata to set; pass metadata=None")
        return writer.write_new
    kept = safetensors.file_metadata(target) if metadata is None else dict(metadata)
    return lambda tensors, out: writer.write_new(tensors, out, metadata=kept)


def _writer(path: str, name: str | None) -> CheckpointFormat:
    """The format plugin `name`, else the one claiming `path`'s extension (first by name if several do)."""
    from git_theta import plugins
    from git_theta.errors import ThetaError

    if name is not None:
        return plugins.checkpoint(name)()
    formats: dict[str, type[CheckpointFormat]] = plugins.loadable(plugins.CHECKPOINTS)[0]
    for plugin in formats.values():
        if path.lower().endswith(tuple(plugin.extensions)):
            return plugin()
    known = ", ".join(e for plugin in formats.values() for e in plugin.extensions)
    raise ThetaError(f"{path}: cannot tell the checkpoint format; use a path ending in one of {known}, or pass format=")
