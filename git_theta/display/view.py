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

import functools
import hashlib
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from git_theta import dtypes, files, git, lfs_pointer, metadata
from git_theta.display import changes, lines
from git_theta.errors import ThetaError
from git_theta.metadata import Metadata
from git_theta.packed import packed
from git_theta.store import ObjectStore, object_id

# The C extension renders the rows _fast_row renders (~20x faster: at 10^5 groups, most of a `git diff`); without
# it, _fast_row renders every row. Either way the Python renderer decides every line the C one gives None.
# A canonical blob's parameter lines are rendered in one call (block_view) when all of them can be.
_Row = tuple[str, str, int, int]
_Widths = tuple[int, int, int, int, int, int]
_member_rows: Callable[[list[bytes], dict[str, int], int, int, _Widths], list[_Row | None]] | None
_block_view: Callable[[bytes, int, int, dict[str, int], int, int, _Widths], tuple[str, int, int, int] | None] | None
try:
    from git_theta._viewrows import block_view as _block_view
    from git_theta._viewrows import member_rows as _member_rows
except ImportError:
    _member_rows = _block_view = None
IMPLEMENTATION = "python" if _member_rows is None else "c"

if TYPE_CHECKING:
    from git_theta.repo import Repo

# Fixed minimum widths (never computed from the content): one group's line must
# not change when another group is added, or git's line diff would show noise.
NAME_WIDTH = 48
DTYPE_WIDTH = 5
SHAPE_WIDTH = 13
CHAIN_WIDTH = 12
SIZE_WIDTH = 10
HASH_CHARS = 12
# Every view starts so; no checkpoint format does. textconv copies such a file as it is (installation.py).
VIEW_PREFIX = b"# git-theta "


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
            return Renderer(remember=False).view(stream.read(), file)  # textconv: one version per process
    if head.startswith(VIEW_PREFIX):  # rendered by smudge already (smudged_view)
        with files.open_regular(file) as stream:
            return stream.read().decode("utf-8", errors="replace")
    try:
        meta = checkpoint_metadata(file)
    except ThetaError as error:
        return f"# git-theta: cannot show this file: {error}\n"
    return render(meta)


def smudged_view(data: bytes, source: str, repo: Repo | None = None) -> bytes:
    """What smudge writes for textconv under a display-only git command: the view of metadata.

    A git-lfs pointer (an LFS-era revision of a path git-theta now tracks) is viewed through its object in
    `repo`'s store (lfs_view). Any other blob (a checkpoint committed before its path was tracked) and metadata
    that does not parse go out as they are, for textconv to show or to report as it always has.
    """
    if not metadata.looks_like_metadata(data[: len(metadata.PREFIX)]):
        pointer = lfs_pointer.parse(data) if repo is not None else None
        return data if repo is None or pointer is None else lfs_view(repo, source, pointer).encode()
    try:
        return RENDERER.view(data, source).encode()
    except ThetaError:
        return data


def lfs_view(repo: Repo, path: str, pointer: lfs_pointer.Pointer) -> str:
    """The view of the checkpoint a git-lfs pointer names: its object (fetched when missing) cleaned without
    storing anything, so `git diff`/`git log -p` across the switch from git-lfs list the groups that changed.

    An object that is neither local nor downloadable is one line saying so (the other files' diffs go on);
    it starts like every view, so textconv copies it rather than cleaning it as a checkpoint.
    """
    from git_theta import progress, snapshots

    progress.set_quiet()  # no bar under `git diff`
    try:
        meta = snapshots.lfs_metadata(repo, path, pointer, path, into=dry_repo(repo))
    except ThetaError as error:
        return f"{VIEW_PREFIX.decode()}cannot show this git-lfs version: {str(error).splitlines()[0]}\n"
    return render(meta)


