"""The interactive strategy prompt, on the controlling terminal (/dev/tty), never on stdin.

git runs the merge driver with its own stdin and stdout, so the prompt
opens /dev/tty; without one (CI, cron, a pipe) there is no prompt at all.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TextIO

from git_theta import plugins
from git_theta.errors import ThetaError
from git_theta.merge.plan import Conflict
from git_theta.merge.policy import Choice, make_choice, parse_assignments
from git_theta.merge.unresolved import UnresolvedConflicts, unresolved_message


def open_terminal() -> TextIO | None:
    """The controlling terminal for reading and writing, or None when there is none."""
    try:
        # FileIO, not open(..., "r+"): a text file opened r+ wants a seekable stream, a tty is not one.
        return io.TextIOWrapper(io.FileIO("/dev/tty", "r+"), encoding="utf-8", line_buffering=True, write_through=True)
    except OSError:
        return None


class TerminalPrompt:
    """Asks for a strategy per conflicting parameter, with "apply to all remaining"."""

    def __init__(self, tty: TextIO, hint: str) -> None:
        self.tty = tty
        self.hint = hint
        self.strategies = plugins.loadable(plugins.MERGES)[0]  # a broken third-party strategy is not offered
        self.names = list(self.strategies)

    def __call__(self, path: str, conflicts: Sequence[Conflict], labels: Sequence[str]) -> dict[str, Choice]:
        self._say(
            f"git-theta: {path}: {len(conflicts)} parameter(s) changed differently on several sides "
            f"({', '.join(labels)})."
        )
        self._list_strategies()
        choices: dict[str, Choice] = {}
        for index, conflict in enumerate(conflicts):
            self._say(f"[{index + 1}/{len(conflicts)}] {conflict.describe(labels)}")
            choice = self._ask_choice(path, conflicts[index:], labels)
            choices[conflict.name] = choice
            remaining = len(conflicts) - index - 1
            if remaining and self._ask_yes(
                f"apply '{choice.label()}' to all {remaining} remaining parameter(s)? [y/N] "
            ):
                choices.update({c.name: choice for c in conflicts[index + 1 :]})
                break
        return choices

    def _list_strategies(self) -> None:
        for number, name in enumerate(self.names, start=1):
            strategy = self.strategies[name]
            arguments = ", ".join(f"{a.name}={a.default}" for a in strategy.arguments)
            self._say(f"  {number}) {name:<16} {strategy.summary}" + (f"  [{arguments}]" if arguments else ""))

    def _ask_choice(self, path: str, left: Sequence[Conflict], labels: Sequence[str]) -> Choice:
        while True:
            words = self._read("strategy (number or name, then optional NAME=VALUE arguments; q to stop): ").split()
            if not words:
                continue
            if words[0] in ("q", "quit"):
                raise UnresolvedConflicts(unresolved_message(path, left, labels, self.hint, "the prompt was stopped"))
            name = (
                self.names[int(words[0]) - 1]
                if words[0].isdigit() and 0 < int(words[0]) <= len(self.names)
                else words[0]
            )
            try:
                return make_choice(name, parse_assignments(words[1:], "prompt"), "prompt")
            except ThetaError as error:
                self._say(f"  {error}")

    def _ask_yes(self, question: str) -> bool:
        return self._read(question).strip().lower() in ("y", "yes")

    def _read(self, question: str) -> str:
        self.tty.write(question)
        self.tty.flush()
        line = self.tty.readline()
        if not line:  # end of input on the terminal: stop rather than guess
            raise UnresolvedConflicts("the terminal closed while asking for a merge strategy; nothing was merged")
        return line.strip()

    def _say(self, line: str) -> None:
        self.tty.write(line + "\n")
        self.tty.flush()
