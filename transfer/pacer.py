"""One owner of retry policy: exponential back-off with full jitter, Retry-After honoured."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import Retryable

T = TypeVar("T")
log = logging.getLogger("hubsync.pacer")

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Pacer:
    """Runs a call until it succeeds, raises a non-retryable error, or attempts run out.

    Only `Retryable` is retried; everything else propagates at once. The sleep and the
    random source are injectable so tests can count delays instead of timing them.
    """

    attempts: int = 10
    base_delay: float = 0.25
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    sleep: Sleep = asyncio.sleep
    rng: Callable[[], float] = field(default_factory=lambda: random.Random().random)
    on_retry: Callable[[str, Retryable, float], None] | None = None

    def delay_for(self, attempt: int, error: Retryable) -> float:
        """The pause before retry number `attempt` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        # Full jitter spreads simultaneous clients apart; never sleep less than the server asked.
        delay = backoff * (0.5 + 0.5 * self.rng())
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_retry_after))
        return delay

    async def call(self, fn: Callable[[], Awaitable[T]], *, what: str = "") -> T:
        """Await `fn()` with retries; raise the last `Retryable` when attempts run out."""
        attempt = 0
        while True:
            try:
                return await fn()
            except Retryable as exc:
                attempt += 1
                if attempt >= self.attempts:
                    raise
                delay = self.delay_for(attempt, exc)
                log.debug("retry %s after %.2fs (attempt %d): %s", what, delay, attempt, exc)
                if self.on_retry is not None:
                    self.on_retry(what, exc, delay)
                await self.sleep(delay)
