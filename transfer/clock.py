"""One clock for every wait: `now()` (monotonic seconds) and `sleep()`, injected, so tests run waits in zero time."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol


class Clock(Protocol):
    """What a timed piece of hubsync asks of time: where it is now, and to wait."""

    def now(self) -> float:
        """Monotonic seconds (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (no less; a negative or zero wait only yields)."""
        ...


class SystemClock:
    """The real clock: time.monotonic and asyncio.sleep (the only place product code uses them)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


async def wait_or_timeout(clock: Clock, future: asyncio.Future[Any], seconds: float) -> bool:
    """Wait for `future` at most `seconds` of `clock`; True when it is done.

    The future is never cancelled (its result stays available to a later wait).
    """
    if future.done():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    try:
        await asyncio.wait({future, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
    return future.done()