def render(meta: Metadata) -> str:
    """One header line, one line per parameter group (sorted by name), one line for file-level data."""
    opaque = packed(meta.file)
    # A packed group counts its logical elements (a Q4_K [4096,4096] holds 16.8M parameters), not its bytes.
    total = sum(math.prod(opaque[n].shape) if n in opaque else changes.elements(e) for n, e in meta.params.items())
    stored = sum(e.stored_size for e in meta.params.values())
    rows = []
    for name in sorted(meta.params):
        entry = meta.params[name]
        dtype, shape, note = entry.dtype, entry.shape, ""
        if name in opaque:  # GGUF quantized blocks: their own type and logical shape, not U8 [bytes]
            dtype, shape, note = opaque[name].type, opaque[name].shape, "  (quantized: shown by hash only)"
        rows.append(
            _row(name, dtype, changes.shape_text(shape), changes.chain_text(entry), entry.stored_size, entry.hash)
            + note
        )
    return _assemble(meta, len(meta.params), total, stored, rows)


def _row(name: str, dtype: str, shape: str, chain: str, stored: int, digest: str) -> str:
    return (
        f"{name:<{NAME_WIDTH}} {dtype:<{DTYPE_WIDTH}} {shape:<{SHAPE_WIDTH}} {chain:<{CHAIN_WIDTH}} "
        f"{_size_column(stored)}  {digest[:HASH_CHARS]}"
    )


@functools.lru_cache(maxsize=1 << 12)
def _size_column(stored: int) -> str:
    # Cached: the stored sizes of a version's small tensors repeat (members of a few KB), and formatting one costs
    # as much as the rest of its row.
    return f"{changes.human_size(stored):>{SIZE_WIDTH}}"


def _assemble(meta: Metadata, groups: int, total: int, stored: int, rows: list[str]) -> str:
    header = (
        f"# git-theta {meta.format} checkpoint: {groups} groups, {total:,} parameters, "
        f"{changes.human_size(stored)} stored"
    )
    file_line = _file_data_line(meta)
    return "\n".join([header, *rows, *([file_line] if file_line else [])]) + "\n"


# A canonical parameter line (metadata.py; commas between lines cut off), keys sorted, printable ASCII names
# (ensure_ascii escapes the rest): name, dtype, the hash's first 12 digits, shape, the links (each a whole object
# or a pack member). What it accepts metadata.parse accepts too, but for the dtype, element and link counts and
# the members' bounds, checked after the match; any other line goes to metadata.parse.
_TEXT = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"
_COUNT = r"(?:0|[1-9][0-9]{0,17})"
_PLAIN_LINK = r'"object":"[0-9a-f]{64}","size":' + _COUNT + r',"update":"' + _TEXT + '"'
_MEMBER_LINK = r'"length":' + _COUNT + r',"object":"[0-9a-f]{64}","offset":' + _COUNT + r',"size":' + _COUNT
_MEMBER_LINK += r',"update":"' + _TEXT + '"'
_ANY_LINK = r"\{(?:" + _MEMBER_LINK + "|" + _PLAIN_LINK + r")\}"
# One link's fields: a pack member's length and offset (both or neither), the object's size, the update.
_LINK_RE = re.compile(
    r'\{(?:"length":([0-9]+),)?"object":"[0-9a-f]{64}",(?:"offset":([0-9]+),)?"size":([0-9]+),"update":"([^"]*)"\}'
)
_LINE = re.compile(
    r'"(' + _TEXT + r')":\{"dtype":"([0-9A-Za-z_]{1,16})","hash":"([0-9a-f]{12})[0-9a-f]{52}",'
    r'"shape":\[(' + _COUNT + r"(?:," + _COUNT + r"){0,63})?\],"
    r'"stored":\[(' + _ANY_LINK + r"(?:," + _ANY_LINK + r")*)\]\}"
)
# The most common line by far (every small tensor's): one pack member. Its link is matched by the same pattern, as
# bytes (no decode of the line), so the row costs one match and no loop over links: the first view of a
# 10^5-group version is rendered in ~half the time.
_BYTES_TEXT = _TEXT.encode("ascii")
_BYTES_COUNT = _COUNT.encode("ascii")
_ONE_MEMBER_LINE = re.compile(
    rb'"(' + _BYTES_TEXT + rb')":\{"dtype":"([0-9A-Za-z_]{1,16})","hash":"([0-9a-f]{12})[0-9a-f]{52}",'
    rb'"shape":\[(' + _BYTES_COUNT + rb"(?:," + _BYTES_COUNT + rb"){0,63})?\],"
    rb'"stored":\[\{"length":('
    + _BYTES_COUNT
    + rb'),"object":"[0-9a-f]{64}","offset":('
    + _BYTES_COUNT
    + rb'),"size":('
    + _BYTES_COUNT
    + rb'),"update":"('
    + _BYTES_TEXT
    + rb')"\}\]\}'
)
_WIDTHS = (NAME_WIDTH, DTYPE_WIDTH, SHAPE_WIDTH, CHAIN_WIDTH, SIZE_WIDTH, HASH_CHARS)  # _row's columns, for _viewrows.c
_ROW_LIMITS = (dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, _WIDTHS)  # the checks _fast_row makes
MAX_CACHED_LINES = 1 << 18  # ~100 MB of remembered rows at most


