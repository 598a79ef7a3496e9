"""The engine: the only composer of destinations, the only writer of the journal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .clock import Clock, SystemClock, wait_or_timeout
from .destinations.base import ConfirmItem, Destination, ResumeState
from .drift import by_folder, drift
from .errors import AuthFailed, EndpointUnavailable, GaveUp, LocalFileChanged, Retryable, TransferError
from .hashing import InlineReads, fingerprint, hash_file, stat_file
from .journal import UNREADABLE, FileRecord, Journal
from .models import DatahubSpace, Digest, LocalFile, RemoteEntry, RemoteTarget, Space
from .pacer import retry_subject
from .progress import ByteProgress, Event, NullSink, ProgressSink, each_skipped
from .remotepath import display
from .scope import RunScope
from .switch import TransportSwitch

log = logging.getLogger("hubsync.engine")
T = TypeVar("T")
# Lists one remote folder (all pages): how the engine checks the platform before skipping a file.
#: (space, folder, names looked for) -> the folder's entries; it may stop listing once it has
#: shown every one of those names (transfer.api.PlatformClient.list_folder's `until`).
ListFolder = Callable[[Space | DatahubSpace, str, Collection[str]], Awaitable[list[RemoteEntry]]]
LIST_CONCURRENCY = 8
#: Batches planned at once (each its journal lookup and its folder's listing): a walk of small
#: folders keeps LIST_CONCURRENCY listings in flight as one listing of the whole tree did.
PLANNERS = LIST_CONCURRENCY
#: Files at least this large report their hashing (`hashing` events): it takes a noticeable while
#: (md5 reads about 0.5 GiB/s), and until it ends nothing is sent.
HASH_EVENTS_FROM = 16 << 20
HASH_EVENT_STEP = 4 << 20  # bytes hashed between two `hashing` events of one file
# A file's progress events: one per this many bytes sent (at most a chunk) or this many seconds.
PROGRESS_STEP = 1 << 20
PROGRESS_SECONDS = 0.5
#: Files planned to be sent but not yet hashed: the walk and the planning wait beyond this
#: (back-pressure), so a first sync of a million files never holds a million items.
PLANNED_AHEAD = 256
#: Failures a summary names (the first ones); beyond, it only counts them. Each was named once
#: as it happened (its failed event), so a run with a million failures stays small.
FAILURES_KEPT = 10_000
# A digest cache entry: the stat key it was computed for, and the digest.
CachedDigests = dict[str, tuple[tuple[int, int, int, int], "Digest"]]
# What a round consumes: a coroutine that puts each file to send (and its batch's cached digests).
Put = Callable[["SendItem", CachedDigests], Awaitable[None]]
Feed = Callable[[Put], Awaitable[None]]


class _cached:
    """functools.cached_property without its lock (Python 3.11 takes an RLock on every first
    read: 4 us a file of a 50,000-file no-op). Each SendItem is read by one task at a time."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.compute(obj)  # an instance attribute from now on
        return value


@dataclass(frozen=True)
class SendItem:
    """One local file and where it must end up."""

    local: LocalFile
    target: RemoteTarget

    @_cached
    def remote(self) -> str:
        """The journal's key of the target (a datahub version by ids)."""
        return str(self.target)

    @_cached
    def label(self) -> str:
        """The target as events and messages show it (a datahub version by its names)."""
        return self.remote if isinstance(self.target.space, Space) else self.target.label()


@dataclass(frozen=True)
class Refused:
    """A local file the remote cannot hold under its name (transfer.remotepath): never sent.

    `remote` is a label for the journal and for people (the REMOTE folder and the escaped
    name), never a path anything is written to.
    """

    local: LocalFile
    remote: str
    reason: str
    shown: str = ""  # `remote` for people (a datahub version by its names); default `remote`

    @property
    def rel(self) -> str:
        return display(self.local.rel)


@dataclass(frozen=True)
class Unreadable:
    """A local path the walk found but could not take (unreadable, a special file, a loop): never
    sent. Journaled as failed like a refused name, so `status` counts it; the walk reports it."""

    local_path: str
    remote: str  # a journal label, like Refused.remote
    reason: str


@dataclass
class Batch:
    """A bounded part of a walk (one folder's files, or part of a large folder): what to send,
    what cannot go for its name, what the walk could not read. Engine.run consumes a stream of them."""

    items: list[SendItem] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


