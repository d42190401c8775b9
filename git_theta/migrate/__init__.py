"""`git theta migrate`: rewrite a git-lfs history into git-theta metadata (import), back (export), or measure (info).

The rewrite is built completely before anything moves: every converted blob, tree, commit and tag is written to
git's object database (unreferenced objects are harmless; `git gc` drops them), then every ref moves in ONE
`git update-ref --stdin` transaction, with the old tips kept under refs/theta-migrate/backup/<verb>/. An interrupt
before that transaction leaves every ref as it was.

Commit and tag objects are re-written from their raw text with only their tree/parent/object lines replaced, so
authors, committers, dates, messages and extra headers stay byte for byte (a signature no longer matches the
rewritten object and is dropped). That is what makes import followed by export give back the original ids.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from git_theta import attributes, clean, git, hooks, installation, lfs_pointer, metadata, progress, smudge
from git_theta.errors import GitError, MetadataError, ThetaError
from git_theta.metadata import Metadata
from git_theta.repo import Repo
from git_theta.store import ObjectStore

LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"
BACKUP_PREFIX = "refs/theta-migrate/backup"
TREE_MODE = b"40000"
_SIGNATURE_HEADERS = (b"gpgsig", b"gpgsig-sha256")
_TAG_SIGNATURE = re.compile(rb"\n-----BEGIN (PGP|SSH) SIGNATURE-----\n.*\Z", re.DOTALL)
COPY_CHUNK = 8 << 20
# git itself ignores attribute files larger than this (ATTR_MAX_FILE_SIZE); a larger one is refused, not read.
MAX_ATTRIBUTES_BYTES = 100 << 20


class MigrateError(ThetaError):
    pass


# -- patterns ---------------------------------------------------------------------------------------------------


def split_patterns(values: Iterable[str]) -> list[str]:
    """--include/--exclude values: repeatable and comma-separated, as git-lfs takes them."""
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A gitattributes pattern as a regex over the path from the repository root.

    As in .gitattributes: a pattern without a slash matches the file name at any depth; one with a slash matches
    from the root; `**` spans directories, `*` and `?` stay within one name.
    """
    anchored = "/" in pattern.rstrip("/")
    body = pattern.lstrip("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        elif body[i] == "[" and "]" in body[i + 1 :]:
            end = body.index("]", i + 1)
            inner = body[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]")
            i = end + 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    return re.compile(("" if anchored else "(?:.*/)?") + "".join(out) + r"\Z")


@dataclass
class Selection:
    include: list[str]
    exclude: list[str]
    _regexes: dict[str, re.Pattern[str]] = field(default_factory=dict)

    def _match(self, pattern: str, path: str) -> bool:
        if pattern not in self._regexes:
            self._regexes[pattern] = _pattern_regex(pattern)
        return self._regexes[pattern].match(path) is not None

    def pattern_of(self, path: str) -> str | None:
        """The first include pattern that selects `path`, None when none does or an exclude pattern does."""
        if any(self._match(p, path) for p in self.exclude):
            return None
        return next((p for p in self.include if self._match(p, path)), None)

    def included(self, path: str) -> bool:
        """An include pattern matches `path` (whatever the exclude patterns say)."""
        return any(self._match(p, path) for p in self.include)

    def excluded_by(self, path: str) -> list[str]:
        return [p for p in self.exclude if self._match(p, path)]


# -- git plumbing -----------------------------------------------------------------------------------------------


class _CatFile:
    """One long-running `git cat-file --batch`: thousands of trees and pointers without a process each."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["git", "cat-file", "--batch"], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.sizes = subprocess.Popen(
            ["git", "cat-file", "--batch-check"], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def size(self, oid: str) -> int:
        assert self.sizes.stdin is not None and self.sizes.stdout is not None
        self.sizes.stdin.write(oid.encode() + b"\n")
        self.sizes.stdin.flush()
        header = self.sizes.stdout.readline().split()
        if len(header) != 3:
            raise GitError(f"object {oid} is missing from the repository")
        return int(header[2])

    def read(self, oid: str) -> tuple[str, bytes]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(oid.encode() + b"\n")
        self.process.stdin.flush()
        header = self.process.stdout.readline().split()
        if len(header) != 3:
            raise GitError(f"object {oid} is missing from the repository")
        size = int(header[2])
        data = self.process.stdout.read(size + 1)[:size]
        return header[1].decode(), data

    def close(self) -> None:
        for process in (self.process, self.sizes):
            assert process.stdin is not None
            process.stdin.close()
            process.wait()


def _write_object(kind: str, data: bytes, cwd: Path) -> str:
    return git.run("hash-object", "-w", "-t", kind, "--stdin", cwd=cwd, input=data).stdout.decode().strip()


def _parse_tree(data: bytes) -> list[tuple[bytes, bytes, str]]:
    """(mode, name, object id) of a raw tree object's entries, in their order."""
    entries, position = [], 0
    while position < len(data):
        space = data.index(b" ", position)
        nul = data.index(b"\0", space)
        entries.append((data[position:space], data[space + 1 : nul], data[nul + 1 : nul + 21].hex()))
        position = nul + 21
    return entries


def _format_tree(entries: list[tuple[bytes, bytes, str]]) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries)


