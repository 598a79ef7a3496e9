"""A fake Clock for tests: sleeps take no real time, they move the clock on."""

from __future__ import annotations

import asyncio


class FakeClock:
    """`now()` is fake seconds; `sleep(s)` moves them on to its wake-up time and only yields.

    A sleep wakes at (its start + s): sleepers that start together move the clock to the
    latest of their wake-ups, not the sum. Time never goes back, so every deadline ends.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        wake = self._now + seconds
        await asyncio.sleep(0)
        self._now = max(self._now, wake)

    @property
    def elapsed(self) -> float:
        return self._now - self.start