@dataclass
class RunSummary:
    """What one run did; the CLI prints it (product.md names the keys)."""

    files_total: int = 0
    files_sent: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    bytes_total: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    files_hashed: int = 0
    files_repaired: int = 0  # recorded done, but missing or different on the remote: sent again
    repairing: set[str] = field(default_factory=set)  # remotes of the files being repaired
    transports: set[str] = field(default_factory=set)
    failures: list[tuple[str, str]] = field(default_factory=list)  # the first FAILURES_KEPT, (path, error)
    failures_unlisted: int = 0  # failed beyond those

    def fail(self, path: str, error: str) -> None:
        """Count one failed file; name it while fewer than FAILURES_KEPT are named."""
        self.files_failed += 1
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append((path, error))
        else:
            self.failures_unlisted += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "files_total": self.files_total,
            "files_sent": self.files_sent,
            "files_skipped": self.files_skipped,
            "files_failed": self.files_failed,
            "bytes_total": self.bytes_total,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "files_hashed": self.files_hashed,
            "files_repaired": self.files_repaired,
            "transports": sorted(self.transports),
            "failures": [{"path": p, "error": e} for p, e in self.failures],
            **({"failures_unlisted": self.failures_unlisted} if self.failures_unlisted else {}),
        }


@dataclass
class _Sent:
    item: SendItem
    record: FileRecord
    destination: Destination
    resume: ResumeState | None = None  # the live one from sending; None when read back from the journal
    instant: bool = False  # the platform held the content: placed without sending a byte
    # The journal's 'merged' write, not waited for by the sender: it joins the group of the
    # sender's next begin; the confirmer waits for it before it marks the file done.
    recorded: asyncio.Future[None] | None = None


