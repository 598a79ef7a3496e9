"""Progress events: the engine emits, sinks (CLI renderers, logs, metrics) subscribe."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    """One thing that happened. kind: queued, started, progress, done, skipped, failed, deleted, info."""

    kind: str
    path: str = ""
    remote: str = ""
    bytes: int = 0
    size: int = 0
    transport: str = ""
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None) or k == "kind"}


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
