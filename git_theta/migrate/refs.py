"""The refs migrate rewrites, the commits they name, and annotated tags re-created on the rewritten commits."""

from __future__ import annotations

from pathlib import Path

from git_theta import git
from git_theta.migrate import MigrateError
from git_theta.migrate.plumbing import CatFile, headers_and_body
from git_theta.migrate.signatures import TAG_SIGNATURE


def select_refs(
    cwd: Path,
    *,
    everything: bool,
    refs: list[str],
    include_refs: list[str] | None = None,
    exclude_refs: list[str] | None = None,
) -> dict[str, str]:
    """refname -> object id of the refs to rewrite: all branches and tags, the named ones (REFs and --include-ref),
    or the current branch when neither they nor --exclude-ref are given (as `git lfs migrate` chooses)."""
    if everything:
        if include_refs or exclude_refs:
            raise MigrateError("give either --everything or --include-ref/--exclude-ref, not both")
        out = git.output("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags", cwd=cwd)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)
    names = [*refs, *(include_refs or [])]
    if not names and exclude_refs:
        raise MigrateError("--exclude-ref names what to leave as it is: name the refs to rewrite too (--include-ref)")
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


def excluded_commits(cwd: Path, exclude_refs: list[str]) -> list[str]:
    """The commits --exclude-ref names: their history is left as it is and never moves (any revision git knows,
    a remote-tracking branch say)."""
    found = []
    for name in exclude_refs:
        result = git.run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", cwd=cwd, check=False)
        if result.returncode != 0:
            raise MigrateError(f"--exclude-ref {name}: not a commit or a ref to one in this repository")
        found.append(result.stdout.decode().strip())
    return list(dict.fromkeys(found))


def selected_history(
    cwd: Path,
    *,
    everything: bool,
    refs: list[str] | None,
    include_refs: list[str] | None,
    exclude_refs: list[str] | None,
) -> tuple[dict[str, str], list[str]]:
    """What info, import and export walk: the refs to rewrite (select_refs) and the commits left as they are
    (excluded_commits)."""
    chosen = select_refs(
        cwd, everything=everything, refs=refs or [], include_refs=include_refs, exclude_refs=exclude_refs
    )
    return chosen, excluded_commits(cwd, exclude_refs or [])


def peel_tags(cat: CatFile, refs: dict[str, str]) -> tuple[dict[str, str], dict[str, bytes]]:
    """ref -> commit it names, and ref -> raw annotated tag object; a tag of a tag or of a non-commit is refused."""
    commits, tags = {}, {}
    for ref, oid in refs.items():
        kind, data = cat.read(oid)
        if kind == "tag":
            headers, _ = headers_and_body(data)
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


def retagged(raw: bytes, commit: str) -> bytes:
    """An annotated tag's bytes pointing at `commit` instead, tagger and message kept, its signature (over the old
    object line) dropped."""
    headers, body = headers_and_body(raw)
    headers = [b"object " + commit.encode() if h.startswith(b"object ") else h for h in headers]
    body = TAG_SIGNATURE.sub(b"\n", body) if TAG_SIGNATURE.search(body) else body
    return b"\n".join(headers) + b"\n\n" + body
