"""git theta fsck: verify every object reachable from the index and all refs."""

from __future__ import annotations

import argparse

from git_theta import git, metadata, raw_blobs, smudge
from git_theta.errors import StoreError, ThetaError
from git_theta.repo import Repo


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("fsck", help="verify stored objects", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only check that objects exist and match their sha256, do not rebuild tensors")
    parser.set_defaults(run=run)


def tracked_metadata(repo: Repo) -> dict[str, tuple[str, metadata.Metadata]]:
    """blob id -> (a path it was seen at, parsed metadata) for every reachable tracked blob."""
    blobs = git.reachable_blobs(cwd=repo.worktree)
    attrs = git.attr_for_paths("filter", sorted({path for _, path, _ in blobs}), cwd=repo.worktree)
    wanted = {oid: path for oid, path, _ in blobs if attrs.get(path) == "theta"}
    found = {}
    for oid, data in git.cat_file_batch(sorted(wanted), cwd=repo.worktree).items():
        if metadata.looks_like_metadata(data):
            found[oid] = (wanted[oid], metadata.parse(data, f"{wanted[oid]} (blob {oid[:12]})"))
    return found


def check(repo: Repo, quick: bool) -> list[str]:
    problems: list[str] = []
    verified: dict[str, str | None] = {}
    rebuilt: set[str] = set()
    for blob_id, (path, meta) in sorted(tracked_metadata(repo).items(), key=lambda item: item[1][0]):
        for name, entry in sorted(meta.params.items()):
            for oid in entry.objects():
                if oid not in verified:
                    verified[oid] = _verify_object(repo, oid)
                if verified[oid]:
                    problems.append(f"{path}: parameter {name!r}: {verified[oid]}")
            if not quick and entry.hash not in rebuilt and not any(verified[o] for o in entry.objects()):
                try:
                    smudge.rebuild(repo.store, name, entry, path)
                    rebuilt.add(entry.hash)
                except ThetaError as error:
                    problems.append(str(error))
        for oid in metadata.file_objects(meta.file):
            if oid not in verified:
                verified[oid] = _verify_object(repo, oid)
            if verified[oid]:
                problems.append(f"{path}: file data: {verified[oid]}")
    return problems


def _verify_object(repo: Repo, oid: str) -> str | None:
    try:
        repo.store.get(oid, verify=True)
    except StoreError as error:
        return str(error)
    return None


def run(args: argparse.Namespace) -> int:
    repo = Repo.discover(git.toplevel())
    problems = check(repo, args.quick) + raw_blobs.problems(repo.worktree)
    for problem in problems:
        print(f"error: {problem}")
    print(f"fsck: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    if any(" is missing from " in problem for problem in problems):
        # a clone downloads only what its checkouts needed; older versions' objects stay on the server
        print("hint: objects of versions never checked out here are not downloaded; `git theta fetch --all` gets them")
    return 1 if problems else 0