def _headers_and_body(data: bytes) -> tuple[list[bytes], bytes]:
    """A commit's or tag's header lines (continuation lines joined to theirs) and the rest after the blank line."""
    head, _, body = data.partition(b"\n\n")
    headers: list[bytes] = []
    for line in head.split(b"\n"):
        if line.startswith(b" ") and headers:
            headers[-1] += b"\n" + line
        else:
            headers.append(line)
    return headers, body


# -- .gitattributes ---------------------------------------------------------------------------------------------


def _attribute_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _routes(line: bytes, kind: str) -> bool:
    """The line routes its pattern to filter=`kind` (a comment never does, though the clone hint names filter=theta)."""
    parts = line.split()
    return len(parts) >= 2 and not parts[0].startswith(b"#") and f"filter={kind}".encode() in parts[1:]


def _switch_lines(data: bytes, patterns: set[str], source: str, target: str) -> tuple[list[bytes], bool]:
    """The lines, those routing one of `patterns` to filter=`source` replaced by `pattern target-attributes`."""
    lines, changed = _attribute_lines(data), False
    for index, line in enumerate(lines):
        parts = line.split()
        if _routes(line, source) and parts[0].decode("utf-8", "surrogateescape") in patterns:
            lines[index] = parts[0] + b" " + target.encode() + (b"\r" if line.endswith(b"\r") else b"")
            changed = True
    return lines, changed


def import_attributes(data: bytes | None, include: list[str], converted: set[str], kept_lfs: set[str]) -> bytes | None:
    """The root .gitattributes after import: git-lfs lines of the included patterns become git-theta's (other lines
    kept, the clone hint on top); a pattern that converted files but had no line gets one; None: no file needed."""
    if data is None and not converted:
        return None
    lines, _ = _switch_lines(data or b"", set(include), "lfs", attributes.ATTRIBUTES)
    if data is None:
        lines = []
    present = {line.split()[0].decode("utf-8", "surrogateescape") for line in lines if _routes(line, "theta")}
    added = [f"{p} {attributes.ATTRIBUTES}".encode() for p in include if p in converted and p not in present]
    added += [f"{p} {LFS_ATTRIBUTES}".encode() for p in sorted(kept_lfs)]  # excluded paths an include matches
    if added:
        if lines and lines[-1] == b"":
            lines = lines[:-1] + added + [b""]
        else:
            lines = lines + added + ([b""] if data is None else [])
    if any(_routes(line, "theta") for line in lines) and attributes.CLONE_HINT.encode() not in lines:
        lines.insert(0, attributes.CLONE_HINT.encode())
    return b"\n".join(lines)


