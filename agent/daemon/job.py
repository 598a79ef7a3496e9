"""One [[watch]] job: its watcher, aggregator, walks, deletes and engine, glued together."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.engine import Engine, SendItem
from transfer.errors import AuthFailed, Fatal, TransferError
from transfer.hashing import stat_file
from transfer.models import LocalFile

from ..config import DaemonConfig, WatchConfig
from ..deleteguard import source_refusal
from ..remotes import Remote
from ..runlog import recorded_run
from ..scanner import Excludes, ScanResult
from .aggregator import Aggregator
from .events import FileStat, Gone, Rescan, Send
from .logs import event as log_event
from .reconcile import DeleteQueue, PeriodicTimer, WalkResult, delete_pass, walk
from .scheduler import Scheduler
from .stats import JobStats
from .target import JobTarget
from .watcher import Inbox, OverflowAlarm, Watcher, WatchMode, choose_mode, count_dirs, inotify_limit


@dataclass(frozen=True)
class JobPlan:
    """A validated [[watch]] table."""

    name: str
    source: Path
    remote: Remote
    watch: WatchConfig


class Job:
    """Keeps one remote folder in step with one local folder."""

    def __init__(self, plan: JobPlan, *, target: JobTarget, engine: Engine, stats: JobStats, scheduler: Scheduler,
                 daemon: DaemonConfig, wake: Callable[[], None], alarm: OverflowAlarm,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.plan = plan
        self.name = plan.name
        self.root = plan.source
        self.target = target
        self.engine = engine
        self.stats = stats
        self.scheduler = scheduler
        self.daemon = daemon
        self.alarm = alarm
        self.clock, self.wall = clock, wall
        self.excludes = Excludes(plan.watch.exclude, part_tag=target.services.part_tag or None)
        self.settle = plan.watch.settle_seconds
        self.aggregator = Aggregator(self.root, self.excludes, self.settle)
        self.inbox = Inbox(wake)
        self.watcher: Watcher | None = None
        self.mode = WatchMode(False, 0.0)
        self.deletes = DeleteQueue(daemon.delete_delay)
        self.timer = PeriodicTimer(daemon.rescan_seconds, clock())
        self.remote_timer: PeriodicTimer | None = None
        self._remote_due = False
        self._repairing: set[str] = set()  # remotes queued again by a remote check, until sent
        self._remote_timer(daemon.remote_check_seconds)
        self._walks: set[str] = set()
        self._kick = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._watch_retry = 0.0
        self._worker_retry = 0.0
        self._links_told: set[str] = set()  # skipped symbolic links already logged
        self.dirs = 0
        self.device = 0  # the source's file system at start: deletes stop if it changes (unmounted)
        # Batches in flight; the staging folders are removed only when none is, and no batch
        # starts while they are being removed (it would stage into a folder about to go).
        self._batches = 0
        self._unstaging = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, in_use: int) -> int:
        """Watch first, then walk (so nothing changing during the walk is missed); returns the folders watched."""
        # The file system deletes are checked against: the one the journal recorded at the last
        # good pass (a daemon started while its disk is unmounted must not take the empty mount
        # point for the source), else the source's now, recorded once it passes the guards.
        self.device = (await asyncio.to_thread(os.stat, self.root)).st_dev
        recorded = await self.engine.journal.source_device(await self._source_key())
        if recorded is not None:
            self.device = recorded
        elif (await asyncio.to_thread(source_refusal, self.root, None))[0] is None:
            await self.engine.journal.record_source_device(await self._source_key(), self.device)
        self.dirs = await asyncio.to_thread(count_dirs, self.root, self.excludes)
        limit = await asyncio.to_thread(inotify_limit)
        self.mode = choose_mode(self.root, self.dirs, limit, in_use, force_poll=self.plan.watch.poll,
                                settle=self.settle)
        if self.mode.warning:
            log_event(logging.WARNING, "inotify_limit", self.mode.warning, job=self.name, path=str(self.root))
        await self._start_watcher()
        self.alarm.register(self.inbox)
        self._worker = asyncio.create_task(self._work(), name=f"hubsync-job-{self.name}")
        self.request_walk("")
        return self.dirs

    async def _source_key(self) -> str:
        real = await asyncio.to_thread(os.path.realpath, self.root)
        return f"{self.engine.namespace}{self.target.prefix()} {real}"

    async def _start_watcher(self) -> None:
        watcher = Watcher(self.root, self.inbox, self.mode)
        try:
            await asyncio.to_thread(watcher.start)
        except OSError as exc:
            if self.mode.polling:
                raise
            # Typically ENOSPC: the watch limit, used up by other programs meanwhile.
            self.mode = WatchMode(True, max(10.0, self.settle), f"cannot watch with inotify ({exc}); polling instead")
            log_event(logging.WARNING, "inotify_limit", self.mode.warning, job=self.name, path=str(self.root))
            watcher = Watcher(self.root, self.inbox, self.mode)
            await asyncio.to_thread(watcher.start)
        self.watcher = watcher

    async def stop(self) -> None:
        """Stop watching and walking (sends in flight belong to the scheduler)."""
        self._watch_retry = float("inf")
        self.alarm.unregister(self.inbox)
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
            self.watcher = None
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def apply(self, daemon: DaemonConfig) -> None:
        """Take new [daemon] settings (SIGHUP)."""
        self.daemon = daemon
        self.deletes.delay = daemon.delete_delay
        if daemon.rescan_seconds != self.timer.period:
            self.timer = PeriodicTimer(daemon.rescan_seconds, self.clock())
        if daemon.remote_check_seconds != (self.remote_timer.period if self.remote_timer else 0):
            self._remote_timer(daemon.remote_check_seconds)

    def _remote_timer(self, period: float) -> None:
        """The remote check's timer (none for 0); the first check is one period after the start:
        the daemon starts stat only."""
        self.remote_timer = PeriodicTimer(period, self.clock()) if period > 0 else None
        self._remote_next()

    def _remote_next(self) -> None:
        timer = self.remote_timer
        # Wall time, whole seconds: the status snapshot stays unchanged between checks.
        self.stats.remote_check_next = None if timer is None else round(self.wall() + timer.next - self.clock())

    # -- the loop's work ---------------------------------------------------------------------
    async def tick(self) -> None:
        """Events in, settled files out; deletes and full rescans when due; a dead watcher restarted."""
        now = self.clock()
        for event in self.inbox.drain():
            if event.kind == "overflow":
                log_event(logging.WARNING, "watch_overflow", "events were lost: rescanning the tree", job=self.name)
            self.aggregator.add(event, now)
        due = self.aggregator.due(now)
        locals_ = await asyncio.to_thread(_stat_many, self.root, due, self.plan.watch.follow_symlinks) if due else {}
        stats = {rel: FileStat(f.size, f.mtime_ns) if f else None for rel, f in locals_.items()}
        settled: list[LocalFile] = []
        for action in self.aggregator.poll(self.clock(), self.wall(), stats):
            if isinstance(action, Send):
                local = locals_.get(action.rel)
                if local is not None:
                    settled.append(local)
            elif isinstance(action, Rescan):
                self.request_walk(action.rel)
            elif isinstance(action, Gone) and self.plan.watch.delete:
                self.deletes.add(action.rel, action.is_dir, now)
        if settled:
            await self._submit(settled)
        if self.timer.due(now):
            self.request_walk("")
        if self.remote_timer is not None and self.remote_timer.due(now):
            self._remote_due = True
            self._remote_next()
        if self._remote_due and not self.scheduler.paused:
            self._kick.set()
        next_delete = self.deletes.next_due() if self.plan.watch.delete else None
        if next_delete is not None and next_delete <= now:
            self._kick.set()
        if (self.watcher is None or not self.watcher.healthy()) and now >= self._watch_retry:
            await self._restart_watcher(now)
        worker = self._worker
        if worker is not None and worker.done() and now >= self._worker_retry:
            # The walks and deletes stopped on a bug: start them again (at most every 30 s) and
            # raise it here, where the daemon logs it with its traceback; never a silent job.
            self._worker_retry = now + 30.0
            self._worker = asyncio.create_task(self._work(), name=f"hubsync-job-{self.name}")
            self.request_walk("")
            failure = None if worker.cancelled() else worker.exception()
            if failure is not None:
                raise failure

    async def _restart_watcher(self, now: float) -> None:
        """A dead observer (a watch limit hit later, the folder gone...): start again and rescan; retry every 30 s."""
        log_event(logging.ERROR, "watch_failed", "the watcher stopped: restarting it and rescanning", job=self.name)
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
            self.watcher = None
        try:
            await self._start_watcher()
        except OSError as exc:
            self._watch_retry = now + 30.0
            log_event(logging.ERROR, "watch_failed", job=self.name, path=str(self.root), error=str(exc))
            return
        self.request_walk("")

    def next_deadline(self) -> float | None:
        remote = self.remote_timer.next if self.remote_timer is not None else None
        times = [t for t in (self.aggregator.next_deadline(), self.timer.next, remote) if t is not None]
        if self.plan.watch.delete and (d := self.deletes.next_due()) is not None:
            times.append(d)
        return min(times) if times else None

    def request_walk(self, rel: str) -> None:
        # Bounded: collapse to the whole tree when many folders wait.
        self._walks = {""} if rel == "" or len(self._walks) > 256 else self._walks | {rel}
        self._kick.set()

    async def _submit(self, files: list[LocalFile]) -> None:
        items, refused = self.target.items(files)
        for local in files:
            self.deletes.discard(local.rel)
        if refused:
            await self.engine.refuse(refused, job=self.name)
        for item in items:
            self.scheduler.submit(self.name, item)

    async def _work(self) -> None:
        """Walks and delete passes, one at a time, off the main loop."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._walks:
                rel = min(self._walks, key=len)
                self._walks = {w for w in self._walks if not (w == rel or rel == "" or w.startswith(rel + "/"))}
                await self._walk(rel)
            if self._remote_due and not self.scheduler.paused:  # paused: it waits for the login
                self._remote_due = False
                await self._remote_check()
            if self.plan.watch.delete and not self.scheduler.paused:  # paused: no login for deletes either
                due = self.deletes.due(self.clock())
                if due:
                    await self._delete(due)

    async def _remote_check(self) -> None:
        """The remote pass: a whole walk (which queues what changed here), then every file it
        found unchanged checked against the remote's listings as `sync` does; what the platform
        no longer holds as sent is queued again. One log line says how it went."""
        started = self.clock()
        result = await self._walk("", keep_unchanged=True)
        if result is None:
            return
        try:
            repairs = await self.engine.drifted(result.kept, self.target.list_folder(), result.confirmed)
            await self.engine.requeue([item for item, _ in repairs])
        except AuthFailed as exc:
            self._remote_due = True  # once logged in again
            self.scheduler.auth_refused(exc)
            return
        except TransferError as exc:
            log_event(logging.WARNING, "remote_check_failed", job=self.name, error=str(exc))
            self.stats.error(".", f"remote check failed: {exc}")
            return
        for item, _ in repairs:
            self.deletes.discard(item.local.rel)
            self._repairing.add(item.remote)
            self.scheduler.submit(self.name, item)
        seconds = round(self.clock() - started, 3)
        self.stats.remote_check = {"at": round(self.wall(), 3), "checked": len(result.kept),
                                   "repaired": len(repairs), "seconds": seconds}
        log_event(logging.INFO, "remote_check", job=self.name, checked=len(result.kept), repaired=len(repairs),
                  seconds=seconds, examples=[{"path": item.local.rel, "reason": reason}
                                             for item, reason in repairs[:5]] or None)

    async def _walk(self, rel: str, keep_unchanged: bool = False) -> WalkResult | None:
        started = self.clock()
        try:
            result, scanned = await walk(self.root, rel, self.excludes, self.target, self.engine, self.settle,
                                         self.wall, self.name, self.plan.watch.follow_symlinks, keep_unchanged)
        except (TransferError, OSError) as exc:
            log_event(logging.ERROR, "walk_failed", job=self.name, path=rel or ".", error=str(exc))
            self.stats.error(rel or ".", f"walk failed: {exc}")
            return None
        now = self.clock()
        for item in result.todo:
            self.deletes.discard(item.local.rel)
            self.scheduler.submit(self.name, item)
        for unsettled in result.unsettled:
            self.aggregator.touch(unsettled, now)
        for path, problem in result.problems:
            self.stats.error(path, problem)
        for link in scanned.links:
            if link not in self._links_told and len(self._links_told) < 10_000:  # each link once
                self._links_told.add(link)
                log_event(logging.INFO, "link_skipped", "symbolic link to a place outside the source: not"
                          " followed (follow_symlinks = true follows it)", job=self.name, path=link)
        self.stats.last_scan = {"folder": rel or ".", "files": result.files, "queued": len(result.todo),
                                "unchanged": result.unchanged, "settling": len(result.unsettled),
                                "problems": len(result.problems), "seconds": round(now - started, 3)}
        log_event(logging.INFO, "walk", job=self.name, path=rel or ".", **{
            k: v for k, v in self.stats.last_scan.items() if k != "folder"})
        if rel == "" and self.plan.watch.delete and not result.problems and not self.scheduler.paused:
            await self._find_remote_extras(scanned)
        return result

    async def _find_remote_extras(self, scanned: ScanResult) -> None:
        local = {f.rel for f in scanned.files}
        try:
            remote = await self.target.files(self.excludes)
        except Fatal:
            return  # the remote folder does not exist (yet): nothing there to delete
        except AuthFailed as exc:
            self.scheduler.auth_refused(exc)
            return
        except TransferError as exc:
            log_event(logging.WARNING, "list_failed", job=self.name, error=str(exc))
            return
        now = self.clock()
        for rel in remote:
            if rel not in local and not scanned.under_link(rel):  # a skipped link keeps its remote copy
                self.deletes.add(rel, False, now)

    async def _delete(self, due: list[tuple[str, bool]]) -> None:
        try:
            outcome = await delete_pass(due, root=self.root, device=self.device, target=self.target,
                                        engine=self.engine, excludes=self.excludes,
                                        max_delete=self.daemon.max_delete, job=self.name)
        except TransferError as exc:
            if isinstance(exc, AuthFailed):
                self.scheduler.auth_refused(exc)
            else:
                log_event(logging.WARNING, "delete_failed", job=self.name, error=str(exc))
                self.stats.error(".", f"delete failed: {exc}")
            now = self.clock()
            for rel, is_dir in due:
                self.deletes.add(rel, is_dir, now)  # try again after the delay
            return
        self.stats.deleted += len(outcome.deleted)
        if outcome.refused:
            self.stats.error(".", outcome.refused)
        else:
            await self.engine.journal.record_source_device(await self._source_key(), self.device)

    # -- sending (called by the scheduler) -----------------------------------------------------
    async def send(self, items: list[SendItem]) -> dict[str, str]:
        """Send one batch through the engine; returns {rel: error} for the files that failed."""
        fresh = await asyncio.to_thread(_restat, items)
        if not fresh:
            return {}
        prefix = os.path.commonprefix([item.remote for item in fresh])
        async with self._unstaging:
            self._batches += 1
        try:
            # Each batch is one run of the job's remote in the journal (status: its last run).
            async with recorded_run(self.engine.journal, self.target.target, self.engine.namespace, self.name) as run:
                summary = await self.engine.run(fresh, job=self.name, remote_prefix=prefix)
                run.ended(summary)
        finally:
            self._batches -= 1
            for item in fresh:  # none of them is in flight any more, whatever the events said
                self.stats.live.pop(item.label, None)
        await self._finish()
        self.stats.files_hashed += summary.files_hashed
        self.stats.bytes_sent += summary.bytes_sent
        failures = dict(summary.failures)
        if self._repairing:
            for item in fresh:
                if item.remote in self._repairing and item.local.rel not in failures:
                    self._repairing.discard(item.remote)
                    self.stats.files_repaired += 1
        return failures

    async def _finish(self) -> None:
        """The last batch in flight ended: remove the staging folders it left empty."""
        async with self._unstaging:
            if self._batches:
                return
            kept = await self.target.finish()
        if kept is not None:
            log_event(logging.WARNING, "staging_kept", kept, job=self.name)

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        counts = self.scheduler.counts(self.name)
        now = self.clock()
        s = self.stats
        return {
            "job": self.name, "source": str(self.root), "remote": str(self.target),
            "watch": "polling" if self.mode.polling else "inotify", "folders": self.dirs,
            "queued": counts.queued, "active": counts.active, "done": counts.done, "failed": counts.failing,
            "settling": self.aggregator.pending, "deletes_pending": len(self.deletes) if self.plan.watch.delete else 0,
            "files_sent": s.files_sent, "bytes_sent": s.bytes_sent, "files_unchanged": s.files_unchanged,
            "files_hashed": s.files_hashed, "files_deleted": s.deleted, "retries": counts.retries,
            "files_repaired": s.files_repaired, "remote_check": s.remote_check or None,
            "remote_check_next": s.remote_check_next,
            "transfers": [{"path": live.path, "remote": live.remote, "bytes": live.bytes, "size": live.size,
                           "rate": round(live.rate(now))} for live in list(s.live.values())[:20]],
            "errors": [{"path": e.rel, "error": e.last_error, "attempts": e.attempts}
                       for e in self.scheduler.failing(self.name)] + list(s.errors),
            "last_scan": s.last_scan,
            "switched": self._switched(),
        }

    def _switched(self) -> dict[str, Any] | None:
        """While the chunk API is unavailable: since when, why, and until when SFTP is used."""
        fallback = self.engine.fallback
        switch = self.engine.switch.snapshot() if fallback is not None else None
        if switch is None or fallback is None:
            return None
        return {**switch, "primary": self.engine.destination.transport, "fallback": fallback.transport}


def _stat_many(root: Path, rels: list[str], follow_symlinks: bool) -> dict[str, LocalFile | None]:
    """Regular files as they are now (None: gone, no longer a regular file, or reached through a
    symbolic link that leads outside the source while links are not followed)."""
    out: dict[str, LocalFile | None] = {}
    inside = os.path.realpath(root).rstrip("/") + "/"
    for rel in rels:
        if not follow_symlinks and not os.path.realpath(root / rel).startswith(inside):
            out[rel] = None
            continue
        try:
            local = stat_file(root / rel, rel)
        except OSError:
            out[rel] = None
            continue
        out[rel] = local if os.path.isfile(local.path) else None
    return out


def _restat(items: list[SendItem]) -> list[SendItem]:
    """The items with their current stat; files gone since they were queued are dropped."""
    fresh = []
    for item in items:
        try:
            fresh.append(SendItem(stat_file(item.local.path, item.local.rel), item.target))
        except OSError:
            continue
    return fresh
