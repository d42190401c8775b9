"""git theta migrate: convert a git-lfs history to git-theta (import), back (export), or measure first (info).

import rewrites the history of the current branch (or the REFs named, or every branch and tag with
--everything) so that each commit's git-lfs pointers matching --include become git-theta metadata and its
.gitattributes routes them to git-theta; export is the way back, to the same pointers. --exclude-ref REF leaves
the commits reachable from REF as they are (the rewritten ones build on them). Nothing moves until the
whole history is rewritten; then all refs move at once and their old tips stay under
refs/theta-migrate/backup/<import|export>/. info cleans every version into a throwaway store and reports the
sizes before and after, changing nothing. See docs/migrating.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from git_theta import git
from git_theta.migrate import MigrateError, exporting, importing, info, patterns
from git_theta.repo import Repo


class _IntermixedParser(argparse.ArgumentParser):
    """Takes REFs before or after the options (`import --include P main side`): a plain parser gives the empty REF
    list to the first word and then refuses `main side` as unrecognized."""

    _inside = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inside:  # parse_known_intermixed_args calls back in here, in two passes
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    default_class = subparsers._parser_class
    subparsers._parser_class = _IntermixedParser
    try:
        parser = subparsers.add_parser(
            "migrate",
            help="convert a git-lfs history to git-theta and back",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    finally:
        subparsers._parser_class = default_class
    parser.add_argument(
        "action",
        choices=["info", "import", "export"],
        help="info: sizes before/after; import: git-lfs -> git-theta; export: git-theta -> git-lfs",
    )
    parser.add_argument(
        "refs", nargs="*", metavar="REF", help="branches or tags to rewrite (default: the current branch)"
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERNS",
        help="gitattributes patterns of the files to convert, comma-separated, repeatable (default: the patterns "
        "the tips' .gitattributes route to git-lfs, for export to git-theta)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERNS",
        help="patterns of files to leave as they are, though an --include pattern matches them",
    )
    parser.add_argument("--everything", action="store_true", help="rewrite every branch and tag")
    parser.add_argument(
        "--include-ref",
        action="append",
        default=[],
        metavar="REF",
        help="a branch or tag to rewrite, repeatable (as a REF; with --include-ref or --exclude-ref the current "
        "branch is not added)",
    )
    parser.add_argument(
        "--exclude-ref",
        action="append",
        default=[],
        metavar="REF",
        help="leave the commits reachable from REF as they are (the unchanged base the rewritten commits build on); "
        "repeatable, REF never moves",
    )
    parser.add_argument(
        "--remote",
        help="where to fetch git-lfs objects or git-theta objects missing locally "
        "(default: the branch's remote, else origin)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.everything and args.refs:
        raise MigrateError("give either --everything or REFs, not both")
    repo = Repo.discover(git.toplevel())
    include, exclude = patterns.split_patterns(args.include), patterns.split_patterns(args.exclude)
    refs: dict[str, Any] = {
        "everything": args.everything,
        "refs": args.refs,
        "include_refs": args.include_ref,
        "exclude_refs": args.exclude_ref,
    }
    if args.action == "info":
        measured = info.info(repo=repo, include=include, exclude=exclude, **refs)
        rows = measured.rows
        print(f"{'pattern':<24} {'versions':>8} {'git-lfs':>12} {'git-theta':>12} {'ratio':>6} {'not local':>9}")
        for row in rows:
            ratio = f"{row.lfs_bytes / row.theta_bytes:.2f}" if row.theta_bytes else "-"
            print(
                f"{row.pattern:<24} {row.versions:>8} {info.human(row.lfs_bytes):>12} "
                f"{info.human(row.theta_bytes):>12} "
                f"{ratio:>6} {row.not_local:>9}"
            )
        if any(row.not_local for row in rows):
            print(
                "objects not local are left out of both sizes; import fetches them (git lfs fetch --all gets them now)"
            )
        signatures = measured.signatures.summary("import", dry_run=True)
        if signatures:
            print(signatures)
        return 0
    rewrite = (importing.import_history if args.action == "import" else exporting.export_history)(
        repo=repo, include=include, exclude=exclude, remote=args.remote, **refs
    )
    print(f"migrate {args.action}: {rewrite.stats.rewritten} of {rewrite.stats.commits} commit(s) rewritten")
    for ref, (old, new) in sorted(rewrite.moved.items()):
        print(f"{ref}: {old[:12]} -> {new[:12]}")
    if rewrite.moved:
        print(f"the old tips are kept under {rewrite.backup}/ (git for-each-ref {rewrite.backup})")
    else:
        print("nothing to rewrite: no ref changed")
    signatures = rewrite.stats.signatures.summary(args.action)
    if signatures:
        print(signatures)
    return 0
