"""Where a command writes, and the exit codes (product.md). Kept light: `hubsync status` and
`--version` import this and the journal, not the transfer engine, aiohttp or asyncssh."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .render import JsonLines, retry_line

if TYPE_CHECKING:
    from transfer.pacer import RetryNote

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 3, 130, 141


class Output:
    """Where a command writes: JSON lines, or text for people."""

    def __init__(self, json_mode: bool, quiet: bool = False, verbose: int = 0) -> None:
        self.json = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self.jsonl = JsonLines()

    def error(self, text: str, code: int, message: str | None = None) -> int:
        """A command's end in failure: one line on stderr and, with --json, an error event on stdout
        (which then holds only JSON; `message`, default the line less its "hubsync: "); returns the exit code."""
        if self.json:
            self.jsonl.print({"event": "error", "message": message or text.removeprefix("hubsync: "), "exit": code})
        self.warn(text)
        return code

    def result(self, obj: dict[str, Any], text: str) -> None:
        if self.json:
            self.jsonl.print(obj)
        elif not self.quiet or obj.get("files_failed"):
            print(text)

    def warn(self, text: str) -> None:
        print(text, file=sys.stderr)  # sys.stderr as it is now: a live progress display shows it above its bars

    def retry(self, note: RetryNote) -> None:
        """The pacer's report of a retry: a `retry` event with --json, a line on stderr with -v."""
        if self.json:
            self.jsonl.print({"event": "retry", **note.as_dict()}, flush=False)
        elif self.verbose:
            self.warn(retry_line(note))
