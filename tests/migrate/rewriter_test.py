"""The history walk's progress line."""

from __future__ import annotations

import io

from git_theta.migrate import rewriter


def test_progress_names_the_commit_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        bar = rewriter.CommitProgress("import", stream)
        bar(1, 2)
        bar(2, 2)
    assert shown.getvalue() == "\rgit-theta: migrate import: commit 1/2\rgit-theta: migrate import: commit 2/2\n"
    assert hidden.getvalue() == ""
