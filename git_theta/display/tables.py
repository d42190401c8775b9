"""Plain-text tables and terminal colour for the inspection commands (diff, log, show)."""

from __future__ import annotations

import math
from collections.abc import Sequence

COLORS = {"added": "32", "removed": "31", "modified": "33", "bold": "1", "dim": "2"}


def paint(text: str, color: str, enabled: bool) -> str:
    """`text` in an ANSI colour (a COLORS key) when enabled."""
    if not enabled or not text:
        return text
    return f"\033[{COLORS[color]}m{text}\033[0m"


def table(
    rows: Sequence[Sequence[str]],
    right: Sequence[int] = (),
    indent: str = "",
    colors: Sequence[str | None] | None = None,
    color: bool = False,
) -> list[str]:
    """Rows aligned in columns; `right` lists right-aligned columns; `colors[i]` paints row i's first cell."""
    widths = (
        [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(len(r) for r in rows))] if rows else []
    )
    lines = []
    for index, row in enumerate(rows):
        cells = []
        for column, cell in enumerate(row):
            padded = cell.rjust(widths[column]) if column in right else cell.ljust(widths[column])
            if column == 0 and colors and colors[index]:
                padded = paint(padded, colors[index], color)  # type: ignore[arg-type]
            cells.append(padded)
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}e}"


def share(value: float) -> str:
    """A fraction as a percentage that never rounds a real change to 0% or 100%."""
    if 0 < value < 0.0001:
        return "<0.01%"
    if 0.9999 < value < 1:
        return ">99.99%"
    return f"{value * 100:.2f}%"


def cosine(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.6f}"
