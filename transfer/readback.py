"""Reading a remote file back (`hubsync check --download`): where its bytes go as they arrive.

A reader (SFTP, a datahub download) streams a file into a `ByteSink` in order, a piece at a
time; nothing holds a whole file. A reader whose attempt failed midway asks the server for the
rest, from `sink.position`; one that gets the whole file again calls `restart()` first.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Protocol

#: Bytes gathered before they are hashed in a thread: one hop per MiB, not one per network read.
HASH_PIECE = 1 << 20


class ByteSink(Protocol):
    """Takes a file's bytes in order."""

    @property
    def position(self) -> int:
        """Bytes taken so far: where a resumed read starts."""
        ...

    async def write(self, data: bytes) -> None: ...

    def restart(self) -> None:
        """Forget every byte taken: the server sends the file from its start again."""
        ...


class Md5Sink:
    """The md5 of the bytes written, hashed off the event loop; `on_bytes(delta)` reports progress
    (a restart reports the bytes it forgets as a negative delta)."""

    def __init__(self, on_bytes: Callable[[int], None] | None = None) -> None:
        self._md5 = hashlib.md5()
        self._pending = bytearray()
        self._position = 0
        self._on_bytes = on_bytes

    @property
    def position(self) -> int:
        return self._position

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending += data
        self._position += len(data)
        if self._on_bytes is not None:
            self._on_bytes(len(data))
        if len(self._pending) >= HASH_PIECE:
            await self._flush()

    def restart(self) -> None:
        if self._on_bytes is not None and self._position:
            self._on_bytes(-self._position)
        self._md5 = hashlib.md5()
        self._pending = bytearray()
        self._position = 0

    async def hexdigest(self) -> str:
        """The md5 of every byte written so far."""
        await self._flush()
        return self._md5.hexdigest()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, bytearray()
        if pending:
            await asyncio.to_thread(self._md5.update, pending)  # hashlib releases the GIL
