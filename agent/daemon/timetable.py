"""Bandwidth by time of day: `[daemon] timetable = ["08:00,2MiB/s", "19:00,off"]`."""

from __future__ import annotations

import time
from collections.abc import Callable

from transfer.bandwidth import TokenBucket

from ..config import parse_timetable

UNLIMITED = float(1 << 50)  # bytes per second no link reaches: the bucket never waits


def limit_at(table: list[tuple[int, int]], minute: int) -> int:
    """The limit (bytes/s, 0 = none) in force at `minute` of the day; the last entry runs past midnight."""
    current = table[-1][1]
    for start, limit in table:
        if start <= minute:
            current = limit
    return current


class Timetable:
    """Sets the shared token bucket's rate as the day goes by."""

    def __init__(self, entries: list[str], bucket: TokenBucket, default: int, chunk_size: int,
                 localtime: Callable[[], time.struct_time] = time.localtime) -> None:
        self.table = parse_timetable(entries)
        self.bucket = bucket
        self.default = default
        self.chunk_size = chunk_size
        self._localtime = localtime
        self.current: int | None = None

    def limit_now(self) -> int:
        if not self.table:
            return self.default
        t = self._localtime()
        return limit_at(self.table, t.tm_hour * 60 + t.tm_min)

    def apply(self) -> int | None:
        """Update the bucket if the limit changed; returns the new limit, or None when unchanged."""
        limit = self.limit_now()
        if limit == self.current:
            return None
        self.current = limit
        rate = float(limit) if limit else UNLIMITED
        self.bucket.set_rate(rate, burst=max(rate if limit else self.chunk_size, self.chunk_size))
        return limit
