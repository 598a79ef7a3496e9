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

    def forget(self, space: Space, folder: str) -> None:
        folder = remotepath.join(folder)
        self._known = {k for k in self._known if not (k[0] == space and (k[1] + "/").startswith(folder + "/"))}

    async def ensure(self, space: Space, folder: str) -> None:
        """Create `folder` and its missing parents (the platform creates none implicitly)."""
        folder = remotepath.join(folder)
        if not folder or (space, folder) in self._known:
            return
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            key = (space, path)
            if key in self._known:
                continue
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._known:
                    await self._make(space, "/".join(parts[: depth - 1]), parts[depth - 1])
                    self._known.add(key)

    async def _make(self, space: Space, parent: str, name: str) -> None:
        try:
            await self.api.add_folder(space, parent, name)
            return
        except PlatformRefused as exc:
            refusal = exc
        # "文件夹已存在" counts as done only once a listing shows the folder (protocol.md §3.5).
        entries = await self.api.list_folder(space, parent)
        for entry in entries:
            if entry.name == name:
                if entry.is_dir:
                    return
                raise Fatal(f"cannot create folder {remotepath.join(parent, name)}: a file has that name")
        raise refusal