class Engine:
    """Sends items through a destination with bounded concurrency, resuming from the journal."""

    def __init__(
        self,
        journal: Journal,
        destination: Destination,
        *,
        progress: ProgressSink | None = None,
        fallback: Destination | None = None,
        transfers: int = 4,
        hash_workers: int = 2,
        chunk_size: int = 8 << 20,
        change_retries: int = 3,
        settle_seconds: float = 1.0,
        settle_timeout: float = 120.0,
        clock: Clock | None = None,
        namespace: str = "",
        switch_seconds: float = 600.0,
    ) -> None:
        self.journal = journal
        # Journal keys carry the account, so two platforms or users never share a record.
        self.namespace = namespace
        self.destination = destination
        self.fallback = fallback
        # The primary's chunk md5s come from the read that hashes each file (none for SFTP).
        self._hashed_chunk_size: int = getattr(destination, "hashed_chunk_size", 0)
        self.progress = progress or NullSink()
        self.transfers = max(1, transfers)
        self.hash_workers = max(1, hash_workers)
        self.chunk_size = chunk_size
        self.change_retries = change_retries
        self.settle_seconds = settle_seconds
        self.settle_timeout = settle_timeout
        self.clock: Clock = clock or SystemClock()
        self.inline_reads = InlineReads(self.clock.now)  # small files hashed on the loop while reads are fast
        # auto: after a 404/405 of the chunk API the fallback is used for switch_seconds, then the
        # primary again (a daemon runs for weeks: one proxy hiccup must not last until a restart).
        self.switch = TransportSwitch(switch_seconds, self.clock.now)
        # The daemon's hooks (a plain run leaves both alone): transfer slots shared by several
        # engines, and a drain switch that starts no new file while those in flight finish.
        self.slots: asyncio.Semaphore | None = None
        self.confirm_batch = 500  # sent files confirmed together (one listing per folder)
        self.confirm_wait = 5.0  # seconds a batch waits for more files before it is confirmed
        # Digests computed but not yet stored (stored with the file's record when its send begins).
        self._fresh: dict[str, Digest] = {}
        self.draining = False

    def _key(self, item: SendItem) -> str:
        return self.namespace + item.remote

    # -- planning --------------------------------------------------------------------------
    async def _plan(
        self, items: list[SendItem], remote_prefix: str, confirmed: dict[str, int | None] | None = None
    ) -> tuple[list[SendItem], list[SendItem], list[_Sent]]:
        """(to send, unchanged since recorded done, merged by a crashed run): one journal read, stat only.

        `confirmed`, when given, receives the platform's time for each unchanged file when it was
        confirmed (by remote; None where it showed none).
        """
        # Only these files' records (index lookups): the cost is the batch's, not the journal's.
        keys = [self._key(item) for item in items]
        rows = await self.journal.plan_rows_of(keys)
        send: list[SendItem] = []
        unchanged: list[SendItem] = []
        merged: list[_Sent] = []
        for item, key in zip(items, keys, strict=True):
            row = rows.get((display(item.local.path), key))
            if row is None or row.stat_key != item.local.stat_key:
                send.append(item)
            elif row.state == "done":
                unchanged.append(item)
                if confirmed is not None:
                    confirmed[item.remote] = row.remote_mtime_ms
            elif row.state == "merged" and (destination := self._by_transport(row.transport)):
                record = await self.journal.get(display(item.local.path), self._key(item))
                if record is None:
                    send.append(item)
                else:
                    merged.append(_Sent(item, record, destination))
            else:
                send.append(item)
        return send, unchanged, merged

    async def pending(
        self, items: list[SendItem], remote_prefix: str, confirmed: dict[str, int | None] | None = None
    ) -> tuple[list[SendItem], list[SendItem]]:
        """Split items into (to send, unchanged since the journal recorded them done): stat only.

        `confirmed`, when given, receives what `drifted` needs of the unchanged ones.
        """
        send, unchanged, merged = await self._plan(items, remote_prefix, confirmed)
        return send + [m.item for m in merged], unchanged

    async def drifted(
        self, unchanged: list[SendItem], list_folder: ListFolder, confirmed: dict[str, int | None] | None = None,
        *, adopt: bool = True,
    ) -> list[tuple[SendItem, str]]:
        """The files among `unchanged` (recorded done, stat unchanged) that the remote no longer
        holds as sent, with the reason: one listing per remote folder, a few folders at a time,
        each listing dropped once compared. A folder that cannot be listed counts as missing
        (sending again is what is safe, and cheap where the platform still holds the content).

        `confirmed` (from `pending`) holds the platform's time for each file at its confirmation;
        a file confirmed before the journal kept one takes the time shown now as its baseline
        (unless not `adopt`: a dry run writes nothing).
        """
        confirmed = confirmed or {}
        limit = asyncio.Semaphore(LIST_CONCURRENCY)
        found: list[tuple[SendItem, str]] = []
        baselines: list[tuple[str, str, int]] = []

        async def one(space: Space | DatahubSpace, folder: str, group: list[tuple[str, SendItem]]) -> None:
            async with limit:
                try:
                    listing = {e.name: e for e in await list_folder(space, folder, {name for name, _ in group})}
                except AuthFailed:
                    raise
                except TransferError as exc:
                    found.extend((item, f"its remote folder could not be listed ({exc})") for _, item in group)
                    return
            for name, item in group:
                entry = listing.get(name)
                known = confirmed.get(item.remote)
                reason = drift(item.local.size, known, entry)
                if reason is not None:
                    found.append((item, reason))
                elif adopt and known is None and entry is not None and entry.mtime_ms:
                    baselines.append((display(item.local.path), self._key(item), entry.mtime_ms))

        await _all_or_none([one(space, folder, group) for (space, folder), group
                            in by_folder((item.target, item) for item in unchanged).items()])
        await self.journal.adopt_remote_times(baselines)
        return found

    async def requeue(self, items: list[SendItem]) -> None:
        """Take back the journal's 'done' of files the remote no longer holds as sent (`drifted`):
        whoever sends them next sends them, never skips them, even after a restart."""
        await self.journal.requeue([(display(item.local.path), self._key(item)) for item in items])

    async def forget(self, remote: str, *, folder: bool = False) -> None:
        """Drop the journal's records of `remote` (or of every file below the folder `remote`) once deleted there."""
        key = self.namespace + remote
        await self.journal.forget_under(key.rstrip("/") + "/") if folder else await self.journal.forget_remote(key)

    async def forget_many(self, remotes: list[str]) -> None:
        """Drop the journal's records of these remote files (deleted there), in one transaction."""
        await self.journal.forget_remotes([self.namespace + remote for remote in remotes])

    # -- running ---------------------------------------------------------------------------
    async def refuse(self, refused: list[Refused], *, job: str = "", clear_under: str | None = None,
                     unreadable: list[Unreadable] | None = None) -> None:
        """Record files refused for their names as failed (journal and events), and the walk's
        `unreadable` paths as failed (journal only: the walk reported them), so `status` lists them.

        With `clear_under` (a remote prefix that was walked whole), earlier failures of both
        kinds below it that are no longer among these (renamed, fixed, deleted) are dropped.
        """
        await self.journal.record_refused(
            [(display(r.local.path), self.namespace + r.remote, r.local.size, r.reason) for r in refused],
            job=job, clear_under=None if clear_under is None else self.namespace + clear_under,
        )
        if unreadable:
            await self.journal.record_refused(
                [(u.local_path, self.namespace + u.remote, 0, u.reason) for u in unreadable], job=job, kind=UNREADABLE)
        for r in refused:
            self.progress.emit(Event("failed", r.rel, r.shown or r.remote, message=r.reason))
            log.debug("refused %s: %s", r.rel, r.reason)  # the failed event reports it

    async def run(self, items: list[SendItem] | AsyncIterable[Batch], *, job: str = "", remote_prefix: str = "",
                  refused: list[Refused] | None = None, scope: RunScope | None = None,
                  verify: ListFolder | None = None, unreadable: list[Unreadable] | None = None) -> RunSummary:
        """Send every item that is not already done; confirm what was sent; return the summary.

        `items` is a list, or a stream of batches (a walk, folder by folder) consumed with
        back-pressure: each batch is planned (its journal records, its remote listings) when the
        files planned before it are nearly all hashed, so memory is bounded by a batch and
        PLANNED_AHEAD, not by the tree. The summary keeps counters (and the first failures).

        `refused`, when given with a list, are the files of a whole walk of `remote_prefix` whose
        names cannot go: journaled (replacing earlier refusals there) and counted as failed. A
        stream is a whole walk of `remote_prefix`: earlier refusals there are replaced by its
        batches' own. What the destinations learn during the run lives in `scope` (a new one by
        default): a daemon that keeps this engine for weeks starts every batch afresh. With
        `verify`, the files the journal records as done are checked against the remote's listings
        first, and those it no longer holds as sent are sent again (counted in `files_repaired`).
        """
        scope = scope or RunScope()
        started = self.clock.now()
        summary = RunSummary()
        if isinstance(items, list):
            walked = refused is not None
            batches: AsyncIterable[Batch] = _one(Batch(items, refused or [], unreadable or []))
        else:
            walked, batches = True, items
        if walked:
            await self.journal.record_refused([], job=job, clear_under=self.namespace + remote_prefix)

        async def walk(put: Put) -> None:
            async def plan(batch: Batch) -> None:
                if self.draining:
                    return
                todo = await self._plan_batch(batch, job, summary, scope, verify)
                if todo:
                    # One query finds the batch's cached digests (instead of one per file).
                    cache = await self.journal.cached_digests([display(item.local.path) for item in todo])
                    for item in todo:
                        await put(item, cache)

            await each_batch(batches, plan)

        feed: Feed = walk
        for round_ in range(self.change_retries + 1):
            changed = await self._round(feed, job, summary, scope, final=round_ == self.change_retries)
            if not changed:
                break
            again: list[SendItem] = []
            for item in changed:
                self.progress.emit(Event("info", item.local.rel, item.label,
                                         message="changed after it was sent; sending again once stable"))
                local = await self._guarded(item, summary, self._wait_stable(item.local), job)
                if local is not None:
                    again.append(SendItem(local, item.target))
            feed = _feed_list(self.journal, again)
        summary.seconds = self.clock.now() - started
        return summary

    async def _plan_batch(self, batch: Batch, job: str, summary: RunSummary, scope: RunScope,
                          verify: ListFolder | None) -> list[SendItem]:
        """Count a batch, record its refusals, and plan it: the files to send (repairs and files a
        crashed run merged but that the platform does not show included); the rest is skipped."""
        items = batch.items
        summary.files_total += len(items) + len(batch.refused)
        summary.bytes_total += sum(i.local.size for i in items)
        if batch.refused or batch.unreadable:
            await self.refuse(batch.refused, job=job, unreadable=batch.unreadable)
        for r in batch.refused:
            summary.fail(r.rel, r.reason)
        confirmed: dict[str, int | None] = {}
        todo, unchanged, merged = await self._plan(items, "", confirmed)
        if verify is not None and unchanged:
            repairs = await self.drifted(unchanged, verify, confirmed)
            if repairs:
                again = {id(item) for item, _ in repairs}
                unchanged = [item for item in unchanged if id(item) not in again]
                for item, reason in repairs:
                    self.progress.emit(Event("info", item.local.rel, item.label, message=f"{reason}: sending again"))
                    summary.repairing.add(item.remote)
                todo += [item for item, _ in repairs]
        if merged:
            # Files a crashed run merged but never confirmed need a listing, not another upload;
            # those the platform does not show are sent normally.
            todo += await self._confirm(merged, summary, scope, final=False, retry_unconfirmed=True)
        if unchanged:
            summary.files_skipped += len(unchanged)
            if each_skipped(self.progress):
                for item in unchanged:
                    self.progress.emit(Event("skipped", item.local.rel, item.label, size=item.local.size))
            else:  # sinks that only count: one event for the batch
                self.progress.emit(Event("skipped", size=sum(i.local.size for i in unchanged), files=len(unchanged)))
        for item in todo:
            self.progress.emit(Event("queued", item.local.rel, item.label, size=item.local.size))
        return todo

    async def _round(
        self, feed: Feed, job: str, summary: RunSummary, scope: RunScope, *, final: bool
    ) -> list[SendItem]:
        """One pass over what `feed` puts; returns the items that changed after they were sent.

        `feed` runs beside the hashing and sending and waits while PLANNED_AHEAD files are planned
        but not hashed. Sent files are confirmed while the others are still being sent, in batches
        of what has accumulated (at most `confirm_batch`): memory stays bounded by the batch, files
        show as done as they land, and a crash late in a long run leaves little to re-confirm.
        """
        planned: asyncio.Queue[tuple[SendItem, CachedDigests] | None] = asyncio.Queue(maxsize=PLANNED_AHEAD)
        ready: asyncio.Queue[tuple[SendItem, Digest] | None] = asyncio.Queue(maxsize=self.transfers)
        sent: asyncio.Queue[_Sent | None] = asyncio.Queue()
        changed: list[SendItem] = []

        preparing = self.hash_workers
        transferring = self.transfers

        async def put(item: SendItem, cache: CachedDigests) -> None:
            await planned.put((item, cache))

        async def planner() -> None:
            await feed(put)  # what it raises ends the round (_all_or_none): no end marks then
            for _ in range(self.hash_workers):  # every preparer hears that nothing more comes
                await planned.put(None)

        async def prepare() -> None:
            nonlocal preparing
            while (entry := await planned.get()) is not None:
                if self.draining:
                    continue  # taken, never prepared: the planner must not wait on a full queue
                item, cache = entry
                digest = await self._guarded(item, summary, self._digest(item.local, summary, cache, item.label), job)
                if digest is not None:
                    await ready.put((item, digest))
            preparing -= 1
            if preparing == 0:  # the last preparer tells every worker that nothing more comes
                for _ in range(self.transfers):
                    await ready.put(None)

        async def transfer() -> None:
            nonlocal transferring
            while (entry := await ready.get()) is not None:
                if self.draining:
                    continue
                item, digest = entry
                async with self.slots or contextlib.nullcontext():
                    result = await self._guarded(item, summary, self._send(item, digest, job, summary, scope), job)
                if result is not None:
                    sent.put_nowait(result)
            transferring -= 1
            if transferring == 0:
                sent.put_nowait(None)

        async def confirmer() -> None:
            # A batch closes when it is full, when sending ends, or `confirm_wait` seconds after
            # its first file: small batches would list the same big folders over and over.
            # A pending get is kept across batches, never cancelled, so no sent file is lost.
            getter: asyncio.Future[_Sent | None] | None = None
            finished = False
            try:
                while not finished:
                    first = await (getter or sent.get())
                    getter = None
                    if first is None:
                        return
                    batch = [first]
                    deadline = self.clock.now() + self.confirm_wait
                    while len(batch) < self.confirm_batch:
                        if not sent.empty():
                            entry = sent.get_nowait()  # what is there already: taken without a wait
                        else:
                            getter = asyncio.ensure_future(sent.get())
                            if not await wait_or_timeout(self.clock, getter, deadline - self.clock.now()):
                                break
                            entry, getter = getter.result(), None
                        if entry is None:
                            finished = True
                            break
                        batch.append(entry)
                    changed.extend(await self._confirm(batch, summary, scope, final=final))
            finally:
                if getter is not None:
                    getter.cancel()

        # What escapes a task (a journal that cannot be written, a refused login, a bug) ends the
        # round at once: the other tasks are cancelled, none is left waiting on a queue.
        await _all_or_none([planner(), *(prepare() for _ in range(self.hash_workers)),
                            *(transfer() for _ in range(self.transfers)), confirmer()])
        return changed

    def _by_transport(self, transport: str | None) -> Destination | None:
        for destination in (self.destination, self.fallback):
            if destination is not None and destination.transport == transport:
                return destination
        return None

    async def _guarded(self, item: SendItem, summary: RunSummary, work: Awaitable[T], job: str = "") -> T | None:
        """Run one step of one file; a failure is recorded against the file and never stops the run."""
        try:
            return await work
        except AuthFailed:
            raise  # no file can succeed without credentials: stop the run (exit 3), journal intact
        except (TransferError, OSError) as exc:
            message = _describe(exc)
            summary.fail(item.local.rel, message)
            summary.repairing.discard(item.remote)
            record = await self.journal.get(display(item.local.path), self._key(item))
            if record is not None:
                await self.journal.update(record.id, state="failed", last_error=message)
            else:  # failed before its record existed (unreadable, gone while hashed): recorded all the same
                await self.journal.record_refused([(display(item.local.path), self._key(item), item.local.size,
                                                    message)], job=job, kind=UNREADABLE)
            self.progress.emit(Event("failed", item.local.rel, item.label, message=message))
            log.debug("failed %s -> %s: %s", item.local.rel, item.label, message)  # reported once, by the event
            return None

    async def _digest(
        self, local: LocalFile, summary: RunSummary, cache: CachedDigests | None = None, remote: str = "",
    ) -> Digest:
        """The md5, from the journal's cache when stat and fingerprint are unchanged.

        A fresh digest is stored with the file's journal record when its send begins (one
        transaction instead of two).
        """
        if cache is None:
            cached = await self.journal.cached_digest(local)
        else:
            hit = cache.pop(display(local.path), None)
            cached = hit[1] if hit is not None and hit[0] == local.stat_key else None
        if cached is not None:
            if self.inline_reads.inline(local.size):
                now = self.inline_reads.timed(lambda: fingerprint(local.path, local.size))
            else:
                now = await asyncio.to_thread(fingerprint, local.path, local.size)
            if now == cached.fingerprint:
                return cached
        digest = await self._hash(local, remote)
        summary.files_hashed += 1
        self._fresh[str(local.path)] = digest
        return digest

    async def _hash(self, local: LocalFile, remote: str) -> Digest:
        """md5 in a thread; a large file says how far its hashing is (`hashing` events, bytes as deltas)."""
        if self.inline_reads.inline(local.size):
            return self.inline_reads.timed(lambda: hash_file(local))  # cheaper than a thread hop
        if local.size < HASH_EVENTS_FROM:
            return await asyncio.to_thread(hash_file, local, chunk_size=self._hashed_chunk_size)
        loop = asyncio.get_running_loop()
        emit = self.progress.emit
        pending = 0

        def on_read(n: int) -> None:  # in the hashing thread: events go to the loop, in order
            nonlocal pending
            pending += n
            if pending >= HASH_EVENT_STEP:
                loop.call_soon_threadsafe(emit, Event("hashing", local.rel, remote, bytes=pending, size=local.size))
                pending = 0

        emit(Event("hashing", local.rel, remote, size=local.size))  # bytes 0: hashing begins
        digest = await asyncio.to_thread(hash_file, local, on_read, chunk_size=self._hashed_chunk_size)
        if pending:  # queued after every event of the thread, so still in order
            emit(Event("hashing", local.rel, remote, bytes=pending, size=local.size))
        return digest

    async def _send(self, item: SendItem, digest: Digest, job: str, summary: RunSummary, scope: RunScope) -> _Sent:
        attempt = 0
        while True:
            try:
                return await self._send_once(item, digest, job, summary, scope)
            except LocalFileChanged as exc:
                # The content is not what was hashed: a change stat may not show (rewritten in
                # place, size and mtime restored), so the cached digest is dropped, never reused.
                self._fresh.pop(str(item.local.path), None)
                await self.journal.forget_digest(str(item.local.path))
                attempt += 1
                if attempt > self.change_retries:
                    raise
                self.progress.emit(Event("info", item.local.rel, item.label, message=f"{exc}; sending again once stable"))
                local = await self._wait_stable(item.local)
                item = SendItem(local, item.target)
                digest = await self._digest(local, summary, remote=item.label)

    async def _send_once(
        self, item: SendItem, digest: Digest, job: str, summary: RunSummary, scope: RunScope
    ) -> _Sent:
        switched = self.fallback is not None and self.switch.active()
        destination = self.fallback if switched and self.fallback else self.destination
        if self.fallback is not None and self.switch.just_closed():
            self.progress.emit(Event("info", message=f"trying {self.destination.transport} again"
                                     f" (after {self.switch.hold:g}s on {self.fallback.transport})"))
        try:
            return await self._send_via(destination, item, digest, job, summary, scope)
        except (EndpointUnavailable, Retryable, GaveUp) as exc:
            if self.fallback is None or destination is self.fallback:
                raise
            if isinstance(exc, EndpointUnavailable):
                if not self.switch.active():  # files in flight meet the same 404: say it once
                    self.switch.trip(str(exc))
                    self.progress.emit(Event("info", message=f"{exc}: switching to {self.fallback.transport}"
                                             f" for {self.switch.hold:g}s, then trying"
                                             f" {self.destination.transport} again"))
            else:
                self.progress.emit(
                    Event("info", item.local.rel, item.label, message=f"{exc}: retrying over {self.fallback.transport}")
                )
            return await self._send_via(self.fallback, item, digest, job, summary, scope)

    async def _send_via(
        self, destination: Destination, item: SendItem, digest: Digest, job: str, summary: RunSummary,
        scope: RunScope,
    ) -> _Sent:
        fresh = self._fresh.pop(str(item.local.path), None)
        record = await self.journal.begin(
            item.local, self._key(item), job=job, md5=digest.md5, chunk_size=self.chunk_size,
            transport=destination.transport, digest=fresh if fresh == digest else None,
        )
        resume = ResumeState(self.journal, record, digest.md5, self.chunk_size)
        self.progress.emit(Event("started", item.local.rel, item.label, size=item.local.size,
                                 transport=destination.transport))

        progress = ByteProgress(self.progress, item.local.rel, item.label, item.local.size,
                                step=min(self.chunk_size, PROGRESS_STEP), seconds=PROGRESS_SECONDS, now=self.clock.now)

        def on_bytes(n: int, crossed: bool) -> None:
            if crossed:
                summary.bytes_sent += n
            progress.add(n)

        subject = retry_subject.set(item.local.rel)  # a retry of this send names the file
        try:
            instant = await destination.send(item.local, digest, item.target, resume, on_bytes, scope=scope)
        finally:
            progress.flush()  # before the file's done or failed event
            retry_subject.reset(subject)
        summary.transports.add(destination.transport)
        recorded = asyncio.ensure_future(
            self.journal.update(record.id, state="merged", last_error=None, transport=destination.transport))
        # Its error is raised by the confirmer; a run that stopped before that has reported the
        # journal's failure already (every write after it fails the same way).
        recorded.add_done_callback(_seen)
        return _Sent(item, record, destination, resume, instant=bool(instant), recorded=recorded)

    async def _wait_stable(self, local: LocalFile) -> LocalFile:
        """Poll the file's stat until it stops changing for settle_seconds (bounded)."""
        clock = self.clock
        deadline = clock.now() + self.settle_timeout
        current = await asyncio.to_thread(stat_file, local.path, local.rel)
        since = clock.now()
        while clock.now() - since < self.settle_seconds:
            if clock.now() > deadline:
                raise LocalFileChanged(f"{local.rel} kept changing for {self.settle_timeout:.0f}s")
            await clock.sleep(min(0.2, self.settle_seconds / 4))
            now = await asyncio.to_thread(stat_file, local.path, local.rel)
            if not now.same_stat(current):
                current, since = now, clock.now()
        return current

    async def _confirm(
        self, sent: list[_Sent], summary: RunSummary, scope: RunScope, *, final: bool, retry_unconfirmed: bool = False
    ) -> list[SendItem]:
        """Confirm by listing that every sent file shows with its size; only then mark it done.

        Returns the files that changed locally after they were sent (unless this is the final round).
        """
        changed: list[SendItem] = []
        # A journal that cannot record 'merged' stops the run here, before any file is marked done.
        await asyncio.gather(*(e.recorded for e in sent if e.recorded is not None))
        by_destination: dict[int, list[_Sent]] = {}
        for entry in sent:
            by_destination.setdefault(id(entry.destination), []).append(entry)
        for group in by_destination.values():
            destination = group[0].destination
            try:
                results = await destination.confirm([
                    ConfirmItem(e.item.target, e.item.local.size, e.record.md5 or "",
                                e.resume or ResumeState(self.journal, e.record, e.record.md5 or "",
                                                        e.record.chunk_size or self.chunk_size))
                    for e in group
                ], scope=scope)
            except AuthFailed:
                raise  # not the files' fault: they stay unconfirmed (merged), the next run confirms them
            except TransferError as exc:
                results = None
                error = _describe(exc)
            # One thread hop stats the whole group; one transaction records the confirmed ones.
            same = await asyncio.to_thread(_all_still_same, [e.item.local for e in group])
            confirmed: list[_Sent] = []
            times: dict[int, int | None] = {}  # record id -> the platform's time for it, as confirmed
            for i, entry in enumerate(group):
                problem = (results[i].error if results is not None else f"could not confirm: {error}")
                if problem is None and not same[i]:
                    if not final:
                        await self.journal.update(entry.record.id, state="queued")
                        changed.append(entry.item)
                        continue
                    problem = "changed after it was sent; run again to send the new content"
                if problem is not None and retry_unconfirmed:
                    changed.append(entry.item)  # not shown after all: send it normally
                    continue
                if problem is None:
                    confirmed.append(entry)
                    times[entry.record.id] = results[i].mtime_ms if results is not None else None
                else:
                    await self.journal.update(entry.record.id, state="failed", last_error=problem)
                    summary.fail(entry.item.local.rel, problem)
                    summary.repairing.discard(entry.item.remote)
                    self.progress.emit(Event("failed", entry.item.local.rel, entry.item.label, message=problem))
            await self.journal.mark_done([(e.record.id, times[e.record.id]) for e in confirmed])
            for entry in confirmed:
                summary.files_sent += 1
                if entry.item.remote in summary.repairing:
                    summary.repairing.discard(entry.item.remote)
                    summary.files_repaired += 1
                self.progress.emit(Event("done", entry.item.local.rel, entry.item.label,
                                         size=entry.item.local.size, transport=destination.transport,
                                         instant=entry.instant))
        return changed


