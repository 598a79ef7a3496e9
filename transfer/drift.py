"""Pure: does the remote still hold what the journal says was sent there? (product.md: the
platform is the truth, the journal only a cache.)"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar

from .models import DatahubSpace, RemoteEntry, RemoteTarget, Space

# SFTP tells whole seconds where listings tell milliseconds: the same file's two times differ by
# less than this.
MTIME_SLACK_MS = 1000

T = TypeVar("T")


def drift(size: int, confirmed_ms: int | None, entry: RemoteEntry | None) -> str | None:
    """Why a file the journal records as done (`size` bytes; the platform showed it with the time
    `confirmed_ms` when it was confirmed) must be sent again, given its remote listing `entry`;
    None when it still shows as sent.

    Times are compared on the platform's clock only (never with the local one, which may be
    minutes apart): where either side has no time, size decides.
    """
    if entry is None:
        return "missing on the remote"
    if entry.is_dir:
        return "a folder on the remote has its name"
    if entry.size != size:
        return f"{entry.size} bytes on the remote, {size} here"
    if entry.mtime_ms and confirmed_ms and abs(entry.mtime_ms - confirmed_ms) > MTIME_SLACK_MS:
        return "changed on the remote since it was sent"
    return None


def by_folder(items: Iterable[tuple[RemoteTarget, T]]) -> dict[tuple[Space | DatahubSpace, str], list[tuple[str, T]]]:
    """(space, folder) -> [(name, value)]: one listing per remote folder."""
    folders: dict[tuple[Space | DatahubSpace, str], list[tuple[str, T]]] = defaultdict(list)
    for target, value in items:
        folders[(target.space, target.folder)].append((target.name, value))
    return folders
