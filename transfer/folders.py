"""Remote folder creation through the file API: one level per call, each level once per run."""

from __future__ import annotations

import asyncio

from . import remotepath
from .api import PlatformClient
from .envelope import PlatformRefused
from .errors import Fatal
from .models import Space


class RemoteFolders:
    """Makes sure folders exist; remembers what it has seen so each level costs one call per run."""

    def __init__(self, api: PlatformClient) -> None:
        self.api = api
        self._known: set[tuple[Space, str]] = set()
        self._locks: dict[tuple[Space, str], asyncio.Lock] = {}
        self.remade = 0  # folders found gone after they were made, and made again

    def forget(self, space: Space, folder: str, *, parents: bool = False) -> None:
        """Drop `folder` and what is below it from the cache (with `parents`, its parents too: a
        listing or an upload that says it is gone cannot tell which level went)."""
        folder = remotepath.join(folder)

        def stale(path: str) -> bool:
            return (path + "/").startswith(folder + "/") or parents and (folder + "/").startswith(path + "/")

        self._known = {k for k in self._known if not (k[0] == space and stale(k[1]))}

    async def ensure(self, space: Space, folder: str) -> bool:
        """Create `folder` and its missing parents (the platform creates none implicitly); True
        when a level had to be made."""
        folder = remotepath.join(folder)
        if not folder or (space, folder) in self._known:
            return False
        made = False
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            key = (space, path)
            if key in self._known:
                continue
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._known:
                    made |= await self._make(space, "/".join(parts[: depth - 1]), parts[depth - 1])
                    self._known.add(key)
        return made

    async def made_again(self, space: Space, folder: str, since: int) -> bool:
        """After the platform refused a write into `folder`: the cache may be stale (the folder
        deleted there since it was made). Check every level again; True when one had to be made,
        here or by another refused write since `since` (`remade` when the write began): the write
        is then worth another try."""
        folder = remotepath.join(folder)
        if self.remade != since and (space, folder) in self._known:
            return True  # made again, and checked, while this write was refused too
        self.forget(space, folder, parents=True)
        if await self.ensure(space, folder):
            self.remade += 1
            return True
        return self.remade != since

    async def _make(self, space: Space, parent: str, name: str) -> bool:
        """One level; True when it was made, False when it was there."""
        try:
            await self.api.add_folder(space, parent, name)
            return True
        except PlatformRefused as exc:
            refusal = exc
        # "文件夹已存在" counts as done only once a listing shows the folder (protocol.md §3.5).
        entries = await self.api.list_folder(space, parent)
        for entry in entries:
            if entry.name == name:
                if entry.is_dir:
                    return False
                raise Fatal(f"cannot create folder {remotepath.join(parent, name)}: a file has that name")
        raise refusal
