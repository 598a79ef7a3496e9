"""What the user sees: JSON lines, a rich progress display, or plain lines when not a terminal."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_str
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from transfer.pacer import RetryNote
from transfer.progress import Event
from transfer.remotepath import display, display_values

_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event) if f.name not in ("kind", "files"))


def human_size(n: float) -> str:
    """Binary units, as everywhere in hubsync's output: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable; keeps mypy content


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with milliseconds: 2026-12-02T21:09:43.402Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_line(event: Event, ts: str, bytes_done: int | None = None) -> str:
    """The JSON line of an event, built by hand: json.dumps of a dict cost 10 us an event, the
    better part of a no-op re-sync of 50,000 files. Same output as dumps(ensure_ascii=False)."""
    parts = ['{"event": ', _json_str(event.kind), ', "ts": "', ts, '"']
    for name in _EVENT_FIELDS:
        value = getattr(event, name)
        if name == "bytes" and event.kind == "done":
            value = event.size  # a finished file's bytes are its size (progress events carry the deltas)
        if isinstance(value, bool):
            if value:
                parts += [', "', name, '": true']
        elif isinstance(value, str):
            if value:  # display: a name that is not UTF-8 is written escaped, never crashes the output
                parts += [', "', name, '": ', _json_str(value if value.isprintable() else display(value))]
        elif value is not None:
            parts += [', "', name, '": ', str(int(value))]
    if bytes_done is not None:
        parts += [', "bytes_done": ', str(bytes_done)]
    parts.append("}\n")
    return "".join(parts)


def sent_line(event: Event) -> str:
    """A `done` event as a person reads it: where it went, its size, its transport, instant or not."""
    via = f" via {event.transport}" if event.transport else ""
    instant = ", instant: the platform held the content" if event.instant else ""
    return f"sent    {event.path} -> {event.remote} ({human_size(event.size)}{via}{instant})"


def skipped_line(event: Event) -> str:
    return f"skipped {event.path} (unchanged since the journal recorded it done)"


def retry_line(note: RetryNote) -> str:
    """'retry   a.bin: /api/file/file/uploadFile in 0.31s (attempt 1): HTTP 500 系统内部错误'."""
    subject = f"{note.path}: " if note.path else ""
    return f"retry   {subject}{note.call} in {note.delay:.2f}s (attempt {note.attempt}): {note.reason}"


