"""The text view of a checkpoint that `git diff`, `git log -p` and `git show` line-diff (git theta textconv).

One header line, one line per parameter group (dtype, shape, update types, stored size, hash), one line for
file-level data. Metadata is rendered without loading any tensor or object, so it works in a fresh clone.

For committed versions the smudge filter passes metadata through when a
display-only git command started it (invoker.py). Git hands textconv the
working tree file itself (a real checkpoint, not metadata) when the version to
show is the one checked out; that file is read as the index's metadata when it
is unchanged since staging, and otherwise cleaned in memory (hashes and sizes
computed, nothing stored, index untouched). A rebuilt checkpoint from
elsewhere is matched to its metadata (identify.py).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from pathlib import Path

from git_theta import files, git, metadata
from git_theta.display import changes
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata
from git_theta.packed import packed
from git_theta.store import ObjectStore, object_id

# Fixed minimum widths (never computed from the content): one group's line must
# not change when another group is added, or git's line diff would show noise.
NAME_WIDTH = 48
SHAPE_WIDTH = 13
CHAIN_WIDTH = 12
SIZE_WIDTH = 10
HASH_CHARS = 12


def text_view(*, file: str) -> str:
    """The view of `file` (metadata or a checkpoint); a checkpoint that cannot be read is one `#` line saying why.

    Keeps `git diff` going for the other files; only a file that cannot be opened at all raises ThetaError.
    """
    try:
        with files.open_regular(file) as stream:
            head = stream.read(len(metadata.PREFIX))
    except OSError as error:
        raise ThetaError(f"textconv: cannot read {file}: {error.strerror}") from None
    if metadata.looks_like_metadata(head):
        with files.open_regular(file) as stream:
            return render(metadata.parse(stream.read(), file))
    try:
        meta = checkpoint_metadata(file)
    except ThetaError as error:
        return f"# git-theta: cannot show this file: {error}\n"
    return render(meta)


def render(meta: Metadata) -> str:
    """One header line, one line per parameter group (sorted by name), one line for file-level data."""
    opaque = packed(meta.file)
    # A packed group counts its logical elements (a Q4_K [4096,4096] holds 16.8M parameters), not its bytes.
    total = sum(math.prod(opaque[n].shape) if n in opaque else changes.elements(e) for n, e in meta.params.items())
    stored = sum(e.stored_size for e in meta.params.values())
    lines = [
        f"# git-theta {meta.format} checkpoint: {len(meta.params)} groups, {total:,} parameters, "
        f"{changes.human_size(stored)} stored"
    ]
    for name in sorted(meta.params):
        entry = meta.params[name]
        dtype, shape, note = entry.dtype, entry.shape, ""
        if name in opaque:  # GGUF quantized blocks: their own type and logical shape, not U8 [bytes]
            dtype, shape, note = opaque[name].type, opaque[name].shape, "  (quantized: shown by hash only)"
        lines.append(
            f"{name:<{NAME_WIDTH}} {dtype:<5} {changes.shape_text(shape):<{SHAPE_WIDTH}} "
            f"{changes.chain_text(entry):<{CHAIN_WIDTH}} {changes.human_size(entry.stored_size):>{SIZE_WIDTH}}  "
            f"{entry.hash[:HASH_CHARS]}{note}"
        )
    file_line = _file_data_line(meta)
    if file_line:
        lines.append(file_line)
    return "\n".join(lines) + "\n"


def _file_data_line(meta: Metadata) -> str:
    """Non-tensor data of the file (e.g. a safetensors header), so a change there shows too."""
    oids = sorted(metadata.file_objects(meta.file))
    if not oids:
        return ""
    size = sum(_sizes(meta.file))
    digest = hashlib.sha256("\n".join(oids).encode()).hexdigest()[:HASH_CHARS]
    return f"# file data: {len(oids)} object(s), {changes.human_size(size)}  {digest}"


def _sizes(value: object) -> Iterable[int]:
    if isinstance(value, dict):
        if isinstance(value.get("object"), str) and isinstance(value.get("size"), int):
            yield value["size"]
        for item in value.values():
            yield from _sizes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _sizes(item)


class DryStore(ObjectStore):
    """The repository's store, except that `put` computes ids and sizes and writes nothing (textconv must not store)."""

    def put(self, pieces: Iterable[bytes | memoryview], expect: str | None = None) -> tuple[str, int]:
        return object_id(pieces)


def checkpoint_metadata(file: str) -> Metadata:
    """Metadata for a file that holds a checkpoint rather than metadata.

    A working tree file unchanged since staging is the index's version; a
    version git rebuilt into a temp file is found by its hashes among the
    committed versions of its path; anything else is cleaned in memory.
    """
    from git_theta import clean, progress  # the format plugins: only for this case
    from git_theta.display import identify
    from git_theta.repo import Repo

    progress.set_quiet()  # cleaning here only computes a view: no bar under `git diff`

    root = git.toplevel()
    relative = os.path.relpath(os.path.abspath(file), root)
    in_worktree = not relative.startswith("..")
    repo = Repo.discover(root)
    dry_store = DryStore(repo.store.lfs_dir)
    dry = Repo(worktree=repo.worktree, common_dir=repo.common_dir, store=dry_store)
    if in_worktree:
        path = relative.replace(os.sep, "/")
        if _unchanged_since_staged(root, path):
            staged = git.blob(f":{path}", cwd=root)
            if staged is not None and metadata.looks_like_metadata(staged):
                return metadata.parse(staged, f":{path}")
    else:
        # git names its temp file after the path's last component; the full path is one of these.
        candidates = identify.tracked_paths_named(repo, os.path.basename(file))
        path = candidates[0] if candidates else os.path.basename(file)
        found = identify.find(repo, candidates, *identify.fingerprint(dry, path, Path(file), dry_store))
        if found is not None:
            return found
    with files.open_regular(file) as stream:
        return metadata.parse(clean.clean(dry, path, stream), file)


def _unchanged_since_staged(root: Path, path: str) -> bool:
    if git.blob(f":{path}", cwd=root) is None:
        return False
    return git.run("diff-files", "--quiet", "--", path, cwd=root, check=False).returncode == 0