class Renderer:
    """Text views of metadata, each parameter line rendered once per process (`remember`).

    The filter process renders every version a `git log -p` or `git diff A B` shows; consecutive versions share
    most lines, so a version costs a dict lookup per unchanged group and a parse of the changed ones. textconv
    renders one version per process: it remembers nothing (hashing 10^5 lines into the dict costs ~10% of a view).
    A version whose every line the C extension renders (block_view) skips all of that: at 10^5 groups its one
    pass took 0.06-0.13 s a version, the remembered rows 0.14-0.23 s even when every line was remembered.
    """

    def __init__(self, remember: bool = True) -> None:
        self.remember = remember
        # line -> (name, row, elements, stored bytes)
        self._rows: dict[bytes, tuple[str, str, int, int]] = {}

    def view(self, data: bytes, source: str) -> str:
        """render(metadata.parse(data, source)), the same text, for less."""
        where = lines.bounds(data) if len(data) <= metadata.MAX_BYTES else None
        meta = lines.parse_lines(lines.Layout(where[0], []), [], source) if where is not None else None
        if where is None or meta is None or packed(meta.file):  # GGUF's packed groups: rows read the file section
            return render(metadata.parse(data, source))
        if not data.startswith(b'{"version":"' + metadata.PACKED_VERSION.encode()) and b'"offset":' in data:
            return render(metadata.parse(data, source))  # pack members in version 1: metadata.parse refuses them
        if _block_view is not None:
            block = _block_view(data, where[1], where[2], *_ROW_LIMITS)
            if block is not None:  # every line rendered in C, in order: the rows below, without a list of lines
                rows, groups, total, stored = block
                return _assemble(meta, groups, total, stored, [rows] if groups else [])
        layout = lines.split(data)
        if layout is None:
            return render(metadata.parse(data, source))
        if self.remember:
            missing = [line for line in layout.params if line not in self._rows]
            if len(self._rows) + len(missing) > MAX_CACHED_LINES:
                self._rows.clear()
                missing = layout.params
            self._rows.update(zip(missing, _rows(layout, missing, source)))
            found = [self._rows[line] for line in layout.params]
        else:
            found = _rows(layout, layout.params, source)
        if any(a[0] >= b[0] for a, b in zip(found, found[1:])):
            return render(metadata.parse(data, source))  # not sorted, or a name twice: the whole parse decides
        total = sum(row[2] for row in found)
        stored = sum(row[3] for row in found)
        return _assemble(meta, len(found), total, stored, [row[1] for row in found])


