"""The one retry policy (rclone's lib/pacer): back-off with jitter, Retry-After, a time budget, polling.

It is built once by the composition root and injected; only leaf calls (one HTTP request
with its login, one SFTP operation) go through `call`, so retries never nest. Errors are
classified before they get here (`Retryable` or not); a call that runs out of budget raises
`GaveUp`, which no other pacer retries.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .clock import Clock, SystemClock
from .errors import GaveUp, Retryable

T = TypeVar("T")
log = logging.getLogger("hubsync.pacer")
#: The file a task is sending (set by the engine), so that a retry can name it; tasks a send
#: starts (parallel chunks) inherit it, other tasks never see it.
retry_subject: ContextVar[str] = ContextVar("retry_subject", default="")


@dataclass(frozen=True)
class RetryNote:
    """One retry, as the pacer reports it (`Pacer.on_retry`) before it pauses."""

    call: str  # the leaf call: an endpoint path, an SFTP operation
    reason: str  # what went wrong, without the call's name
    attempt: int  # 1 for the first retry
    delay: float  # seconds before the retry starts
    path: str = ""  # the file being sent, when the call was made for one

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"call": self.call}
        if self.path:
            out["path"] = self.path
        out.update(reason=self.reason, attempt=self.attempt, delay=round(self.delay, 3))
        return out


@dataclass
class Pacer:
    """Runs a leaf call until it succeeds, raises a non-retryable error, or its budget is spent.

    Only `Retryable` is retried. No retry starts later than `give_up_after` seconds after the
    call's first attempt began (an error's own `patience` may shorten that: a refused
    connection is retried only briefly), and no pause crosses that line. A Retry-After delays
    every call of this pacer, not just the one that met it (shared state, as in rclone).
    """

    give_up_after: float = 30.0
    base_delay: float = 0.25
    max_delay: float = 8.0
    clock: Clock = field(default_factory=SystemClock)
    rng: Callable[[], float] = field(default_factory=lambda: random.Random().random)
    on_retry: Callable[[RetryNote], None] | None = None  # told of every retry (the CLI's -v, --json)
    _not_before: float = field(default=0.0, init=False)

    def delay_for(self, attempt: int, error: Retryable) -> float:
        """The pause before retry number `attempt` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        # Jitter spreads simultaneous clients apart; never sleep less than the server asked.
        delay = backoff * (0.5 + 0.5 * self.rng())
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay

    def deadline(self, seconds: float) -> float:
        """The clock's time `seconds` from now."""
        return self.clock.now() + seconds

    async def call(self, fn: Callable[[], Awaitable[T]], *, what: str = "") -> T:
        """Await `fn()` with retries; raise `GaveUp` (carrying the last error) when the budget is spent."""
        started = self.clock.now()
        attempt = 0
        while True:
            wait = self._not_before - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            try:
                return await fn()
            except Retryable as exc:
                attempt += 1
                delay = self.delay_for(attempt, exc)
                budget = self.give_up_after if exc.patience is None else min(self.give_up_after, exc.patience)
                elapsed = self.clock.now() - started
                if elapsed + delay > budget:
                    raise GaveUp(exc, seconds=elapsed, attempts=attempt) from exc
                if exc.retry_after is not None:
                    self._not_before = max(self._not_before, self.clock.now() + exc.retry_after)
                log.debug("retry %s after %.2fs (attempt %d): %s", what, delay, attempt, exc)
                if self.on_retry is not None:
                    call = what or exc.endpoint
                    reason = exc.message if exc.endpoint in ("", call) else str(exc)
                    self.on_retry(RetryNote(call, reason, attempt, delay, retry_subject.get()))
                await self.clock.sleep(delay)

    async def poll_until(
        self, done: Callable[[], Awaitable[bool]], deadline: float, *, first: float = 0.1, longest: float = 5.0
    ) -> bool:
        """Check `done()` with growing pauses until it is true or the clock passes `deadline`.

        For asynchronous platform work (a version being created, an import, a file about to
        show): returns whether it came true; the caller reports a time-out as an error. Errors
        of `done` propagate (its calls are paced leaf calls already).
        """
        pause = first
        while True:
            if await done():
                return True
            left = deadline - self.clock.now()
            if left <= 0:
                return False
            await self.clock.sleep(min(pause, left))
            pause = min(pause * 1.6, longest)