def export_attributes(data: bytes, include: list[str]) -> bytes:
    """The .gitattributes after export: git-theta lines of the included patterns back to git-lfs's; the clone hint
    goes once no git-theta line is left."""
    lines, _ = _switch_lines(data, set(include), "theta", LFS_ATTRIBUTES)
    if not any(_routes(line, "theta") for line in lines):
        lines = [line for line in lines if line != attributes.CLONE_HINT.encode()]
    return b"\n".join(lines)


# -- refs -------------------------------------------------------------------------------------------------------


def select_refs(cwd: Path, *, everything: bool, refs: list[str]) -> dict[str, str]:
    """refname -> object id of the refs to rewrite: all branches and tags, the named ones, or the current branch."""
    if everything:
        out = git.output("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags", cwd=cwd)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)
    names = refs
    if not names:
        head = git.run("symbolic-ref", "-q", "HEAD", cwd=cwd, check=False)
        if head.returncode != 0:
            raise MigrateError("HEAD is detached: name the branches to rewrite, or give --everything")
        names = [head.stdout.decode().strip()]
    found = {}
    for name in names:
        full = git.run("rev-parse", "--symbolic-full-name", name, cwd=cwd, check=False).stdout.decode().strip()
        if not full.startswith("refs/"):
            raise MigrateError(f"{name}: not a branch or tag (migrate moves refs: name a branch or a tag)")
        found[full] = git.output("rev-parse", full, cwd=cwd).strip()
    return found


# -- the rewrite ------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    """What a walk saw: per include pattern, the distinct objects converted and their sizes."""

    versions: dict[str, set[str]] = field(default_factory=dict)
    source_bytes: dict[str, int] = field(default_factory=dict)
    missing: dict[str, set[str]] = field(default_factory=dict)
    commits: int = 0
    rewritten: int = 0


@dataclass
class _TreeResult:
    tree: str
    converted: dict[str, str]  # path -> new blob id of the converted files under this tree
    patterns: set[str]  # include patterns that converted a file
    kept_lfs: set[str]  # exclude patterns that kept a git-lfs file an include matched


BlobConverter = Callable[[str, str, str, dict[str, str]], str | None]


