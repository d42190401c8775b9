"""git theta textconv: a readable one-line-per-group view of metadata, for `git diff`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from git_theta import metadata


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("textconv", help="text view of a metadata file (used by git diff)", description=__doc__)
    parser.add_argument("file", help="a file holding git-theta metadata")
    parser.set_defaults(run=run)


def render(meta: metadata.Metadata) -> str:
    lines = [f"format: {meta.format}"]
    for name in sorted(meta.params):
        entry = meta.params[name]
        shape = "x".join(str(n) for n in entry.shape) or "scalar"
        updates = "+".join(link.update for link in entry.stored)
        lines.append(f"{name}  {entry.dtype}[{shape}]  {updates}  {entry.stored_size} B  {entry.hash[:12]}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    if not metadata.looks_like_metadata(data):
        sys.stdout.buffer.write(data)
        return 0
    sys.stdout.write(render(metadata.parse(data, args.file)))
    return 0