def _rows(layout: lines.Layout, params: list[bytes], source: str) -> list[_Row]:
    """(name, row, elements, stored bytes) of each parameter line: compiled, else _fast_row, else parsed (which
    validates the line and raises on a bad one)."""
    found: list[_Row | None] = [None] * len(params) if _member_rows is None else _member_rows(params, *_ROW_LIMITS)
    slow = []
    for index, (line, row) in enumerate(zip(params, found)):
        if row is None:
            row = found[index] = _fast_row(line)
        if row is None:
            slow.append(index)
    if slow:
        parsed = lines.parse_lines(layout, [params[index] for index in slow], source).params
        for index, (name, entry) in zip(slow, parsed.items()):
            text = _row(name, entry.dtype, changes.shape_text(entry.shape), changes.chain_text(entry),
                        entry.stored_size, entry.hash)  # fmt: skip
            found[index] = (name, text, changes.elements(entry), entry.stored_size)
    return found  # type: ignore[return-value]  # every None was filled in


def _fast_row(line: bytes) -> tuple[str, str, int, int] | None:
    """(name, row, elements, stored bytes) of a canonical line, None for metadata.parse to read."""
    one = _ONE_MEMBER_LINE.fullmatch(line)
    if one is not None:
        return _one_member_row(*one.groups())
    try:
        match = _LINE.fullmatch(line.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    name, dtype, digest, shape, stored = match.groups()
    size, updates = 0, []
    for link in _LINK_RE.finditer(stored):
        length, offset, object_size, update = link.groups()
        if length is None:
            size += int(object_size)
        elif int(length) == 0 or int(offset) + int(length) > int(object_size):
            return None
        else:
            size += int(length)
        updates.append(update)
    if len(updates) > metadata.MAX_LINKS:
        return None
    elements = math.prod(map(int, shape.split(","))) if shape else 1
    if dtype not in dtypes.BITS or elements > metadata.MAX_ELEMENTS:
        return None  # metadata.parse says what is wrong
    return name, _row(name, dtype, f"[{shape or ''}]", "+".join(updates), size, digest), elements, size


def _one_member_row(
    name_bytes: bytes,
    dtype_bytes: bytes,
    digest: bytes,
    shape: bytes | None,
    length_text: bytes,
    offset: bytes,
    object_size: bytes,
    update: bytes,
) -> tuple[str, str, int, int] | None:
    """_fast_row's result for a line of one pack member, with the same checks."""
    length = int(length_text)
    if length == 0 or int(offset) + length > int(object_size):
        return None
    dtype = dtype_bytes.decode("ascii")
    elements = math.prod(map(int, shape.split(b","))) if shape else 1
    if dtype not in dtypes.BITS or elements > metadata.MAX_ELEMENTS:
        return None  # metadata.parse says what is wrong
    name = name_bytes.decode("ascii")
    shape_text = f"[{shape.decode('ascii') if shape else ''}]"
    return name, _row(name, dtype, shape_text, update.decode("ascii"), length, digest.decode("ascii")), elements, length


RENDERER = Renderer()


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

    def put(
        self, pieces: Iterable[bytes | memoryview], expect: str | None = None, *, lfs_object: bool = False
    ) -> tuple[str, int]:
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
    dry = dry_repo(repo)
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
        found = identify.find(repo, candidates, *identify.fingerprint(dry, path, Path(file), dry.store))
        if found is not None:
            return found
    with files.open_regular(file) as stream:
        return metadata.parse(clean.clean(dry, path, stream), file)


def dry_repo(repo: Repo) -> Repo:
    """`repo` over a DryStore: cleaning computes a view's ids and sizes, and stores nothing."""
    from git_theta.repo import Repo

    return Repo(
        worktree=repo.worktree, common_dir=repo.common_dir, store=DryStore(repo.store.lfs_dir, repo.store.unpushed_dir)
    )


def _unchanged_since_staged(root: Path, path: str) -> bool:
    if git.blob(f":{path}", cwd=root) is None:
        return False
    return git.run("diff-files", "--quiet", "--", path, cwd=root, check=False).returncode == 0