class _Rewriter:
    """Walks the commits oldest first and rebuilds each tree whose selected files change."""

    def __init__(
        self,
        repo: Repo,
        selection: Selection,
        convert: BlobConverter,
        fix_attributes: Callable[[bytes | None, _TreeResult], bytes | None],
        write: bool,
    ) -> None:
        self.repo = repo
        self.cwd = repo.worktree
        self.selection = selection
        self.convert = convert
        self.fix_attributes = fix_attributes
        self.write = write
        self.cat = _CatFile(repo.worktree)
        self.trees: dict[tuple[str, str], _TreeResult] = {}
        self.commits: dict[str, str] = {}
        self.converted: dict[str, dict[str, str]] = {}  # commit -> path -> new blob
        self.commit = ""
        self.parent_versions: dict[str, str] = {}

    def close(self) -> None:
        self.cat.close()

    def tree(self, oid: str, prefix: str) -> _TreeResult:
        key = (oid, prefix)
        if key not in self.trees:
            self.trees[key] = self._build_tree(oid, prefix)
        return self.trees[key]

    def _build_tree(self, oid: str, prefix: str) -> _TreeResult:
        _, data = self.cat.read(oid)
        entries = _parse_tree(data)
        result = _TreeResult(oid, {}, set(), set())
        new_entries, attributes_at = [], None
        for index, (mode, name, child) in enumerate(entries):
            path = prefix + name.decode("utf-8", "surrogateescape")
            if mode == TREE_MODE:
                sub = self.tree(child, path + "/")
                result.converted.update(sub.converted)
                result.patterns |= sub.patterns
                result.kept_lfs |= sub.kept_lfs
                child = sub.tree
            elif name == b".gitattributes" and mode.startswith(b"100"):
                attributes_at = index
            elif mode.startswith(b"100"):
                new = self.convert(path, child, self.commit, self.parent_versions)
                if new is not None and new != child:
                    result.converted[path] = new
                    pattern = self.selection.pattern_of(path)
                    if pattern is not None:
                        result.patterns.add(pattern)
                    child = new
                elif self.selection.exclude and new is None:
                    kept = self.selection.excluded_by(path)
                    if (
                        kept
                        and self.cat.size(child) <= lfs_pointer.MAX_BYTES
                        and lfs_pointer.parse(self.cat.read(child)[1])
                    ):
                        result.kept_lfs |= set(kept) if self.selection.included(path) else set()
            new_entries.append((mode, name, child))
        if attributes_at is not None or (prefix == "" and result.converted):
            old = self._attributes(entries[attributes_at][2], prefix) if attributes_at is not None else None
            # only the root .gitattributes is rewritten (nested ones are kept as they are: docs/migrating.md)
            fixed = self.fix_attributes(old, result) if prefix == "" else old
            if fixed is not None and fixed != old:
                blob = _write_object("blob", fixed, self.cwd) if self.write else hashlib.sha1(fixed).hexdigest()
                if attributes_at is not None:
                    mode, name, _ = new_entries[attributes_at]
                    new_entries[attributes_at] = (mode, name, blob)
                else:
                    new_entries.append((b"100644", b".gitattributes", blob))
                    new_entries.sort(key=lambda e: e[1] + (b"/" if e[0] == TREE_MODE else b""))
        if new_entries != entries:
            raw = _format_tree(new_entries)
            result.tree = _write_object("tree", raw, self.cwd) if self.write else hashlib.sha1(raw).hexdigest()
        return result

    def _attributes(self, oid: str, prefix: str) -> bytes:
        size = self.cat.size(oid)
        if size > MAX_ATTRIBUTES_BYTES:
            raise MigrateError(
                f"{prefix}.gitattributes (commit {self.commit}): {size} bytes, over the {MAX_ATTRIBUTES_BYTES} "
                "git itself reads"
            )
        return self.cat.read(oid)[1]

    def run(self, tips: list[str], on_commit: Callable[[int, int], None]) -> None:
        if not tips:
            return
        out = git.output("rev-list", "--topo-order", "--reverse", "--parents", *tips, cwd=self.cwd)
        walk = [line.split() for line in out.splitlines() if line]
        for number, (commit, *parents) in enumerate(walk, 1):
            self.commit = commit
            self.parent_versions = {}
            for parent in reversed(parents):
                self.parent_versions.update(self.converted.get(parent, {}))
            _, raw = self.cat.read(commit)
            headers, body = _headers_and_body(raw)
            tree = next(h for h in headers if h.startswith(b"tree "))[5:].decode()
            result = self.tree(tree, "")
            self.converted[commit] = result.converted
            new_headers = []
            for header in headers:
                if header.startswith(b"tree "):
                    new_headers.append(b"tree " + result.tree.encode())
                elif header.startswith(b"parent "):
                    new_headers.append(b"parent " + self.commits[header[7:].decode()].encode())
                elif header.split(b" ", 1)[0] in _SIGNATURE_HEADERS:
                    continue  # the signature was over the old object
                else:
                    new_headers.append(header)
            if new_headers == headers:
                self.commits[commit] = commit
            else:
                rewritten = b"\n".join(new_headers) + b"\n\n" + body
                self.commits[commit] = (
                    _write_object("commit", rewritten, self.cwd) if self.write else hashlib.sha1(rewritten).hexdigest()
                )
            on_commit(number, len(walk))


class _CommitProgress:
    """`git-theta: migrate: commit 12/40` redrawn on a terminal's stderr."""

    def __init__(self, verb: str, stream: IO[str] | None = None) -> None:
        self.verb = verb
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not progress.is_quiet() and progress._is_terminal(self.stream)

    def __call__(self, number: int, total: int) -> None:
        if self.enabled:
            self.stream.write(f"\rgit-theta: migrate {self.verb}: commit {number}/{total}")
            if number == total:
                self.stream.write("\n")
            self.stream.flush()


