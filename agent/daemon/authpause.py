"""The daemon's pause after a refused login: bounded login attempts, and what `status` shows.

A refused login (a password changed on the platform, a revoked token) is no file's fault:
the jobs pause with every file still queued, and the daemon tries to log in again after 5 s,
10 s, 20 s ... up to a cap (`[daemon] login_retry_seconds`, `login_retry_max_seconds`). A
changed password file or a SIGHUP brings the next attempt forward. Pure: `now` is passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class AuthPause:
    """Closed (jobs paused) from a refused login until a login works again."""

    def __init__(self, first: float, cap: float, wall: Callable[[], float] = time.time) -> None:
        self.first, self.cap = first, cap
        self._wall = wall
        self.failed_since: float | None = None  # wall time of the first refusal
        self.reason = ""
        self.attempts = 0  # refused logins since the pause began
        self.next_attempt = 0.0  # monotonic
        self.delay = 0.0
        self.unreachable = False  # the last attempt did not reach the platform (vs. refused)

    @property
    def paused(self) -> bool:
        return self.failed_since is not None

    def refused(self, reason: str, now: float, *, unreachable: bool = False) -> float:
        """Record a refused (or unreachable) login; returns the seconds until the next attempt (doubling, capped)."""
        if self.failed_since is None:
            self.failed_since = self._wall()
        self.attempts += 1
        self.reason, self.unreachable = reason, unreachable
        self.delay = min(self.cap, self.first * 2 ** min(self.attempts - 1, 30))
        self.next_attempt = now + self.delay
        return self.delay

    def due(self, now: float) -> bool:
        return self.paused and now >= self.next_attempt

    def hurry(self) -> None:
        """Try at once (the password file changed, or SIGHUP)."""
        self.next_attempt = 0.0

    def resumed(self) -> None:
        self.failed_since, self.reason, self.attempts, self.delay = None, "", 0, 0.0

    def snapshot(self, now: float) -> dict[str, Any] | None:
        if self.failed_since is None:
            return None
        return {"since": round(self.failed_since, 3), "reason": self.reason, "attempts": self.attempts,
                "unreachable": self.unreachable,
                "next_attempt_in": round(max(0.0, self.next_attempt - now), 1)}


def render(auth: dict[str, Any]) -> str:
    """The status line: 'authentication failed since <time>: <reason> (...)'."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(auth["since"])))
    what = "platform unreachable" if auth.get("unreachable") else "authentication failed"
    return (f"{what} since {since}: {auth['reason']} ({auth['attempts']} login attempt(s),"
            f" next in {auth['next_attempt_in']:g}s; files stay queued; fix the password (file) or send SIGHUP)")
