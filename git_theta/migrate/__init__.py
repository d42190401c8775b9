"""`git theta migrate`: rewrite a git-lfs history into git-theta metadata (import), back (export), or measure (info).

The modules, each one job: plumbing (git objects: cat-file, trees, commit/tag headers), patterns (--include /
--exclude selection), gitattributes (the root .gitattributes lines), refs (which refs, their commits, tags),
rewriter (the walk that rebuilds trees and commits), signatures (signed commits and tags across a rewrite),
rewrite (building everything, then moving every ref at once), importing, exporting and info (the three verbs).

The rewrite is built completely before anything moves: every converted blob, tree, commit and tag is written to
git's object database (unreferenced objects are harmless; `git gc` drops them), then every ref moves in ONE
`git update-ref --stdin` transaction, with the old tips kept under refs/theta-migrate/backup/<verb>/. An interrupt
before that transaction leaves every ref as it was.

Commit and tag objects are re-written from their raw text with only their tree/parent/object lines replaced, so
authors, committers, dates, messages and extra headers stay byte for byte (a signature no longer matches the
rewritten object and is dropped, counted; signatures.py gives the signed originals back from the backups). That
is what makes import followed by export give back the original ids.
"""

from __future__ import annotations

from git_theta.errors import ThetaError

BACKUP_PREFIX = "refs/theta-migrate/backup"


class MigrateError(ThetaError):
    pass
