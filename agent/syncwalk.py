"""A sync's source walked folder by folder: the engine's batches, and what --delete would delete.

Nothing here holds the tree: each folder is mapped to its batch when the engine asks for it,
what the walk could not take is reported as it is found and only counted, and the delete pass
compares each local folder with that remote folder's listing (never a set of the whole tree).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from transfer.engine import Batch

from .scanner import Excludes, Folder, folders
from .service import Services
from .targets import Target


class SyncWalk:
    """One walk of SRC for one sync (or dry run): iterate `batches()` once."""

    def __init__(self, services: Services, target: Target, source: Path, excludes: Excludes, *,
                 follow_symlinks: bool = False, deletes: bool = False,
                 on_problem: Callable[[str, str], None] = lambda rel, why: None,
                 on_link: Callable[[str], None] = lambda rel: None) -> None:
        self.services = services
        self.target = target
        self.source = source
        self.excludes = excludes
        self.follow_symlinks = follow_symlinks
        self.deletes = deletes
        self.on_problem = on_problem
        self.on_link = on_link
        self.problems = 0  # entries the walk could not take (each reported once, by on_problem)
        self.extra: list[str] = []  # with `deletes`: remote files below the target that SRC lacks
        self.remote_files = 0  # with `deletes`: the files the remote holds below the target
        # With `deletes`: files of SRC the listings did not show, which the sync adds to the remote.
        # The half rule judges a delete against the remote as the sync leaves it (see remote_after).
        self.added = 0
        # Local folders whose parent's listing showed them on the remote too (they alone are
        # listed); each is dropped once compared, so this holds at most the folders pending.
        self._on_remote: set[str] = {""}

    async def batches(self) -> AsyncIterator[Batch]:
        async for folder in folders(self.source, self.excludes, follow_symlinks=self.follow_symlinks):
            for rel, why in folder.problems:
                self.problems += 1
                self.on_problem(rel, why)
            for link in folder.links:
                self.on_link(link)
            items, refused = self.target.items(folder.files)
            if self.deletes and not self.problems:  # after a problem the delete pass is refused anyway
                on_remote = await self._compare(folder)
                # Files the listing did not show (every file of a folder the remote lacks) are new there.
                self.added += sum(1 for item in items if on_remote is None or item.local.rel not in on_remote)
            yield Batch(items, refused, self.target.unreadable(folder.problems, self.source))

    def remote_after(self, failed: int) -> int:
        """A lower bound of the files the remote holds below the target once the sync has run
        (`failed` of its files failed; any of them may have been one the remote lacked)."""
        return self.remote_files + max(0, self.added - failed)

    async def _compare(self, folder: Folder) -> set[str] | None:
        """Note the remote files of this folder (and of remote folders it lacks, whole) that it does
        not have; returns the files its listing showed, None when the remote lacks the folder."""
        if folder.rel not in self._on_remote:
            return None  # not on the remote: nothing there to delete
        self._on_remote.discard(folder.rel)
        seen: set[str] = set()
        files = {f.rel for f in folder.files}
        walked, links = set(folder.directories), set(folder.links)  # a link's remote copy is kept
        target = self.target
        for entry in await target.listing(self.services, target.remote.folder(folder.rel)):
            child = target.remote.child(folder.rel, entry.name)
            if child is None or self.excludes.excluded(child, is_dir=entry.is_dir):
                continue  # a name no local file maps to, or excluded: never deleted, never counted
            if entry.is_dir:
                if child in walked:
                    self._on_remote.add(child)  # compared when the walk reaches it
                    continue
                below = await target.files(self.services, self.excludes, under=child)
                self.remote_files += len(below)
                if child not in links:
                    self.extra += sorted(below)
            else:
                self.remote_files += 1
                seen.add(child)
                if child not in files and child not in links:
                    self.extra.append(child)
        return seen