def _peel_tags(repo: Repo, cat: _CatFile, refs: dict[str, str]) -> tuple[dict[str, str], dict[str, bytes]]:
    """ref -> commit it names, and ref -> raw annotated tag object; a tag of a tag or of a non-commit is refused."""
    commits, tags = {}, {}
    for ref, oid in refs.items():
        kind, data = cat.read(oid)
        if kind == "tag":
            headers, _ = _headers_and_body(data)
            target_type = next(h for h in headers if h.startswith(b"type "))[5:].decode()
            if target_type != "commit":
                raise MigrateError(
                    f"{ref}: an annotated tag of a {target_type}; migrate re-creates tags of commits only "
                    f"(name the refs to rewrite without it)"
                )
            tags[ref] = data
            commits[ref] = next(h for h in headers if h.startswith(b"object "))[7:].decode()
        elif kind == "commit":
            commits[ref] = oid
        else:
            raise MigrateError(f"{ref}: names a {kind}, not a commit")
    return commits, tags


def _retag(raw: bytes, commit: str, cwd: Path) -> str:
    headers, body = _headers_and_body(raw)
    headers = [b"object " + commit.encode() if h.startswith(b"object ") else h for h in headers]
    body = _TAG_SIGNATURE.sub(b"\n", body) if _TAG_SIGNATURE.search(body) else body
    return git.run("mktag", cwd=cwd, input=b"\n".join(headers) + b"\n\n" + body).stdout.decode().strip()


def _check_clean(cwd: Path) -> None:
    status = git.run("status", "--porcelain", "--untracked-files=no", cwd=cwd).stdout
    if status.strip():
        raise MigrateError(
            "the working tree or index has changes: commit or stash them first (migrate checks out the rewritten HEAD)"
        )


@dataclass
class Rewrite:
    """What `rewrite` did: refs moved (ref -> (old, new)) and where their old tips are kept."""

    moved: dict[str, tuple[str, str]]
    backup: str
    stats: Stats


def _rewrite(
    repo: Repo,
    *,
    verb: str,
    selection: Selection,
    refs: dict[str, str],
    convert: BlobConverter,
    fix_attributes: Callable[[bytes | None, _TreeResult], bytes | None],
    stats: Stats,
) -> Rewrite:
    cwd = repo.worktree
    backup = f"{BACKUP_PREFIX}/{verb}"
    existing = git.output("for-each-ref", "--format=%(refname)", backup, cwd=cwd).split()
    if existing:
        raise MigrateError(
            f"{existing[0]}: a backup of an earlier `git theta migrate {verb}` is still there; delete the old "
            f"backups first: git for-each-ref --format='delete %(refname)' {backup} | git update-ref --stdin"
        )
    rewriter = _Rewriter(repo, selection, convert, fix_attributes, write=True)
    try:
        commits, tags = _peel_tags(repo, rewriter.cat, refs)
        # one sync for every object stored, before any ref names them
        with repo.store.batch():
            rewriter.run(sorted(set(commits.values())), _CommitProgress(verb))
    finally:
        rewriter.close()
    stats.commits = len(rewriter.commits)
    stats.rewritten = sum(1 for old, new in rewriter.commits.items() if old != new)
    moved = {}
    for ref, old in refs.items():
        new_commit = rewriter.commits[commits[ref]]
        if new_commit == commits[ref]:
            continue
        # an annotated tag is re-created with its tagger and message, pointing at the rewritten commit
        new = _retag(tags[ref], new_commit, cwd) if ref in tags else new_commit
        if new != old:
            moved[ref] = (old, new)
    if moved:
        lines = ["start"]
        for ref, (old, new) in sorted(moved.items()):
            lines += [f"update {ref} {new} {old}", f"create {backup}/{ref} {old}"]
        lines += ["prepare", "commit"]
        git.run("update-ref", "--stdin", cwd=cwd, input=("\n".join(lines) + "\n").encode())
        head = git.run("symbolic-ref", "-q", "HEAD", cwd=cwd, check=False).stdout.decode().strip()
        if head in moved:
            git.run("reset", "-q", "--hard", "HEAD", cwd=cwd)  # the working tree gets the rewritten files
    return Rewrite(moved, backup, stats)


