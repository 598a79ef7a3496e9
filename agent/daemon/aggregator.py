"""Coalesce watcher events into work: settled files, folder rescans and gone paths.

Pure: no I/O and no clock of its own. The caller passes `now` (monotonic seconds), stats the
files `due()` names off the event loop, and hands the stats to `poll()`. Memory is bounded by
the number of distinct paths pending (`max_pending`), never by the number of events.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..scanner import Excludes
from .events import Action, FileStat, FsEvent, Gone, Rescan, Send


@dataclass
class _Pending:
    first: float  # first event (for the hard cap on folders)
    last: float  # latest event or change seen by stat
    seen: FileStat | None = None  # the stat at the previous check


class Aggregator:
    """Per job: a file is sent once quiet for `settle` seconds with an unchanged size and mtime.

    More than `burst` pending files in one folder collapse into a rescan of that folder, more
    than `max_pending` in all into a rescan of the tree; a rescan waits for its folder to be
    quiet, but never longer than `max_delay` (the scan itself re-checks that files settled).
    """

    def __init__(
        self,
        root: Path,
        excludes: Excludes,
        settle: float,
        *,
        burst: int = 128,
        max_pending: int = 10_000,
        max_delay: float | None = None,
    ) -> None:
        self.root = str(root).rstrip("/") or "/"
        self.excludes = excludes
        self.settle = settle
        self.burst = burst
        self.max_pending = max_pending
        self.max_delay = max_delay if max_delay is not None else max(60.0, 10 * settle)
        self._files: dict[str, _Pending] = {}
        self._by_folder: dict[str, set[str]] = {}
        self._rescans: dict[str, _Pending] = {}  # collapsed bursts: they absorb the events below them
        self._new_dirs: dict[str, float] = {}  # folders created or moved in: one walk each, settle after
        self._gone: dict[str, bool] = {}

    # -- input -----------------------------------------------------------------------------
    def add(self, event: FsEvent, now: float) -> None:
        """Take one event; nothing is emitted before `poll`."""
        if event.kind == "overflow":
            self._rescan("", now)
            return
        rel = self._rel(event.path)
        if event.kind == "moved":
            dest = self._rel(event.dest)
            if rel is not None and rel != "" and not self.excludes.excluded(rel, event.is_dir):
                self._vanished(rel, event.is_dir)
            if dest is not None:
                self._changed(dest, event.is_dir, now)
            return
        if rel is None:
            return
        if rel == "":
            if event.kind == "deleted":
                self._rescan("", now)  # the root went away: the scan reports it
            return
        if event.kind == "deleted":
            if not self.excludes.excluded(rel, event.is_dir):
                self._vanished(rel, event.is_dir)
            return
        self._changed(rel, event.is_dir, now)

    def request_rescan(self, rel: str, now: float) -> None:
        """Rescan a folder once it is quiet (a watcher restart, a scanned file not yet settled...)."""
        self._rescan(rel, now)

    def touch(self, rel: str, now: float) -> None:
        """Treat `rel` as just changed (a scan found it still being written)."""
        self._changed(rel, False, now)

    # -- output ----------------------------------------------------------------------------
    def due(self, now: float) -> list[str]:
        """Pending files quiet for `settle` seconds: stat them and pass the stats to `poll`."""
        return [rel for rel, p in self._files.items() if now - p.last >= self.settle]

    def poll(self, now: float, wall: float, stats: dict[str, FileStat | None]) -> list[Action]:
        """Decide on the stated files; emit quiet rescans and gone paths.

        `wall` is time.time(): a file whose mtime is `settle` seconds old has settled at once;
        one with a fresh (or future) mtime must show the same stat twice, `settle` apart.
        """
        actions: list[Action] = []
        for rel, st in stats.items():
            pending = self._files.get(rel)
            if pending is None or now - pending.last < self.settle:
                continue  # handled already, or changed again since due()
            if st is None:
                self._drop(rel)  # vanished: its own event (deleted or moved) says so
                continue
            if st == pending.seen or wall - st.mtime_ns / 1e9 >= self.settle:
                self._drop(rel)
                actions.append(Send(rel))
            else:
                pending.seen, pending.last = st, now
        for rel, pending in list(self._rescans.items()):
            if now - pending.last >= self.settle or now - pending.first >= self.max_delay:
                del self._rescans[rel]
                actions.append(Rescan(rel))
        for rel, since in list(self._new_dirs.items()):
            if now - since >= self.settle:
                del self._new_dirs[rel]
                actions.append(Rescan(rel))
        actions.extend(Gone(rel, is_dir) for rel, is_dir in self._gone.items())
        self._gone.clear()
        return actions

    def next_deadline(self) -> float | None:
        """When `due`/`poll` may next have something to do (None: nothing pending)."""
        times = [p.last + self.settle for p in self._files.values()]
        times += [min(p.last + self.settle, p.first + self.max_delay) for p in self._rescans.values()]
        times += [since + self.settle for since in self._new_dirs.values()]
        if self._gone:
            return 0.0
        return min(times) if times else None

    @property
    def pending(self) -> int:
        return len(self._files) + len(self._rescans) + len(self._new_dirs)

    # -- internals -------------------------------------------------------------------------
    def _rel(self, path: str) -> str | None:
        if not path:
            return None
        if path == self.root:
            return ""
        prefix = self.root if self.root.endswith("/") else self.root + "/"
        if not path.startswith(prefix):
            return None
        return path[len(prefix):]

    def _covering_rescan(self, rel: str) -> str | None:
        """The pending rescan that already covers `rel` (itself or an ancestor), if any."""
        folder = rel
        while True:
            if folder in self._rescans:
                return folder
            if folder == "":
                return None
            folder = posixpath.dirname(folder)

    def _changed(self, rel: str, is_dir: bool, now: float) -> None:
        if self.excludes.excluded(rel, is_dir):
            return
        self._gone.pop(rel, None)
        if is_dir:
            # Created or moved in: files may predate its watch, so walk it once. Events below it
            # are still followed one by one (a busy new folder is not held back until it is quiet).
            if self._covering_rescan(rel) is None:
                self._new_dirs.setdefault(rel, now)
            return
        covering = self._covering_rescan(rel)
        if covering is not None:
            self._rescans[covering].last = now
            return
        pending = self._files.get(rel)
        if pending is not None:
            pending.last = now
            return
        self._files[rel] = _Pending(now, now)
        folder = posixpath.dirname(rel)
        siblings = self._by_folder.setdefault(folder, set())
        siblings.add(rel)
        if len(siblings) > self.burst:
            self._rescan(folder, now)
        elif len(self._files) > self.max_pending:
            self._rescan("", now)

    def _rescan(self, rel: str, now: float) -> None:
        covering = self._covering_rescan(rel)
        if covering is not None:
            self._rescans[covering].last = now
            return
        first = now
        below = rel + "/" if rel else ""
        for other in [r for r in self._rescans if r.startswith(below)]:
            first = min(first, self._rescans.pop(other).first)
        for other in [d for d in self._new_dirs if d.startswith(below)]:
            del self._new_dirs[other]
        for file in [f for f in self._files if f.startswith(below)]:
            first = min(first, self._files[file].first)
            self._drop(file)
        self._rescans[rel] = _Pending(first, now)

    def _vanished(self, rel: str, is_dir: bool) -> None:
        if is_dir:
            below = rel + "/"
            for file in [f for f in self._files if f.startswith(below)]:
                self._drop(file)
            for folder in [d for d in self._new_dirs if d == rel or d.startswith(below)]:
                del self._new_dirs[folder]
        else:
            self._drop(rel)
        self._gone[rel] = is_dir

    def _drop(self, rel: str) -> None:
        if self._files.pop(rel, None) is None:
            return
        folder = posixpath.dirname(rel)
        siblings = self._by_folder.get(folder)
        if siblings is not None:
            siblings.discard(rel)
            if not siblings:
                del self._by_folder[folder]
