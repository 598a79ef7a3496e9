"""A token bucket shared by every transfer of a process: `bandwidth_limit` bytes per second."""

from __future__ import annotations

import asyncio

from .clock import Clock, SystemClock


class TokenBucket:
    """Admits `rate` bytes per second on average, with bursts of up to `burst` bytes.

    A request larger than the burst is admitted once the bucket is full and leaves it in debt,
    so a chunk bigger than a second's worth still goes through at the configured average rate.
    The clock is injectable so tests count instead of timing.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock: Clock = clock or SystemClock()
        self._tokens = self.burst
        self._stamp = self._clock.now()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock.now()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the limit from now on (a bandwidth timetable); what was admitted stays admitted."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._refill()
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._tokens = min(self._tokens, self.burst)

    async def consume(self, amount: int) -> None:
        """Wait until `amount` bytes may be sent (FIFO among waiters)."""
        async with self._lock:
            self._refill()
            need = min(float(amount), self.burst)
            while self._tokens < need:
                await self._clock.sleep((need - self._tokens) / self.rate)
                self._refill()
            self._tokens -= amount
