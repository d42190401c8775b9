"""Reading and writing git-theta's lines in the repository's .gitattributes."""

from __future__ import annotations

from pathlib import Path

ATTRIBUTES = "filter=theta diff=theta merge=theta -text"
# An excluded pattern's attributes are made unspecified again, as if no tracked pattern had matched: git stores
# such files (config.json under a tracked weights/**) itself.
EXCLUDED = "!filter !diff !merge !text"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _pattern(line: str) -> str | None:
    """The pattern of a line that sets filter=theta, else None."""
    parts = line.split()
    if len(parts) >= 2 and not line.lstrip().startswith("#") and "filter=theta" in parts[1:]:
        return parts[0]
    return None


def tracked_patterns(path: Path) -> list[str]:
    return [p for p in (_pattern(line) for line in _lines(path)) if p is not None]


# The first line a person who clones without git-theta reads when the "model" is a small JSON file: what it is and
# how to get the real one. A comment, so neither git nor git-lfs reads anything into it.
CLONE_HINT = (
    "# Files matched by filter=theta lines are stored by git-theta. Plain git or git-lfs check out its metadata "
    "text instead of the model: pip install git-theta, then run: git theta install && git theta checkout"
)


def track(path: Path, patterns: list[str]) -> list[str]:
    """Append a line per new pattern (and the clone hint at the top, once); returns the patterns added."""
    existing = set(tracked_patterns(path))
    added = [p for p in dict.fromkeys(patterns) if p not in existing]
    if added:
        lines = _lines(path)
        if CLONE_HINT not in lines:
            lines.insert(0, CLONE_HINT)
        lines += [f"{pattern} {ATTRIBUTES}" for pattern in added]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return added


def lfs_patterns(path: Path) -> list[str]:
    """Patterns of the lines that route files to git-lfs (as Hugging Face repositories do for *.safetensors)."""
    return [
        line.split()[0]
        for line in _lines(path)
        if not line.lstrip().startswith("#") and "filter=lfs" in line.split()[1:]
    ]


def exclude(path: Path, patterns: list[str]) -> list[str]:
    """Append a line per pattern not excluded yet, after the tracked ones (later lines win); returns those added."""
    lines = _lines(path)
    existing = {line.split()[0] for line in lines if line.split()[1:] == EXCLUDED.split()}
    added = [p for p in dict.fromkeys(patterns) if p not in existing]
    if added:
        path.write_text("\n".join(lines + [f"{pattern} {EXCLUDED}" for pattern in added]) + "\n", encoding="utf-8")
    return added


def untrack(path: Path, patterns: list[str]) -> list[str]:
    """Remove git-theta's lines for these patterns; returns the patterns removed."""
    wanted = set(patterns)
    kept, removed = [], []
    for line in _lines(path):
        pattern = _pattern(line)
        if pattern in wanted:
            removed.append(pattern)
        else:
            kept.append(line)
    if removed:
        if not any(_pattern(line) for line in kept):
            kept = [line for line in kept if line != CLONE_HINT]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return removed
