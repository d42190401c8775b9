"""--include / --exclude: gitattributes patterns matched against paths, as git matches them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field


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