def _default_include(repo: Repo, refs: dict[str, str], kind: str) -> list[str]:
    """The patterns the tips' root .gitattributes route to filter=`kind`."""
    found: list[str] = []
    for oid in dict.fromkeys(refs.values()):
        data = git.blob(f"{oid}:.gitattributes", cwd=repo.worktree) or b""
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.lstrip().startswith("#") and f"filter={kind}" in parts[1:]:
                found.append(parts[0])
    if not found:
        raise MigrateError(
            f"no .gitattributes line routes files to filter={kind} at the rewritten refs: name the files with --include"
        )
    return list(dict.fromkeys(found))


# -- import -----------------------------------------------------------------------------------------------------


class _HashingReader:
    """Reads a git-lfs object while hashing it, so a corrupt copy is refused before its metadata is committed."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, count: int = -1) -> bytes:
        data = self.file.read(count)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


class _Importer:
    """Converts git-lfs pointers to metadata, each LFS object once, against the previous version of its path."""

    def __init__(
        self,
        repo: Repo,
        selection: Selection,
        store: ObjectStore,
        stats: Stats,
        remote: str | None,
        fetch: bool,
        write: bool,
    ) -> None:
        self.repo = repo
        self.selection = selection
        self.store = store
        self.stats = stats
        self.remote = remote
        self.fetch = fetch
        self.write = write
        self.cat: _CatFile | None = None
        self.by_oid: dict[lfs_pointer.Pointer, str] = {}  # each distinct pointer checked once -> new blob id
        self.blob_meta: dict[str, Metadata] = {}  # new blob id -> its metadata, for later versions' prior
        self.last: dict[str, str] = {}  # path -> the last converted blob there

    def __call__(self, path: str, blob: str, commit: str, parents: dict[str, str]) -> str | None:
        pattern = self.selection.pattern_of(path)
        if pattern is None:
            return None
        assert self.cat is not None
        if self.cat.size(blob) > lfs_pointer.MAX_BYTES:
            return None  # not a pointer: already stored some other way
        pointer = lfs_pointer.parse(self.cat.read(blob)[1])
        if pointer is None:
            return None
        versions = self.stats.versions.setdefault(pattern, set())
        first = pointer.oid not in versions
        versions.add(pointer.oid)
        if pointer in self.by_oid:
            return self.by_oid[pointer]
        source = ObjectStore(self.repo.common_dir / "lfs")
        if not source.has(pointer.oid):
            if not self.fetch:
                self.stats.missing.setdefault(pattern, set()).add(pointer.oid)
                return None
            self._download(path, pointer, commit)
        on_disk = source.path(pointer.oid).stat().st_size  # what the store holds, whatever a pointer declares
        if first:
            self.stats.source_bytes[pattern] = self.stats.source_bytes.get(pattern, 0) + on_disk
        prior = [
            self.blob_meta[b]
            for b in dict.fromkeys([parents.get(path, ""), self.last.get(path, "")])
            if b in self.blob_meta
        ]
        with source.path(pointer.oid).open("rb") as file:
            reader = _HashingReader(file)
            try:
                data = clean.clean(self.repo, path, reader, store=self.store, prior=prior, size=on_disk)  # type: ignore[arg-type]
            except ThetaError as error:
                reader.drain()  # a damaged copy is the object's fault, not the format's: say which
                self._check(path, pointer, commit, reader, source)
                raise MigrateError(
                    f"{error} (git-lfs object {pointer.oid}, commit {commit}); leave such files to git-lfs "
                    f"with --exclude"
                ) from None
            reader.drain()
        self._check(path, pointer, commit, reader, source)
        new = _write_object("blob", data, self.repo.worktree) if self.write else hashlib.sha1(data).hexdigest()
        self.by_oid[pointer] = new
        self.blob_meta[new] = metadata.parse(data, path)
        self.last[path] = new
        return new

    @staticmethod
    def _check(
        path: str, pointer: lfs_pointer.Pointer, commit: str, reader: _HashingReader, source: ObjectStore
    ) -> None:
        """The object read is the one the pointer names: its sha256, then the size the pointer declares."""
        if reader.digest.hexdigest() != pointer.oid:
            raise MigrateError(
                f"{path}: git-lfs object {pointer.oid} (commit {commit}): {smudge.corrupt_object(source, pointer.oid)}"
            )
        if reader.size != pointer.size:
            raise MigrateError(
                f"{path}: the git-lfs pointer in commit {commit} declares {pointer.size} bytes, its object "
                f"{pointer.oid} holds {reader.size}: the pointer is wrong"
            )

    def _download(self, path: str, pointer: lfs_pointer.Pointer, commit: str) -> None:
        from git_theta.transfer import client  # imported only when an object is missing

        try:
            client.download(self.repo, {pointer.oid: pointer.size}, self.remote)
        except ThetaError as error:
            raise MigrateError(
                f"{path}: git-lfs object {pointer.oid} (commit {commit}) is not in the local store and "
                f"fetching it failed: {error}"
            ) from None
        if not self.repo.store.has(pointer.oid):
            raise MigrateError(
                f"{path}: git-lfs object {pointer.oid} (commit {commit}) is not in the local store and the remote "
                "did not send it"
            )


def _import_fix(include: list[str]) -> Callable[[bytes | None, _TreeResult], bytes | None]:
    def fix(data: bytes | None, result: _TreeResult) -> bytes | None:
        return import_attributes(data, include, result.patterns, result.kept_lfs)

    return fix


def import_history(
    repo: Repo,
    *,
    include: list[str],
    exclude: list[str],
    everything: bool = False,
    refs: list[str] | None = None,
    remote: str | None = None,
) -> Rewrite:
    """Rewrite the selected refs so their commits' git-lfs pointers matching `include` become git-theta metadata."""
    _check_clean(repo.worktree)
    problem = installation.filter_problem(repo.worktree)
    if problem:
        raise MigrateError(f"not migrating: {problem}")
    chosen = select_refs(repo.worktree, everything=everything, refs=refs or [])
    selection = Selection(include or _default_include(repo, chosen, "lfs"), exclude)
    stats = Stats()
    importer = _Importer(repo, selection, repo.store, stats, remote, fetch=True, write=True)
    rewrite = _rewrite_with(repo, "import", selection, chosen, importer, _import_fix(selection.include), stats)
    hooks.ensure_installed(repo.worktree)  # as `git theta track` does: the next push sends git-theta's objects
    return rewrite


