"""Per-job counters, live transfers and recent errors, fed by the engine's progress events.

What `status`, the metrics endpoint and the logs show all comes from here. Everything is
bounded: live transfers are the files in flight, errors a short ring.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transfer.progress import Event

from .logs import event as log_event

# Seconds: per-file transfer durations for the histogram.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


@dataclass
class Live:
    """One file in flight."""

    path: str
    remote: str
    size: int
    started: float
    bytes: int = 0
    last: float = 0.0  # the latest progress: data done, before the batch's confirmation

    def seconds(self, now: float) -> float:
        return (self.last or now) - self.started

    def rate(self, now: float) -> float:
        return self.bytes / max(self.seconds(now), 1e-3)


@dataclass
class JobStats:
    name: str
    source: str
    remote: str
    files_sent: int = 0
    bytes_sent: int = 0
    files_unchanged: int = 0
    files_hashed: int = 0
    failures: int = 0
    deleted: int = 0
    live: dict[str, Live] = field(default_factory=dict)
    errors: deque[dict[str, object]] = field(default_factory=lambda: deque(maxlen=10))
    durations: Histogram = field(default_factory=Histogram)
    last_scan: dict[str, Any] = field(default_factory=dict)
    files_repaired: int = 0  # queued again by a remote check, then sent
    remote_check: dict[str, Any] = field(default_factory=dict)  # the last one: at, checked, repaired, seconds
    remote_check_next: float | None = None  # when the next is due (epoch seconds)

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "error": message, "at": round(time.time(), 3)})


class JobSink:
    """The engine's ProgressSink for one job: keeps the stats and writes the JSON log lines."""

    def __init__(self, stats: JobStats, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats = stats
        self.clock = clock

    each_skipped = False  # counts unchanged files, never names them

    def emit(self, event: Event) -> None:
        s, kind = self.stats, event.kind
        if kind == "started":
            s.live[event.remote] = Live(event.path, event.remote, event.size, self.clock())
        elif kind == "progress":
            live = s.live.get(event.remote)
            if live is not None:
                live.bytes += event.bytes
                live.last = self.clock()
        elif kind == "done":
            live = s.live.pop(event.remote, None)
            seconds = live.seconds(self.clock()) if live else 0.0
            s.files_sent += 1
            s.durations.observe(seconds)
            log_event(logging.INFO, "sent", job=s.name, path=event.path, remote=event.remote, bytes=event.size,
                      seconds=round(seconds, 3), rate=round(event.size / seconds) if seconds > 0 else None,
                      transport=event.transport or None)
        elif kind == "failed":
            s.live.pop(event.remote, None)
            s.failures += 1
            s.error(event.path, event.message)
            log_event(logging.WARNING, "failed", job=s.name, path=event.path, remote=event.remote,
                      error=event.message)
        elif kind == "skipped":
            s.files_unchanged += event.files
        elif kind == "info" and event.message:
            log_event(logging.INFO, "info", event.message, job=s.name, path=event.path or None)
