"""Pure: does the remote still hold what the journal says was sent there? (product.md: the
platform is the truth, the journal only a cache.)"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar

from .models import DatahubSpace, RemoteEntry, RemoteTarget, Space

# Remote times come from another clock at a coarser grain: a change is one this much past done_at.
MTIME_SLACK_MS = 1000

T = TypeVar("T")


def drift(size: int, done_at: float | None, entry: RemoteEntry | None) -> str | None:
    """Why a file the journal records as done (`size` bytes, confirmed at `done_at`, epoch
    seconds) must be sent again, given its remote listing `entry`; None when it still shows."""
    if entry is None:
        return "missing on the remote"
    if entry.is_dir:
        return "a folder on the remote has its name"
    if entry.size != size:
        return f"{entry.size} bytes on the remote, {size} here"
    if entry.mtime_ms and done_at is not None and entry.mtime_ms > done_at * 1000 + MTIME_SLACK_MS:
        return "changed on the remote after it was sent"
    return None


def by_folder(items: Iterable[tuple[RemoteTarget, T]]) -> dict[tuple[Space | DatahubSpace, str], list[tuple[str, T]]]:
    """(space, folder) -> [(name, value)]: one listing per remote folder."""
    folders: dict[tuple[Space | DatahubSpace, str], list[tuple[str, T]]] = defaultdict(list)
    for target, value in items:
        folders[(target.space, target.folder)].append((target.name, value))
    return folders