class Tally:
    """Running counts of a run, from its events: what the stats line and the progress total show."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.files_total = self.files_done = self.errors = 0
        self.bytes_total = self.bytes_done = 0
        self.bytes_skipped = 0
        self.sent: dict[str, int] = {}  # bytes sent so far of each file in flight

    def emit(self, event: Event) -> None:
        kind = event.kind
        if kind in ("queued", "skipped"):
            self.files_total += event.files
            self.bytes_total += event.size
            if kind == "skipped":
                self.files_done += event.files
                self.bytes_done += event.size
                self.bytes_skipped += event.size
        elif kind == "progress":
            self.bytes_done += event.bytes
            self.sent[event.path] = self.sent.get(event.path, 0) + event.bytes
        elif kind == "done":
            self.files_done += 1
            self.sent.pop(event.path, None)
        elif kind == "failed":
            self.errors += 1
            self.bytes_done -= self.sent.pop(event.path, 0)

    def line(self) -> str:
        """files and bytes done of total, rate, ETA, errors so far."""
        elapsed = max(1e-9, self.clock() - self.started)
        rate = (self.bytes_done - self.bytes_skipped) / elapsed
        left = max(0, self.bytes_total - self.bytes_done)
        eta = f"{left / rate:.0f}s" if rate > 0 else "-"
        percent = 100 * self.bytes_done / self.bytes_total if self.bytes_total else 100.0
        return (f"stats   {self.files_done}/{self.files_total} files, {human_size(self.bytes_done)}"
                f"/{human_size(self.bytes_total)} ({percent:.0f}%), {human_size(rate)}/s, ETA {eta},"
                f" {self.errors} errors, {elapsed:.0f}s")


class JsonLines:
    """--json: one JSON object per event, then the summary object."""

    def __init__(self, out: TextIO | None = None, *, progress_events: bool = True) -> None:
        self.out = out or sys.stdout
        self.progress_events = progress_events
        self._flushed = 0.0
        self._done: dict[str, int] = {}  # each file's bytes so far, for progress events' bytes_done
        self._hashed: dict[str, int] = {}  # the same for hashing events

    def emit(self, event: Event) -> None:
        done = None
        if event.kind == "progress":
            done = self._done[event.path] = self._done.get(event.path, 0) + event.bytes
            if not self.progress_events:
                return
        elif event.kind == "hashing":
            done = self._hashed[event.path] = (self._hashed.get(event.path, 0) + event.bytes) if event.bytes else 0
            if not self.progress_events and event.bytes:
                return
        elif event.kind in ("done", "failed", "started"):
            self._done.pop(event.path, None)
            self._hashed.pop(event.path, None)
        # Flushed at most every 0.1 s: a flush per event released the GIL to the hashing and
        # journal threads thousands of times a second (a third of a 5,000-small-file run).
        self._write(_event_line(event, rfc3339_now(), done), flush=event.kind == "failed")

    def print(self, obj: dict[str, Any], *, flush: bool = True) -> None:
        obj = {"event": obj["event"], "ts": rfc3339_now(), **obj} if "event" in obj else {"ts": rfc3339_now(), **obj}
        line = json.dumps(obj, ensure_ascii=False)
        if not line.isprintable():
            line = json.dumps(display_values(obj), ensure_ascii=False)
        self._write(line + "\n", flush=flush)

    def _write(self, line: str, *, flush: bool) -> None:
        self.out.write(line)
        now = time.monotonic()
        if flush or now - self._flushed >= 0.1:
            self.out.flush()
            self._flushed = now


class PlainLines:
    """Not a terminal: one line per finished, failed or notable file."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False, verbose: int = 0) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet
        self.verbose = verbose
        self.tally = Tally()

    @property
    def each_skipped(self) -> bool:  # -v prints a line per unchanged file; otherwise it counts them
        return bool(self.verbose) and not self.quiet

    def stats(self) -> None:
        """The periodic one-line summary (--stats SECONDS) of a run whose output is not a terminal."""
        if not self.quiet:
            self._line(self.tally.line())

    def emit(self, event: Event) -> None:
        self.tally.emit(event)
        if event.kind == "done" and not self.quiet:
            self._line(sent_line(event))
        elif event.kind == "hashing" and not event.bytes and not self.quiet:
            self._line(f"hashing {event.path} ({human_size(event.size)}) before sending it")
        elif event.kind == "skipped" and self.verbose and not self.quiet:
            self._line(skipped_line(event))
        elif event.kind == "failed":
            self._line(f"FAILED  {event.path}: {event.message}")
        elif event.kind == "deleted" and not self.quiet:
            self._line(f"deleted {event.remote}")
        elif event.kind == "info":
            self._line(f"note    {event.path + ': ' if event.path else ''}{event.message}")

    def _line(self, text: str) -> None:
        self.out.write(display(text) + "\n")
        self.out.flush()


