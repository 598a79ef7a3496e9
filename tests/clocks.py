"""A fake Clock for tests: sleeps take no real time, they move the clock on."""

from __future__ import annotations

import asyncio


class FakeClock:
    """`now()` is fake seconds; `sleep(s)` advances them by `s` and only yields to the loop.

    Concurrent sleepers each advance it (fake time runs ahead of what a real run would take,
    never behind), so a wait with a deadline always ends.
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
        self._now += seconds
        await asyncio.sleep(0)

    @property
    def elapsed(self) -> float:
        return self._now - self.start
