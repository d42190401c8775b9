"""The history walk: commits oldest first, each tree whose selected files change rebuilt once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from git_theta import git, lfs_pointer, progress
from git_theta.migrate import MigrateError
from git_theta.migrate.gitattributes import MAX_ATTRIBUTES_BYTES
from git_theta.migrate.patterns import Selection
from git_theta.migrate.plumbing import (
    TREE_MODE,
    CatFile,
    format_tree,
    headers_and_body,
    parse_tree,
    write_object,
)
from git_theta.migrate.signatures import ObjectIds, Originals, SignatureCounts, is_signature
from git_theta.repo import Repo


@dataclass
class Stats:
    """What a walk saw: per include pattern, the distinct objects converted and their sizes."""

    versions: dict[str, set[str]] = field(default_factory=dict)
    source_bytes: dict[str, int] = field(default_factory=dict)
    missing: dict[str, set[str]] = field(default_factory=dict)
    commits: int = 0
    rewritten: int = 0
    signatures: SignatureCounts = field(default_factory=SignatureCounts)


@dataclass
class TreeResult:
    tree: str
    converted: dict[str, str]  # path -> new blob id of the converted files under this tree
    patterns: set[str]  # include patterns that converted a file
    kept_lfs: set[str]  # exclude patterns that kept a git-lfs file an include matched


BlobConverter = Callable[[str, str, str, dict[str, str]], str | None]


class Rewriter:
    """Walks the commits oldest first and rebuilds each tree whose selected files change."""

    def __init__(
        self,
        repo: Repo,
        selection: Selection,
        convert: BlobConverter,
        fix_attributes: Callable[[bytes | None, TreeResult], bytes | None],
        write: bool,
    ) -> None:
        self.repo = repo
        self.cwd = repo.worktree
        self.selection = selection
        self.convert = convert
        self.fix_attributes = fix_attributes
        self.write = write
        self.cat = CatFile(repo.worktree)
        self.trees: dict[tuple[str, str], TreeResult] = {}
        self.commits: dict[str, str] = {}
        self.converted: dict[str, dict[str, str]] = {}  # commit -> path -> new blob
        self.commit = ""
        self.parent_versions: dict[str, str] = {}
        self.ids = ObjectIds(repo.worktree)
        self.originals = Originals()  # signed originals to give back (rewrite.py fills it from the backups)
        self.signatures = SignatureCounts()

    def close(self) -> None:
        self.cat.close()

    def tree(self, oid: str, prefix: str) -> TreeResult:
        key = (oid, prefix)
        if key not in self.trees:
            self.trees[key] = self._build_tree(oid, prefix)
        return self.trees[key]

    def _build_tree(self, oid: str, prefix: str) -> TreeResult:
        _, data = self.cat.read(oid)
        entries = parse_tree(data)
        result = TreeResult(oid, {}, set(), set())
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
                blob = write_object("blob", fixed, self.cwd) if self.write else self.ids("blob", fixed)
                if attributes_at is not None:
                    mode, name, _ = new_entries[attributes_at]
                    new_entries[attributes_at] = (mode, name, blob)
                else:
                    new_entries.append((b"100644", b".gitattributes", blob))
                    new_entries.sort(key=lambda e: e[1] + (b"/" if e[0] == TREE_MODE else b""))
        if new_entries != entries:
            raw = format_tree(new_entries)
            result.tree = write_object("tree", raw, self.cwd) if self.write else self.ids("tree", raw)
        return result

    def _attributes(self, oid: str, prefix: str) -> bytes:
        size = self.cat.size(oid)
        if size > MAX_ATTRIBUTES_BYTES:
            raise MigrateError(
                f"{prefix}.gitattributes (commit {self.commit}): {size} bytes, over the {MAX_ATTRIBUTES_BYTES} "
                "git itself reads"
            )
        return self.cat.read(oid)[1]

    def run(self, tips: list[str], on_commit: Callable[[int, int], None], excluded: list[str] | None = None) -> None:
        """Rewrite the commits reachable from `tips` and not from `excluded` (those stay as they are: the
        unchanged base the rewritten commits build on)."""
        if not tips:
            return
        not_excluded = ["--not", *excluded] if excluded else []
        out = git.output("rev-list", "--topo-order", "--reverse", "--parents", *tips, *not_excluded, cwd=self.cwd)
        walk = [line.split() for line in out.splitlines() if line]
        for number, (commit, *parents) in enumerate(walk, 1):
            self.commit = commit
            self.parent_versions = {}
            for parent in reversed(parents):
                self.parent_versions.update(self.converted.get(parent, {}))
            _, raw = self.cat.read(commit)
            headers, body = headers_and_body(raw)
            tree = next(h for h in headers if h.startswith(b"tree "))[5:].decode()
            result = self.tree(tree, "")
            self.converted[commit] = result.converted
            new_headers = []
            for header in headers:
                if header.startswith(b"tree "):
                    new_headers.append(b"tree " + result.tree.encode())
                elif header.startswith(b"parent "):
                    parent = header[7:].decode()
                    new_headers.append(b"parent " + self.commits.get(parent, parent).encode())  # excluded: as is
                else:
                    new_headers.append(header)
            self.commits[commit] = commit if new_headers == headers else self._commit(commit, new_headers, body)
            on_commit(number, len(walk))

    def _commit(self, commit: str, headers: list[bytes], body: bytes) -> str:
        """The rewritten commit: the signed original when these bytes are exactly what it signed, else the bytes
        written without the signature (it was over the old object)."""
        unsigned = [h for h in headers if not is_signature(h)]
        raw = b"\n".join(unsigned) + b"\n\n" + body
        oid = self.ids("commit", raw)
        original = self.originals.by_unsigned.get(oid)
        if original is not None:
            self.signatures.restored_commits.add(original)
            return original
        if len(unsigned) != len(headers):
            self.signatures.dropped_commits.add(commit)
        return write_object("commit", raw, self.cwd) if self.write else oid


class CommitProgress:
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
