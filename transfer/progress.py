"""Progress events: the engine emits, sinks (CLI renderers, logs, metrics) subscribe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    """One thing that happened. kind: queued, hashing, started, progress, done, skipped, failed, deleted, info.

    `hashing` (large files only) and `progress` carry the bytes hashed or sent since the file's
    previous event of that kind in `bytes`; a `hashing` event with 0 bytes says hashing begins.
    """

    kind: str
    path: str = ""
    remote: str = ""
    bytes: int = 0
    size: int = 0
    transport: str = ""
    message: str = ""
    instant: bool = False  # done: the platform held the content (no byte sent)
    # skipped: how many files the event stands for. A sink that does not set `each_skipped`
    # (it only counts) gets one event per batch of unchanged files, with their total `size`
    # and no path: a no-op of a million files is not a million events through every sink.
    files: int = 1

    def as_dict(self) -> dict[str, Any]:
        # Plain attribute reads: dataclasses.asdict deep-copies and cost 30 us an event, which
        # was most of a no-op re-sync of 50,000 files.
        out: dict[str, Any] = {"kind": self.kind}
        for name in _FIELDS:
            value = getattr(self, name)
            if name == "files" and value == 1:
                continue
            if value != "" and value is not None and value is not False:
                out[name] = value
        return out


_FIELDS = tuple(f.name for f in fields(Event) if f.name != "kind")


class ProgressSink(Protocol):
    """Receives events; must not block (called on the event loop).

    A sink with `each_skipped = False` is given unchanged files as one `skipped` event per
    batch (`files` of them, `size` their bytes, no path); without the attribute it gets one each.
    """

    def emit(self, event: Event) -> None: ...


def each_skipped(sink: ProgressSink) -> bool:
    """Whether `sink` wants a `skipped` event per unchanged file (see ProgressSink)."""
    return bool(getattr(sink, "each_skipped", True))


class NullSink:
    each_skipped = False

    def emit(self, event: Event) -> None:
        return None


class FanoutSink:
    """Sends each event to several sinks."""

    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = list(sinks)

    @property
    def each_skipped(self) -> bool:
        return any(each_skipped(sink) for sink in self.sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


class ByteProgress:
    """One file's progress deltas, emitted in groups (as s3transfer's AggregatedProgressCallback).

    A destination reports each piece it sends (an SFTP block of 256 KiB, a chunk); events go
    out once `step` bytes or `seconds` have gathered since the last one, and `flush()` sends
    the rest (at the end of a send, before its done or failed). A negative delta (a retried
    piece rewinds progress) goes out at once, after what was pending, so totals never overshoot.
    """

    def __init__(self, sink: ProgressSink, path: str, remote: str, size: int, *, step: int,
                 seconds: float, now: Callable[[], float]) -> None:
        self._sink, self._path, self._remote, self._size = sink, path, remote, size
        self._step, self._seconds, self._now = step, seconds, now
        self._pending = 0
        self._last = now()

    def add(self, n: int) -> None:
        if n < 0:
            self.flush()
            self._emit(n)
            return
        self._pending += n
        if self._pending >= self._step or self._now() - self._last >= self._seconds:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = 0

    def _emit(self, n: int) -> None:
        self._last = self._now()
        self._sink.emit(Event("progress", self._path, self._remote, bytes=n, size=self._size))
