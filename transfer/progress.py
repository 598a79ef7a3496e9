"""Progress events: the engine emits, sinks (CLI renderers, logs, metrics) subscribe."""

from __future__ import annotations

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

    def as_dict(self) -> dict[str, Any]:
        # Plain attribute reads: dataclasses.asdict deep-copies and cost 30 us an event, which
        # was most of a no-op re-sync of 50,000 files.
        out: dict[str, Any] = {"kind": self.kind}
        for name in _FIELDS:
            value = getattr(self, name)
            if value != "" and value is not None and value is not False:
                out[name] = value
        return out


_FIELDS = tuple(f.name for f in fields(Event) if f.name != "kind")


class ProgressSink(Protocol):
    """Receives events; must not block (called on the event loop)."""

    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        return None


class FanoutSink:
    """Sends each event to several sinks."""

    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)
