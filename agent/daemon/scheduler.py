"""One queue across jobs: order, batches, per-file retry with capped exponential back-off.

The scheduler decides *what* goes next and *when* a failed file is tried again; the engine
(through the `send` callback) decides *how*. A file is queued once however often it is
submitted (entries are keyed by job and path), and a failing file waits its turn without
holding up the others.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from transfer.engine import SendItem
from transfer.errors import AuthFailed, JournalError, TransferError

log = logging.getLogger("hubsync.daemon")

# (job, items) -> {rel: error} for the items that failed; the others are done.
BatchSender = Callable[[str, list[SendItem]], Awaitable[dict[str, str]]]
# Told when a batch met a refused login; the scheduler has paused itself (resume() ends it).
AuthFailedHook = Callable[[AuthFailed], None]


@dataclass
class Entry:
    job: str
    item: SendItem
    seq: int
    attempts: int = 0
    not_before: float = 0.0
    last_error: str | None = None

    @property
    def rel(self) -> str:
        return self.item.local.rel


@dataclass
class JobCounts:
    queued: int = 0
    active: int = 0
    failing: int = 0
    retries: int = 0
    done: int = 0
    failed: int = 0  # failures seen (each failed attempt counts)


@dataclass
class SchedulerSettings:
    lanes: int = 4  # batches in flight at once (the engines share `transfers` slots between them)
    order: str = "smallest"
    retry_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    batch_files: int = 256
    batch_bytes: int = 256 << 20


@dataclass(order=True)
class _Ref:
    key: tuple[int, ...]
    seq: int
    job: str = field(compare=False)
    rel: str = field(compare=False)


class Scheduler:
    """The daemon's queue. Single-threaded: call everything from the event loop."""

    def __init__(self, settings: SchedulerSettings, send: BatchSender,
                 clock: Callable[[], float] = time.monotonic, on_auth_failed: AuthFailedHook | None = None) -> None:
        self.settings = settings
        self._send = send
        self._on_auth_failed = on_auth_failed
        self._paused = False
        self._clock = clock
        self._entries: dict[tuple[str, str], Entry] = {}
        self._ready: list[_Ref] = []
        self._delayed: list[tuple[float, int, str, str]] = []
        self._active: dict[tuple[str, str], Entry] = {}
        self._again: dict[tuple[str, str], SendItem] = {}
        self._counts: dict[str, JobCounts] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._lanes: list[asyncio.Task[None]] = []

    # -- input -----------------------------------------------------------------------------
    def submit(self, job: str, item: SendItem) -> None:
        """Queue (or refresh) one file; a file being sent now is queued again after it."""
        key = (job, item.local.rel)
        if key in self._active:
            self._again[key] = item
            return
        entry = self._entries.get(key)
        self._seq += 1
        if entry is None:
            entry = self._entries[key] = Entry(job, item, self._seq)
        else:
            entry.item, entry.seq, entry.not_before = item, self._seq, 0.0  # news: try it now
        heapq.heappush(self._ready, _Ref(self._key(entry), entry.seq, job, entry.rel))
        self._compact()
        self._wake.set()

    def drop_job(self, job: str) -> None:
        """Forget a job's queue (it was removed from the config)."""
        for key in [k for k in self._entries if k[0] == job]:
            del self._entries[key]
        for key in [k for k in self._again if k[0] == job]:
            del self._again[key]
        self._counts.pop(job, None)

    # -- reading ---------------------------------------------------------------------------
    def counts(self, job: str) -> JobCounts:
        c = self._counts.setdefault(job, JobCounts())
        c.queued = sum(1 for k in self._entries if k[0] == job and k not in self._active)
        c.active = sum(1 for k in self._active if k[0] == job)
        c.failing = sum(1 for k, e in self._entries.items() if k[0] == job and e.last_error)
        return c

    def failing(self, job: str, limit: int = 10) -> list[Entry]:
        """The job's files waiting for a retry, most attempts first."""
        entries = [e for k, e in self._entries.items() if k[0] == job and e.last_error]
        return sorted(entries, key=lambda e: -e.attempts)[:limit]

    @property
    def depth(self) -> int:
        return len(self._entries)

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        self._lanes = [asyncio.create_task(self._lane(), name=f"hubsync-lane-{i}")
                       for i in range(self.settings.lanes)]

    def stop_taking(self) -> None:
        """No new batch starts; batches in flight go on."""
        self._stopping = True
        self._wake.set()

    async def drain(self, grace: float) -> bool:
        """Wait up to `grace` seconds for the batches in flight; cancel what is left. True if none was."""
        self.stop_taking()
        if not self._lanes:
            return True
        _, pending = await asyncio.wait(self._lanes, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes = []
        return not pending

    def pause(self) -> None:
        """Start no batch until resume() (a refused login: no file can succeed)."""
        self._paused = True

    def auth_refused(self, exc: AuthFailed) -> None:
        """A refused login, met here or by a job's delete pass: pause, and tell the daemon."""
        self.pause()
        if self._on_auth_failed is not None:
            self._on_auth_failed(exc)

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def cancel_now(self) -> None:
        """Interrupt the batches in flight (a second SIGTERM)."""
        self._stopping = True
        for task in self._lanes:
            task.cancel()

    async def _lane(self) -> None:
        while not self._stopping:
            batch = None if self._paused else self._take()
            if batch is None:
                self._wake.clear()
                wait = None if self._paused else self._next_retry()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass
                continue
            await self._run(*batch)

    async def _run(self, job: str, entries: list[Entry]) -> None:
        counts = self._counts.setdefault(job, JobCounts())
        for entry in entries:
            self._active[(job, entry.rel)] = entry
            if entry.attempts:
                counts.retries += 1
        # What the engine reports per file is a file failure; what escapes it concerns the
        # whole batch (a refused login, the journal, a bug) and is handled by what it is.
        try:
            try:
                failures = await self._send(job, [e.item for e in entries])
            except AuthFailed as exc:
                self._requeue(job, entries, exc)
                return
            except (TransferError, OSError, sqlite3.Error, JournalError) as exc:  # the platform or the state dir: retry later
                log.error("batch of %d files not sent: %s", len(entries), exc,
                          extra={"fields": {"event": "batch_failed", "job": job, "error": str(exc)}})
                self._settle(job, entries, {e.rel: f"not sent: {exc}" for e in entries}, of_files=False)
                return
            except Exception as exc:  # a bug: logged with its traceback, the daemon and the other jobs go on
                log.error("internal error while sending a batch of %d files: %s: %s", len(entries),
                          type(exc).__name__, exc, exc_info=True,
                          extra={"fields": {"event": "internal_error", "job": job}})
                message = f"not sent: internal error ({type(exc).__name__}), see the daemon's log"
                self._settle(job, entries, {e.rel: message for e in entries}, of_files=False)
                return
        finally:
            for entry in entries:
                self._active.pop((job, entry.rel), None)
        self._settle(job, entries, failures, of_files=True)

    def _requeue(self, job: str, entries: list[Entry], exc: AuthFailed) -> None:
        """A refused login: pause, and keep the batch queued as it was (no attempt counted)."""
        for entry in entries:
            key = (job, entry.rel)
            self._active.pop(key, None)
            again = self._again.pop(key, None)
            if key in self._entries:
                heapq.heappush(self._ready, _Ref(self._key(entry), entry.seq, job, entry.rel))
            if again is not None:
                self.submit(job, again)
        self.auth_refused(exc)

    def _settle(self, job: str, entries: list[Entry], failures: dict[str, str], *, of_files: bool) -> None:
        """Done, or back off; `of_files` False: the batch failed as a whole (not counted as file failures)."""
        now = self._clock()
        for entry in entries:
            key = (job, entry.rel)
            self._active.pop(key, None)
            error = failures.get(entry.rel)
            again = self._again.pop(key, None)
            counts = self._counts.get(job)
            if counts is None:
                continue  # the job was removed meanwhile
            if error is None:
                counts.done += 1
                self._entries.pop(key, None)
            else:
                counts.failed += of_files
                entry.attempts += 1
                entry.last_error = error
                entry.not_before = now + self.backoff(entry.attempts)
                self._entries[key] = entry
                heapq.heappush(self._delayed, (entry.not_before, entry.seq, job, entry.rel))
            if again is not None:
                self.submit(job, again)
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: doubling from retry_seconds, capped."""
        s = self.settings
        return min(s.retry_max_seconds, s.retry_seconds * 2 ** min(attempts - 1, 30))

    # -- internals -------------------------------------------------------------------------
    def _key(self, entry: Entry) -> tuple[int, ...]:
        size = entry.item.local.size
        if self.settings.order == "largest":
            return (-size,)
        if self.settings.order == "oldest":
            return ()
        return (size,)

    def _live(self, job: str, rel: str, seq: int) -> Entry | None:
        entry = self._entries.get((job, rel))
        if entry is None or entry.seq != seq or (job, rel) in self._active:
            return None
        return entry

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, job, rel = heapq.heappop(self._delayed)
            entry = self._live(job, rel, seq)
            if entry is not None and entry.not_before <= now:
                heapq.heappush(self._ready, _Ref(self._key(entry), entry.seq, job, rel))

    def _take(self) -> tuple[str, list[Entry]] | None:
        """The next batch: the best ready file, then more of the same job in order, within limits."""
        self._promote(self._clock())
        s = self.settings
        job: str | None = None
        batch: list[Entry] = []
        aside: list[_Ref] = []
        size = 0
        while self._ready and len(batch) < s.batch_files and size < s.batch_bytes:
            if len(aside) > 4 * s.batch_files:
                break
            ref = heapq.heappop(self._ready)
            entry = self._live(ref.job, ref.rel, ref.seq)
            if entry is None or entry.not_before > self._clock():
                continue  # stale (superseded, active, or waiting for its retry time)
            if job is not None and ref.job != job:
                aside.append(ref)
                continue
            job = ref.job
            batch.append(entry)
            size += entry.item.local.size
        for ref in aside:
            heapq.heappush(self._ready, ref)
        return (job, batch) if job is not None else None

    def _next_retry(self) -> float | None:
        if not self._delayed:
            return None
        return max(0.0, self._delayed[0][0] - self._clock())

    def _compact(self) -> None:
        # Superseded refs stay in the heaps until popped: rebuild when they outnumber live ones.
        if len(self._ready) > 2 * len(self._entries) + 1024:
            self._ready = [r for r in self._ready if self._live(r.job, r.rel, r.seq) is not None]
            heapq.heapify(self._ready)
        if len(self._delayed) > 2 * len(self._entries) + 1024:
            self._delayed = [d for d in self._delayed if self._live(d[2], d[3], d[1]) is not None]
            heapq.heapify(self._delayed)