class _BinaryRate(ProgressColumn):
    """The rate in binary units; nothing during the first second (a rate there is noise)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        speed = task.finished_speed or task.speed
        if elapsed is None or elapsed < 1.0 or speed is None:
            return Text("  –/s", style="progress.data.speed")
        return Text(f"{human_size(speed)}/s", style="progress.data.speed")


#: Bars of files in flight shown at once; the total line counts the rest.
MAX_BARS = 8


class RichProgress:
    """Interactive runs: overall files/bytes/rate/ETA plus one bar per file in flight (at most MAX_BARS)."""

    def __init__(self, console: Console | None = None, verbose: int = 0) -> None:
        self.console = console or Console(stderr=True)
        self.verbose = verbose  # -v: each file sent or skipped gets its line above the bars too
        self.each_skipped = bool(verbose)  # otherwise unchanged files come as one event per batch
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            TextColumn("{task.percentage:>3.0f}%"),
            DownloadColumn(binary_units=True),
            _BinaryRate(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self.overall: TaskID | None = None
        self.active: dict[str, TaskID] = {}
        self.in_flight: set[str] = set()
        self.counted: set[str] = set()  # files whose bar completed: counted done before the confirmation
        self.tally = Tally()

    def __enter__(self) -> RichProgress:
        self.progress.start()
        self.overall = self.progress.add_task("total", total=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _describe_total(self) -> str:
        done = self.tally.files_done + len(self.counted)
        flight = f", {len(self.in_flight)} in flight" if self.in_flight else ""
        return f"[bold]total[/] {done}/{self.tally.files_total} files{flight}"

    def emit(self, event: Event) -> None:
        assert self.overall is not None
        self.tally.emit(event)
        kind = event.kind
        if kind in ("queued", "skipped"):
            self.progress.update(self.overall, total=self.tally.bytes_total)
            if kind == "skipped":
                self.progress.advance(self.overall, event.size)
                if self.verbose:
                    self._say(skipped_line(event))
        elif kind == "hashing":
            self._hashing(event)
        elif kind == "started":
            self.in_flight.add(event.path)
            name = escape(_short(display(event.path)))
            task = self.active.get(event.path)
            if task is not None:  # its hashing bar: from now on it counts bytes sent
                self.progress.reset(task, total=event.size, description=name)
            elif len(self.active) < MAX_BARS:
                self.active[event.path] = self.progress.add_task(name, total=event.size)
        elif kind == "progress":
            self.progress.advance(self.overall, event.bytes)
            task = self.active.get(event.path)
            if task is not None:
                self.progress.advance(task, event.bytes)
            if self.tally.sent.get(event.path, 0) >= event.size:
                self._bar_complete(event.path)
        elif kind in ("done", "failed"):
            self._bar_complete(event.path)
            self.counted.discard(event.path)
            if kind == "failed":
                self.console.print(f"[red]FAILED[/] {escape(display(event.path))}: {escape(display(event.message))}",
                                   markup=True, highlight=False)
            elif self.verbose:
                self._say(sent_line(event))
        elif kind in ("info", "deleted"):
            self._say(f"{event.path + ': ' if event.path else ''}{event.message or event.remote}")
        self.progress.update(self.overall, description=self._describe_total())

    def _say(self, text: str) -> None:
        self.console.print(display(text), markup=False, highlight=False)

    def _hashing(self, event: Event) -> None:
        """A large file being hashed before it is sent: its bar says so until sending starts."""
        task = self.active.get(event.path)
        if not event.bytes:  # hashing begins (again, after a change): shown at once, however fast it is
            name = f"[cyan]hashing[/] {escape(_short(display(event.path), 32))}"
            if task is not None:
                self.progress.reset(task, total=event.size, description=name)
            elif len(self.active) < MAX_BARS:
                self.active[event.path] = self.progress.add_task(name, total=event.size)
            self.progress.refresh()
        elif task is not None:
            self.progress.advance(task, event.bytes)

    def _bar_complete(self, path: str) -> None:
        """A file whose bytes are all sent leaves the display and counts as done (its confirmation follows)."""
        if path in self.in_flight:
            self.in_flight.discard(path)
            self.counted.add(path)
        task = self.active.pop(path, None)
        if task is not None:
            self.progress.remove_task(task)


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]


class CheckProgress:
    """`check --download` on a terminal: one bar of the bytes read back, with files done of total (stderr)."""

    def __init__(self, files: int, size: int, console: Console | None = None) -> None:
        self.files = files
        self.done = 0
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            _BinaryRate(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
            refresh_per_second=4,
        )
        self.task = self.progress.add_task(self._describe(), total=size)

    def _describe(self) -> str:
        return f"checked {self.done}/{self.files} files"

    def __enter__(self) -> CheckProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, delta: int) -> None:
        self.progress.advance(self.task, delta)

    def file_done(self) -> None:
        self.done += 1
        self.progress.update(self.task, description=self._describe())

    def print(self, line: str) -> None:
        """A line above the bar, never wrapped (a difference's md5s stay on its line)."""
        self.progress.console.print(line, soft_wrap=True, markup=False, highlight=False)
