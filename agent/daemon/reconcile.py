"""Walks compared with the journal (stat only), the periodic full rescan and remote check, and remote deletes.

A walk never hashes: the engine's planning says by stat (size, mtime_ns, inode, device) what
is unchanged since it was sent. Deletes are the dangerous part, so they are slow on purpose:
a pass runs once no path has gone for `delete_delay`, deletes only what is still absent
locally, and a pass that would delete more than `max_delete` files deletes none and says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transfer.engine import Engine, SendItem
from transfer.remotepath import display

from ..deleteguard import source_refusal
from ..scanner import Excludes, ScanResult, scan
from .logs import event as log_event
from .target import JobTarget

DELETE_BATCH = 100


class _Below(Excludes):
    """The job's excludes, for a walk that starts in the subfolder `prefix`."""

    def __init__(self, inner: Excludes, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix
        self.patterns, self.spec, self.part_tag = inner.patterns, inner.spec, inner.part_tag

    def excluded(self, rel: str, is_dir: bool = False) -> bool:
        return self.inner.excluded(f"{self.prefix}/{rel}", is_dir)


def scan_under(root: Path, rel: str, excludes: Excludes, follow_symlinks: bool = False) -> ScanResult:
    """`scan` of root/rel with paths (and excludes) relative to `root`. Blocking: run it in a thread."""
    if not rel:
        return scan(root, excludes, follow_symlinks=follow_symlinks)
    folder = root / rel
    if not folder.is_dir():
        return ScanResult()  # gone (or replaced by a file, which reports its own events)
    result = scan(folder, _Below(excludes, rel), follow_symlinks=follow_symlinks, root=root)
    result.links = [f"{rel}/{link}" for link in result.links]
    result.files = [f._replace(rel=f"{rel}/{f.rel}") for f in result.files]
    shown = display(rel)
    result.problems = [(shown if p in (display(str(folder)), ".") else f"{shown}/{p}", why) for p, why in result.problems]
    result.directories = [f"{rel}/{d}" for d in result.directories]
    return result


@dataclass
class WalkResult:
    """What one walk found: files to queue, files still being written, and the rest."""

    todo: list[SendItem] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    unchanged: int = 0
    files: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    # With keep_unchanged: the unchanged files themselves, and the platform's time for each when
    # it was confirmed (what Engine.drifted compares a listing with).
    kept: list[SendItem] = field(default_factory=list)
    confirmed: dict[str, int | None] = field(default_factory=dict)


async def walk(root: Path, rel: str, excludes: Excludes, target: JobTarget, engine: Engine, settle: float,
               wall: Callable[[], float], job: str = "", follow_symlinks: bool = False,
               keep_unchanged: bool = False) -> tuple[WalkResult, ScanResult]:
    """Scan root/rel and split it: changed since the journal (queue), unchanged (skip), too fresh
    (settle first); files whose names cannot go are refused (journaled as failed) at once."""
    scanned = await asyncio.to_thread(scan_under, root, rel, excludes, follow_symlinks)
    now = wall()
    mapped, refused = target.items(scanned.files)
    settled = []
    result = WalkResult(files=len(scanned.files), problems=list(scanned.problems))
    for item in mapped:
        if now - item.local.mtime_ns / 1e9 >= settle:
            settled.append(item)
        else:
            result.unsettled.append(item.local.rel)
    prefix = target.prefix() + (rel + "/" if rel else "")
    await engine.refuse(refused, job=job, clear_under=prefix, unreadable=target.unreadable(scanned.problems, root))
    todo, unchanged = await engine.pending(settled, prefix, result.confirmed if keep_unchanged else None)
    result.todo, result.unchanged = todo, len(unchanged)
    if keep_unchanged:
        result.kept = unchanged
    return result, scanned


JITTER = 0.25


def jittered(period: float, rng: random.Random) -> float:
    """`period` randomised by +-JITTER (25 %): daemons started together do not list the platform together."""
    return period * rng.uniform(1 - JITTER, 1 + JITTER)


class PeriodicTimer:
    """Due every `period` seconds of the job's clock, each interval randomised (`jittered`).

    The safety-net full rescan and the remote check run on one each.
    """

    def __init__(self, period: float, now: float, rng: random.Random | None = None) -> None:
        self.period = period
        self._rng = rng or random.Random()
        self.next = now + self._interval()

    def _interval(self) -> float:
        return jittered(self.period, self._rng)

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next = now + self._interval()
        return True


class DeleteQueue:
    """Paths gone locally, taken as one batch once no path went for `delay` seconds.

    Waiting for the deletions to stop (rather than timing each path) keeps a slow `rm -rf` in
    one pass, so `max_delete` sees all of it; a steady trickle still passes after 10 delays.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._gone: dict[str, bool] = {}
        self._first = self._last = 0.0

    def add(self, rel: str, is_dir: bool, now: float) -> None:
        if not self._gone:
            self._first = now
        self._gone[rel] = is_dir
        self._last = now

    def discard(self, rel: str) -> None:
        self._gone.pop(rel, None)

    def due(self, now: float) -> list[tuple[str, bool]]:
        """Take every path, if the deletions have stopped for `delay` seconds (else nothing)."""
        deadline = self.next_due()
        if deadline is None or now < deadline:
            return []
        batch = list(self._gone.items())
        self._gone.clear()
        return batch

    def next_due(self) -> float | None:
        if not self._gone:
            return None
        return min(self._last + self.delay, self._first + 10 * self.delay)

    def __len__(self) -> int:
        return len(self._gone)


@dataclass
class DeleteOutcome:
    deleted: list[str] = field(default_factory=list)
    refused: str = ""  # why the whole pass was refused (over max_delete)


async def delete_pass(candidates: list[tuple[str, bool]], *, root: Path, device: int, target: JobTarget,
                      engine: Engine, excludes: Excludes, max_delete: int, job: str) -> DeleteOutcome:
    """Delete remotely what is still gone locally; refuse the whole pass above `max_delete` files.

    Nothing is deleted while the source itself is missing, empty, an /etc/fstab mount point
    that is not mounted, or on another file system than `device` (the one at the last good
    pass): an unmounted disk looks like a folder whose files were all deleted. Checked at every
    pass (agent.deleteguard).
    """

    def still_gone() -> tuple[str | None, list[tuple[str, bool]]]:
        reason, _ = source_refusal(root, device)
        if reason is not None:
            return reason, []
        return None, [(rel, d) for rel, d in candidates
                      if not os.path.lexists(root / rel) and not excludes.excluded(rel, d)]

    outcome = DeleteOutcome()
    reason, found = await asyncio.to_thread(still_gone)
    if reason is not None:
        outcome.refused = f"delete pass refused: {reason}; nothing was deleted"
        log_event(logging.ERROR, "delete_refused", outcome.refused, job=job, files=len(candidates))
        return outcome
    gone = dict(found)
    # A folder that goes takes what it holds: drop paths below another candidate.
    gone = {rel: d for rel, d in gone.items() if not _has_ancestor(rel, gone)}
    present = await target.present(gone)
    count = 0
    for rel, entry in present.items():
        count += len(await target.files(excludes, rel)) if entry.is_dir else 1
    if count > max_delete:
        outcome.refused = (
            f"delete pass refused: {count} remote files would go, more than [daemon] max_delete = {max_delete};"
            f" nothing was deleted. If this is intended, raise max_delete (then SIGHUP) or delete them by hand"
        )
        log_event(logging.ERROR, "delete_refused", outcome.refused, job=job, files=count)
        return outcome
    rels = sorted(present)
    for start in range(0, len(rels), DELETE_BATCH):
        batch = rels[start:start + DELETE_BATCH]
        await target.delete(batch)
        for rel in batch:
            # Forget what the journal held, so the same file coming back is sent again.
            await engine.forget(target.remote_of(rel), folder=present[rel].is_dir)
            outcome.deleted.append(rel)
            log_event(logging.INFO, "deleted", job=job, path=rel, remote=target.shown(rel))
    return outcome


def _has_ancestor(rel: str, paths: dict[str, bool]) -> bool:
    parent = posixpath.dirname(rel)
    while parent:
        if paths.get(parent):
            return True
        parent = posixpath.dirname(parent)
    return False