def _rewrite_with(
    repo: Repo,
    verb: str,
    selection: Selection,
    refs: dict[str, str],
    converter: Any,
    fix: Callable[[bytes | None, _TreeResult], bytes | None],
    stats: Stats,
) -> Rewrite:
    converter.cat = _CatFile(repo.worktree)
    try:
        return _rewrite(
            repo, verb=verb, selection=selection, refs=refs, convert=converter, fix_attributes=fix, stats=stats
        )
    finally:
        converter.cat.close()


# -- info -------------------------------------------------------------------------------------------------------


@dataclass
class InfoRow:
    pattern: str
    versions: int
    lfs_bytes: int
    theta_bytes: int
    not_local: int


def _store_bytes(store: ObjectStore) -> int:
    return sum(p.stat().st_size for p in store.objects_dir.glob("??/??/*")) if store.objects_dir.is_dir() else 0


def info(
    repo: Repo, *, include: list[str], exclude: list[str], everything: bool = False, refs: list[str] | None = None
) -> list[InfoRow]:
    """Per include pattern: distinct git-lfs objects in the history, their size, and the size git-theta's store would
    have after import, measured by cleaning every version into a throwaway store (objects not local are counted,
    not fetched)."""
    chosen = select_refs(repo.worktree, everything=everything, refs=refs or [])
    selection = Selection(include or _default_include(repo, chosen, "lfs"), exclude)
    rows: list[InfoRow] = []
    with tempfile.TemporaryDirectory(prefix="git-theta-migrate-") as temp:
        for pattern in selection.include:
            # one store per pattern: its size is that pattern's share
            only = Selection(
                [pattern],
                selection.exclude
                + [
                    p
                    for p in selection.include
                    if p != pattern and selection.include.index(p) < selection.include.index(pattern)
                ],
            )
            store = ObjectStore(Path(temp) / str(len(rows)))
            stats = Stats()
            importer = _Importer(repo, only, store, stats, None, fetch=False, write=False)
            rewriter = _Rewriter(repo, only, importer, _import_fix(only.include), write=False)
            importer.cat = rewriter.cat
            try:
                commits, _ = _peel_tags(repo, rewriter.cat, chosen)
                rewriter.run(sorted(set(commits.values())), _CommitProgress("info"))
            finally:
                rewriter.close()
            rows.append(
                InfoRow(
                    pattern,
                    len(stats.versions.get(pattern, ())),
                    stats.source_bytes.get(pattern, 0),
                    _store_bytes(store),
                    len(stats.missing.get(pattern, ())),
                )
            )
    return rows


