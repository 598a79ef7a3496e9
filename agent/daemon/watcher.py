"""watchdog -> FsEvent: translate OS events only, and hand them to the event loop thread-safely.

The observer thread puts events into a bounded `Inbox`; a full inbox or a kernel queue
overflow becomes an `overflow` event (a rescan of the tree), never a silent loss.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ..scanner import Excludes
from .events import FsEvent

INOTIFY_LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_watches")
_WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify_c"


class Inbox:
    """A bounded, thread-safe event buffer: the observer thread puts, the event loop drains."""

    def __init__(self, wake: Callable[[], None], capacity: int = 50_000) -> None:
        self._wake = wake
        self._capacity = capacity
        self._lock = threading.Lock()
        self._events: list[FsEvent] = []
        self._overflowed = False

    def put(self, event: FsEvent) -> None:
        with self._lock:
            first = not self._events and not self._overflowed
            if event.kind == "overflow" or len(self._events) >= self._capacity:
                self._overflowed = True
                self._events.clear()  # a rescan of the tree covers them all
            else:
                self._events.append(event)
        if first:
            self._wake()

    def drain(self) -> list[FsEvent]:
        """Everything buffered so far; an overflow comes out as one `overflow` event."""
        with self._lock:
            events, self._events = self._events, []
            if self._overflowed:
                self._overflowed = False
                events = [FsEvent("overflow")]
        return events


class _Translator(FileSystemEventHandler):
    """OS events -> FsEvent. Folder 'modified' events are dropped: their children report."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        if kind == "moved":
            self.inbox.put(FsEvent("moved", src, os.fsdecode(event.dest_path), event.is_directory))
        elif kind == "deleted":
            self.inbox.put(FsEvent("deleted", src, is_dir=event.is_directory))
        elif kind == "created" or (not event.is_directory and kind in ("modified", "closed", "attrib")):
            self.inbox.put(FsEvent("changed", src, is_dir=event.is_directory))


class OverflowAlarm(logging.Handler):
    """watchdog only logs a kernel queue overflow; turn that log line into overflow events."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._inboxes: set[Inbox] = set()
        self._lock = threading.Lock()

    def attach(self) -> None:
        logging.getLogger(_WATCHDOG_INOTIFY_LOGGER).addHandler(self)

    def detach(self) -> None:
        logging.getLogger(_WATCHDOG_INOTIFY_LOGGER).removeHandler(self)

    def register(self, inbox: Inbox) -> None:
        with self._lock:
            self._inboxes.add(inbox)

    def unregister(self, inbox: Inbox) -> None:
        with self._lock:
            self._inboxes.discard(inbox)

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" not in record.getMessage().lower():
            return
        with self._lock:
            inboxes = list(self._inboxes)
        for inbox in inboxes:
            inbox.put(FsEvent("overflow"))


@dataclass(frozen=True)
class WatchMode:
    """How one job is watched, and why (a warning to log when inotify is short of watches)."""

    polling: bool
    interval: float
    warning: str = ""


def inotify_limit(path: Path = INOTIFY_LIMIT_FILE) -> int | None:
    """fs.inotify.max_user_watches, or None where there is no inotify (not Linux)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def count_dirs(root: Path, excludes: Excludes) -> int:
    """Folders inotify would watch under `root` (itself included). Blocking: run it in a thread."""
    count = 0
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = f"{prefix}/{entry.name}" if prefix else entry.name
                    if entry.is_dir(follow_symlinks=False) and not excludes.excluded(rel, is_dir=True):
                        stack.append((entry.path, rel))
        except OSError:
            continue
    return count


def choose_mode(source: Path, dirs: int, limit: int | None, in_use: int, *, force_poll: bool,
                settle: float) -> WatchMode:
    """inotify when the watch limit covers this job's folders (on top of `in_use`), else polling."""
    if force_poll:
        return WatchMode(True, max(1.0, settle))
    if limit is None or in_use + dirs <= limit:
        return WatchMode(False, 0.0)
    wanted = max(524288, 2 * (in_use + dirs))
    return WatchMode(
        True,
        max(10.0, settle),
        f"{source} has {dirs} folders but fs.inotify.max_user_watches is {limit} ({in_use} already used"
        f" by this daemon): watching it by polling instead (slower to notice changes). Fix: sysctl"
        f" fs.inotify.max_user_watches={wanted} (to keep it: echo fs.inotify.max_user_watches={wanted}"
        f" > /etc/sysctl.d/90-hubsync.conf), then restart hubsync",
    )


class Watcher:
    """One job's observer: inotify (watchdog's Observer) or a PollingObserver."""

    def __init__(self, root: Path, inbox: Inbox, mode: WatchMode) -> None:
        self.root = root
        self.inbox = inbox
        self.mode = mode
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        """Start watching (recursively); raises OSError when the watches cannot be set up."""
        observer: BaseObserver = PollingObserver(timeout=self.mode.interval) if self.mode.polling else Observer()
        observer.schedule(_Translator(self.inbox), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=10)

    def healthy(self) -> bool:
        """False once the observer or one of its emitter threads died (e.g. a watch limit hit later)."""
        observer = self._observer
        if observer is None:
            return False
        return observer.is_alive() and all(e.is_alive() for e in observer.emitters)
