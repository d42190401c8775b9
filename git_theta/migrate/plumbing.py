"""Git object plumbing for migrate: one long-running cat-file, raw trees, commit and tag headers."""

from __future__ import annotations

import subprocess
from pathlib import Path

from git_theta import git
from git_theta.errors import GitError

TREE_MODE = b"40000"
COPY_CHUNK = 8 << 20


class CatFile:
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


def write_object(kind: str, data: bytes, cwd: Path) -> str:
    return git.run("hash-object", "-w", "-t", kind, "--stdin", cwd=cwd, input=data).stdout.decode().strip()


def parse_tree(data: bytes) -> list[tuple[bytes, bytes, str]]:
    """(mode, name, object id) of a raw tree object's entries, in their order."""
    entries, position = [], 0
    while position < len(data):
        space = data.index(b" ", position)
        nul = data.index(b"\0", space)
        entries.append((data[position:space], data[space + 1 : nul], data[nul + 1 : nul + 21].hex()))
        position = nul + 21
    return entries


def format_tree(entries: list[tuple[bytes, bytes, str]]) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries)


def headers_and_body(data: bytes) -> tuple[list[bytes], bytes]:
    """A commit's or tag's header lines (continuation lines joined to theirs) and the rest after the blank line."""
    head, _, body = data.partition(b"\n\n")
    headers: list[bytes] = []
    for line in head.split(b"\n"):
        if line.startswith(b" ") and headers:
            headers[-1] += b"\n" + line
        else:
            headers.append(line)
    return headers, body
