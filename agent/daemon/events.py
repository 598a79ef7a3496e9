"""What the watcher hands to the aggregator, and what the aggregator hands back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["changed", "deleted", "moved", "overflow"]


@dataclass(frozen=True, slots=True)
class FsEvent:
    """One OS event, translated: absolute paths; `dest` only for moves; overflow = events were lost."""

    kind: EventKind
    path: str = ""
    dest: str = ""
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class FileStat:
    """The two numbers that say a file is still being written."""

    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Send:
    """A file that has settled: queue it."""

    rel: str


@dataclass(frozen=True, slots=True)
class Rescan:
    """Walk this folder ('' = the whole tree) and queue what changed."""

    rel: str


@dataclass(frozen=True, slots=True)
class Gone:
    """A path that disappeared (deleted or moved away): a candidate for a remote delete."""

    rel: str
    is_dir: bool


Action = Send | Rescan | Gone