async def each_batch(batches: AsyncIterable[Batch], fn: Callable[[Batch], Awaitable[None]],
                     workers: int = PLANNERS) -> None:
    """`fn` on every batch of the stream, `workers` at a time (taken in order, each when a worker is
    free: at most `workers` batches are held). The first to raise ends them all, as it is."""
    source = aiter(batches)
    taking = asyncio.Lock()  # an async generator serves one __anext__ at a time

    async def worker() -> None:
        while True:
            async with taking:
                batch = await anext(source, None)
            if batch is None:
                return
            await fn(batch)

    await _all_or_none([worker() for _ in range(workers)])


async def _one(batch: Batch) -> AsyncIterator[Batch]:
    yield batch


def _feed_list(journal: Journal, items: list[SendItem]) -> Feed:
    """A round's feed of a list (files sent again after they changed), with their cached digests."""

    async def feed(put: Put) -> None:
        cache = await journal.cached_digests([display(item.local.path) for item in items]) if items else {}
        for item in items:
            await put(item, cache)

    return feed


async def _all_or_none(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines as tasks until all end; the first to raise cancels the others and its
    exception is raised as it is (not in an ExceptionGroup: callers catch what they expect)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        pending: set[asyncio.Future[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _seen(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: asyncio logs no "exception was never retrieved"


def _all_still_same(files: list[LocalFile]) -> list[bool]:
    return [_still_same(local) for local in files]


def _still_same(local: LocalFile) -> bool:
    try:
        st = os.stat(local.path)
    except OSError:
        return True  # deleted locally after sending: what was sent was complete
    return (st.st_size, st.st_mtime_ns) == (local.size, local.mtime_ns)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return f"unreadable: {exc.strerror}"
    if isinstance(exc, OSError) and not isinstance(exc, TransferError):
        return f"{exc.strerror or exc}"
    return str(exc)
