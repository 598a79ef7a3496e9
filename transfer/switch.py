"""The auto transport's circuit breaker: after the chunk API answers 404/405, use SFTP for a while.

A proxy that hides the chunk endpoints for a moment must not send a long-lived daemon to SFTP
until it restarts: the switch holds for `hold` seconds, then the next file tries HTTP again
(and a 404 then opens it again). `since` and `until` are wall-clock times, for `status`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Open:
    reason: str
    since: float  # wall clock
    until: float  # wall clock
    ends: float  # the injected (monotonic) clock


class TransportSwitch:
    """Open = HTTP unavailable, use the fallback; closes by itself `hold` seconds after it opened."""

    def __init__(self, hold: float, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.hold = hold
        self._clock, self._wall = clock, wall
        self._open: _Open | None = None
        self._closed = False

    def trip(self, reason: str) -> None:
        """The primary transport is unavailable: use the fallback from now for `hold` seconds."""
        now = self._wall()
        self._open = _Open(reason, now, now + self.hold, self._clock() + self.hold)

    def active(self) -> bool:
        """True while the fallback is to be used; False again once the hold is over."""
        if self._open is not None and self._clock() >= self._open.ends:
            self._open, self._closed = None, True
        return self._open is not None

    def just_closed(self) -> bool:
        """True once after the hold ended (to say that the primary is tried again)."""
        closed, self._closed = self._closed, False
        return closed

    def snapshot(self) -> dict[str, Any] | None:
        """{"reason", "since", "until"} while open (for `status`), else None."""
        if not self.active() or self._open is None:
            return None
        return {"reason": self._open.reason, "since": round(self._open.since, 3), "until": round(self._open.until, 3)}
