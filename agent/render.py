"""What the user sees: JSON lines, a rich progress display, or plain lines when not a terminal."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from json.encoder import encode_basestring as _json_str
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from transfer.progress import Event
from transfer.remotepath import display, display_values

_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event) if f.name != "kind")


def _event_line(event: Event) -> str:
    """The JSON line of an event, built by hand: json.dumps of a dict cost 10 us an event, the
    better part of a no-op re-sync of 50,000 files. Same output as dumps(ensure_ascii=False)."""
    parts = ['{"event": ', _json_str(event.kind)]
    for name in _EVENT_FIELDS:
        value = getattr(event, name)
        if isinstance(value, str):
            if value:  # display: a name that is not UTF-8 is written escaped, never crashes the output
                parts += [', "', name, '": ', _json_str(value if value.isprintable() else display(value))]
        elif value is not None:
            parts += [', "', name, '": ', str(int(value))]
    parts.append("}\n")
    return "".join(parts)


class JsonLines:
    """--json: one JSON object per event, then the summary object."""

    def __init__(self, out: TextIO | None = None, *, progress_events: bool = True) -> None:
        self.out = out or sys.stdout
        self.progress_events = progress_events
        self._flushed = 0.0

    def emit(self, event: Event) -> None:
        if event.kind == "progress" and not self.progress_events:
            return
        # Flushed at most every 0.1 s: a flush per event released the GIL to the hashing and
        # journal threads thousands of times a second (a third of a 5,000-small-file run).
        self._write(_event_line(event), flush=event.kind == "failed")

    def print(self, obj: dict[str, Any], *, flush: bool = True) -> None:
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

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet

    def emit(self, event: Event) -> None:
        if event.kind == "done" and not self.quiet:
            via = f" via {event.transport}" if event.transport else ""
            self._line(f"sent    {event.path} -> {event.remote} ({event.size} bytes{via})")
        elif event.kind == "failed":
            self._line(f"FAILED  {event.path}: {event.message}")
        elif event.kind == "deleted" and not self.quiet:
            self._line(f"deleted {event.remote}")
        elif event.kind == "info":
            self._line(f"note    {event.path + ': ' if event.path else ''}{event.message}")

    def _line(self, text: str) -> None:
        self.out.write(display(text) + "\n")
        self.out.flush()


class RichProgress:
    """Interactive runs: overall files/bytes/rate/ETA plus one bar per active file."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self.overall: TaskID | None = None
        self.active: dict[str, TaskID] = {}
        self.files_done = 0
        self.files_total = 0
        self.plain = PlainLines(quiet=True)
        self.started = time.monotonic()

    def __enter__(self) -> RichProgress:
        self.progress.start()
        self.overall = self.progress.add_task("total", total=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _describe_total(self) -> str:
        return f"[bold]total[/] {self.files_done}/{self.files_total} files"

    def emit(self, event: Event) -> None:
        assert self.overall is not None
        if event.kind in ("queued", "skipped"):
            self.files_total += 1
            self.progress.update(self.overall, total=(self.progress.tasks[0].total or 0) + event.size)
            if event.kind == "skipped":
                self.files_done += 1
                self.progress.advance(self.overall, event.size)
        elif event.kind == "started":
            if event.path not in self.active:
                self.active[event.path] = self.progress.add_task(_short(event.path), total=event.size)
        elif event.kind == "progress":
            self.progress.advance(self.overall, event.bytes)
            task = self.active.get(event.path)
            if task is not None:
                self.progress.advance(task, event.bytes)
        elif event.kind in ("done", "failed"):
            task = self.active.pop(event.path, None)
            if task is not None:
                self.progress.remove_task(task)
            self.files_done += 1
            if event.kind == "failed":
                self.console.print(f"[red]FAILED[/] {escape(display(event.path))}: {escape(display(event.message))}",
                                   markup=True, highlight=False)
        elif event.kind in ("info", "deleted"):
            self.console.print(display(f"{event.path + ': ' if event.path else ''}{event.message or event.remote}"),
                               markup=False, highlight=False)
        self.progress.update(self.overall, description=self._describe_total())


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]