# -- export -----------------------------------------------------------------------------------------------------


def pointer_text(oid: str, size: int) -> bytes:
    """A git-lfs pointer as git-lfs writes it (spec v1): version, oid, size, each line ending in a newline."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


class _Exporter:
    """Rebuilds each metadata version's file into the LFS store (once per metadata blob) and names it by pointer."""

    def __init__(self, repo: Repo, selection: Selection, remote: str | None) -> None:
        self.repo = repo
        self.selection = selection
        self.remote = remote
        self.cat: _CatFile | None = None
        self.by_blob: dict[str, str] = {}

    def __call__(self, path: str, blob: str, commit: str, parents: dict[str, str]) -> str | None:
        if self.selection.pattern_of(path) is None:
            return None
        if blob in self.by_blob:
            return self.by_blob[blob]
        assert self.cat is not None
        if self.cat.size(blob) > metadata.MAX_BYTES:
            return None
        data = self.cat.read(blob)[1]
        if not metadata.looks_like_metadata(data):
            return None  # a pointer already, or a file git stores itself
        from git_theta.transfer import on_demand

        store = self.repo.store
        with tempfile.TemporaryFile(dir=self.repo.common_dir) as file:
            try:
                smudge.smudge(store, path, data, file, on_demand.fetcher(self.repo, self.remote))
            except (ThetaError, MetadataError) as error:
                raise MigrateError(f"{error} (commit {commit})") from None
            file.seek(0)
            oid, size = store.put(iter(lambda: file.read(COPY_CHUNK), b""))
        new = _write_object("blob", pointer_text(oid, size), self.repo.worktree)
        self.by_blob[blob] = new
        return new


def _export_fix(include: list[str]) -> Callable[[bytes | None, _TreeResult], bytes | None]:
    def fix(data: bytes | None, result: _TreeResult) -> bytes | None:
        return None if data is None else export_attributes(data, include)

    return fix


def export_history(
    repo: Repo,
    *,
    include: list[str],
    exclude: list[str],
    everything: bool = False,
    refs: list[str] | None = None,
    remote: str | None = None,
) -> Rewrite:
    """Rewrite the selected refs so their commits' git-theta metadata matching `include` become git-lfs pointers."""
    _check_clean(repo.worktree)
    if not (
        git.config_get("filter.lfs.process", cwd=repo.worktree)
        or git.config_get("filter.lfs.smudge", cwd=repo.worktree)
    ):
        # the checkout at the end would write pointer text where the models were
        raise MigrateError("not migrating: git-lfs's filter is not configured here; run `git lfs install` first")
    chosen = select_refs(repo.worktree, everything=everything, refs=refs or [])
    selection = Selection(include or _default_include(repo, chosen, "theta"), exclude)
    stats = Stats()
    return _rewrite_with(
        repo, "export", selection, chosen, _Exporter(repo, selection, remote), _export_fix(selection.include), stats
    )


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
