"""The request log: one JSON line per API request, for tests and for humans.

Never holds a secret: handlers add only the endpoint fields named in their log calls, and no
password, token, Authorization header or SFTP password is ever among them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any


class RequestLog:
    """Appends JSON lines to `path`, flushed per line so a reader sees every finished request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Open for appending (an emulator restarted on the same root continues the log)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()

    def write(self, entry: dict[str, Any]) -> None:
        """Append one entry (a line is small: the write does not stall the loop)."""
        if self._file is None:
            return
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        if self._file is not None:
            self._file.close()
            self._file = None
