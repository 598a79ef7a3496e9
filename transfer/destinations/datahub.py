"""Datahub asset versions (protocol.md §5): staged through private storage, or direct chunks.

Staged (the default): the file goes into the private space under
`.hubsync-staging/<asset-id>/<version-id>/…` with the md5 chunk protocol (resume and instant
upload for free); `confirm` then imports it into the version in batches, polls the version's
listing until the file shows, and deletes the staging copy. The step each file reached is kept
in its resume state (`stage`: staged → imported), so a crash resumes at that step.

Direct: `data/uploadFile` with one submitId per file, kept in the resume state with each
acknowledged chunk index; a resumed transfer sends only the chunks the journal has not
acknowledged, with the same submitId. There is no md5 on this path and no query of received
chunks: the journal is the only memory.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Literal

from .. import remotepath
from ..bandwidth import TokenBucket
from ..datahub import DatahubApi
from ..envelope import PlatformRefused
from ..errors import Fatal, TransferError
from ..folders import RemoteFolders
from ..hashing import FileSpan, md5_of_span
from ..models import ChunkPlan, DatahubSpace, Digest, LocalFile, RemoteEntry, RemoteTarget, Space
from ..pacer import Pacer
from ..scope import RunScope
from .base import Confirmation, ConfirmItem, Destination, OnBytes, ResumeFields, ResumeState, ensure_unchanged
from .workers import run_workers

log = logging.getLogger("hubsync.datahub")

STAGING_ROOT = ".hubsync-staging"


def _space(target: RemoteTarget) -> DatahubSpace:
    if not isinstance(target.space, DatahubSpace):
        raise TypeError(f"{target} is not a datahub target")
    return target.space


def staging_folder(space: DatahubSpace) -> str:
    """The private-space folder that stages files for one version."""
    return remotepath.join(STAGING_ROOT, space.asset_id, space.version_id)


def staged_target(target: RemoteTarget) -> RemoteTarget:
    return RemoteTarget(Space.PRIVATE, remotepath.join(staging_folder(_space(target)), target.folder), target.name)


class _Poller:
    """Lists version folders until every waited-for file shows with its size (back-off, deadline)."""

    def __init__(self, datahub: DatahubApi, timeout: float, pacer: Pacer) -> None:
        self.datahub = datahub
        self.timeout = timeout
        self.pacer = pacer

    async def listing(self, items: list[ConfirmItem], indices: list[int]) -> dict[int, RemoteEntry | None]:
        """One listing per folder: the entry each item's name has there (None when absent)."""
        by_folder: dict[tuple[DatahubSpace, str], list[int]] = defaultdict(list)
        for i in indices:
            by_folder[(_space(items[i].target), items[i].target.folder)].append(i)
        found: dict[int, RemoteEntry | None] = {}
        for (space, folder), group in by_folder.items():
            entries = {e.name: e for e in await self.datahub.list_files(space, folder)}
            for i in group:
                entry = entries.get(items[i].target.name)
                found[i] = entry if entry is not None and not entry.is_dir else None
        return found

    async def wait(
        self, items: list[ConfirmItem], indices: list[int], what: str,
        shown: Callable[[int, RemoteEntry], bool] | None = None, times: dict[int, int | None] | None = None,
    ) -> dict[int, str | None]:
        """Poll until each item shows (default: with its size); time-outs are errors, never success.

        `times`, when given, receives the update time each item showed with (the platform's clock).
        """
        verdicts: dict[int, str | None] = {}
        waiting = list(indices)

        async def all_shown() -> bool:
            nonlocal waiting
            if not waiting:
                return True
            listing = await self.listing(items, waiting)
            still: list[int] = []
            for i in waiting:
                entry = listing[i]
                ok = entry is not None and (shown(i, entry) if shown else entry.size == items[i].size)
                if ok:
                    verdicts[i] = None
                    if times is not None and entry is not None:
                        times[i] = entry.mtime_ms
                else:
                    still.append(i)
                    verdicts[i] = (
                        f"{what}: not shown in the version after {self.timeout:.0f}s" if entry is None
                        else f"{what}: listed with {entry.size} bytes after {self.timeout:.0f}s, expected {items[i].size}"
                    )
            waiting = still
            return not waiting

        await self.pacer.poll_until(all_shown, self.pacer.deadline(self.timeout))
        return verdicts


Stage = Literal["", "staged", "imported", "confirmed"]


@dataclass(frozen=True)
class StagedResume(ResumeFields):
    """How far a staged file got: staged in the private space, imported, confirmed in the version."""

    stage: str = ""  # a Stage; read as a plain string so that an unknown value restarts the import


@dataclass(frozen=True)
class DirectResume(ResumeFields):
    """A direct upload's submitId, and whether every chunk went out (then: confirm before resending)."""

    submit_id: str = field(default="", metadata={"key": "submitId"})
    uploaded: bool = False
    rechecked: bool = False  # sent in full and not shown in time once already


class StagedDatahubDestination:
    """Stage in private storage with the md5 chunk protocol, then importFiles into the version."""

    transport = "datahub-staged"

    def __init__(
        self,
        datahub: DatahubApi,
        files: Destination,
        *,
        keep_staging: bool = False,
        folders: RemoteFolders | None = None,
        import_batch: int = 100,
        poll_timeout: float = 600.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.datahub = datahub
        self.files = files
        self.keep_staging = keep_staging
        # The cache of existing folders, told when drop_staging() deletes the staging folder.
        self.folders = folders
        self.import_batch = max(1, import_batch)
        self.poller = _Poller(datahub, poll_timeout, pacer or datahub.api.pacer)

    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes,
        *, scope: RunScope | None = None,
    ) -> None:
        await self.files.send(local, digest, staged_target(target), resume, on_bytes, scope=scope)
        await resume.save(StagedResume("staged"))

    async def confirm(self, items: list[ConfirmItem], *, scope: RunScope | None = None) -> list[Confirmation]:
        verdicts: dict[int, str | None] = {}
        to_import = [i for i, item in enumerate(items) if _stage(item) != "imported"]
        imported = [i for i, item in enumerate(items) if _stage(item) == "imported"]
        # What the version showed before the import: an older file of the same size must not be
        # taken for the new one (its staging copy would be deleted before the copy job read it).
        before = await self.poller.listing(items, to_import) if to_import else {}
        await self._import(items, to_import, verdicts)
        imported += [i for i in to_import if i not in verdicts]
        # Staging must outlive the asynchronous copy: wait for the file to show, then delete.
        # (Checked before each delete by listing, never assumed from the import's answer.)

        uncertain: set[int] = set()

        def fresh(i: int, entry: RemoteEntry) -> bool:
            if entry.size != items[i].size:
                return False
            old = before.get(i)
            if old is None or old.size != entry.size:
                return True
            # The same name and size were there before: only a newer update time shows our copy.
            if entry.mtime_ms is None or old.mtime_ms is None:
                uncertain.add(i)  # cannot tell: accept, but keep the staging copy to be safe
                return True
            return entry.mtime_ms > old.mtime_ms

        times: dict[int, int | None] = {}
        shown = await self.poller.wait(items, imported, "imported", fresh, times)
        verdicts.update(shown)
        for i in imported:
            if verdicts.get(i) is None:
                await _record_stage(items[i], "confirmed")
        if not self.keep_staging:
            await self._unstage([items[i] for i in imported if verdicts.get(i) is None and i not in uncertain])
        return [Confirmation(item.target, verdicts.get(i), times.get(i)) for i, item in enumerate(items)]

    async def _import(self, items: list[ConfirmItem], indices: list[int], verdicts: dict[int, str | None]) -> None:
        by_folder: dict[tuple[DatahubSpace, str], list[int]] = defaultdict(list)
        for i in indices:
            by_folder[(_space(items[i].target), items[i].target.folder)].append(i)
        for (space, folder), group in by_folder.items():
            for start in range(0, len(group), self.import_batch):
                batch = group[start : start + self.import_batch]
                await self._import_batch(items, space, folder, batch, verdicts)

    async def _import_batch(
        self, items: list[ConfirmItem], space: DatahubSpace, folder: str, batch: list[int],
        verdicts: dict[int, str | None],
    ) -> None:
        sources = [staged_target(items[i].target).path for i in batch]
        try:
            await self.datahub.import_files(space, folder, sources)
        except PlatformRefused as exc:
            if len(batch) == 1:
                verdicts[batch[0]] = f"import refused: {exc.text or exc}"
                return
            # One missing source refuses the whole batch: import one by one to name it.
            for i in batch:
                await self._import_batch(items, space, folder, [i], verdicts)
            return
        for i in batch:
            await _record_stage(items[i], "imported")

    async def _unstage(self, items: list[ConfirmItem]) -> None:
        """Delete the staging copies of confirmed files (their folders stay: others may be on the way)."""
        paths = [staged_target(item.target).path for item in items]
        for start in range(0, len(paths), 100):
            try:
                await self.datahub.api.delete(Space.PRIVATE, paths[start : start + 100])
            except TransferError as exc:
                log.warning("could not delete %d staging copies: %s", len(paths[start : start + 100]), exc)

    async def drop_staging(self, space: DatahubSpace) -> str | None:
        """Remove what a run emptied: the version's staging folder once no file is left anywhere
        below it, then `.hubsync-staging/<asset-id>` and `.hubsync-staging` once they hold nothing.

        Call it when nothing else is being staged for that version (the end of a run). A folder
        that cannot be listed or deleted is kept: the files are in the version all the same, so
        that is a warning (returned as one line), never a failure.
        """
        version = staging_folder(space)
        folder = version
        try:
            for folder in (version, remotepath.join(STAGING_ROOT, space.asset_id), STAGING_ROOT):
                try:
                    entries = await self.datahub.api.list_folder(Space.PRIVATE, folder)
                except PlatformRefused:
                    continue  # not there (a missing folder is refused): nothing to remove at this level
                # The version's folder goes once no file is left below it; the levels above only
                # when empty (another version's or asset's staging may be under way there).
                busy = await self._holds_files(entries) if folder == version else bool(entries)
                if busy:
                    return None
                await self.datahub.api.delete(Space.PRIVATE, [folder])
                if self.folders is not None:
                    self.folders.forget(Space.PRIVATE, folder)
        except TransferError as exc:
            return f"staging folder private:/{folder} kept: {exc}"
        return None

    async def _holds_files(self, entries: builtins.list[RemoteEntry]) -> bool:
        """Whether a file is anywhere below these entries (the folders they name walked level by level)."""
        pending = [entries]
        while pending:
            level = pending.pop()
            if any(not e.is_dir for e in level):
                return True
            for entry in level:
                pending.append(await self.datahub.api.list_folder(Space.PRIVATE, entry.path))
        return False


def _stage(item: ConfirmItem) -> str:
    return item.resume.load(StagedResume).stage if item.resume is not None else ""


async def _record_stage(item: ConfirmItem, stage: Stage) -> None:
    if item.resume is not None:
        await item.resume.save(StagedResume(stage))


class DirectDatahubDestination:
    """data/uploadFile: one submitId per file, chunks acknowledged in the journal."""

    transport = "datahub-direct"

    def __init__(
        self,
        datahub: DatahubApi,
        *,
        chunk_size: int = 8 << 20,
        chunks_per_file: int = 4,
        bandwidth: TokenBucket | None = None,
        poll_timeout: float = 600.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.datahub = datahub
        self.chunk_size = chunk_size
        self.chunks_per_file = chunks_per_file
        self.bandwidth = bandwidth
        self.poller = _Poller(datahub, poll_timeout, pacer or datahub.api.pacer)
        self.chunk_requests = 0

    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes,
        *, scope: RunScope | None = None,
    ) -> None:
        space = _space(target)
        plan = ChunkPlan(local.size, self.chunk_size)
        total = max(1, plan.total)  # an empty file is one empty chunk
        acked = await resume.acked_chunks()
        state = resume.load(DirectResume)
        if state.submit_id and state.uploaded and len(acked) >= total:
            if state.rechecked:
                # Sent in full once, then not shown in time twice: start a new upload.
                await resume.reset()
                acked, state = {}, DirectResume()
            else:
                # Every chunk went out before (a crash or a slow assembly): confirm before resending.
                await resume.save(replace(state, rechecked=True))
                on_bytes(local.size, False)
                return
        if not state.submit_id:
            state = DirectResume(submit_id=str(uuid.uuid4()))
            await resume.save(state)
        submit_id = state.submit_id

        async def one(index: int) -> None:
            offset, length = plan.span(index) if plan.total else (0, 0)
            if index in acked:
                on_bytes(length, False)
                return
            # Hashed here, streamed from the file when sent (checked against this md5 on the
            # way): no chunk is held in memory. A one-chunk file's chunk md5 is its md5.
            if plan.total == 1:
                chunk_md5 = digest.md5
            else:
                chunk_md5 = await asyncio.to_thread(md5_of_span, local.path, offset, length)
            if self.bandwidth is not None and length:
                await self.bandwidth.consume(length)
            self.chunk_requests += 1
            await self.datahub.upload_chunk(
                space, target.folder, target.name, submit_id=submit_id, index=index, total=total,
                data=FileSpan(local.path, offset, length, chunk_md5) if length else b"",
            )
            await resume.ack_chunk(index, chunk_md5, length)
            on_bytes(length, True)

        # The last chunk completes the file on the platform: send it only after the others, and
        # only when the file is unchanged, so a file edited meanwhile is never assembled.
        last = total - 1
        await run_workers(range(last), one, self.chunks_per_file)
        await asyncio.to_thread(ensure_unchanged, local)
        await one(last)
        await resume.save(replace(state, uploaded=True))

    async def confirm(self, items: list[ConfirmItem], *, scope: RunScope | None = None) -> list[Confirmation]:
        times: dict[int, int | None] = {}
        verdicts = await self.poller.wait(items, list(range(len(items))), "uploaded", times=times)
        return [Confirmation(item.target, verdicts.get(i), times.get(i)) for i, item in enumerate(items)]


class DatahubTree:
    """List and delete inside a version (for listings and deletes of extras)."""

    def __init__(self, datahub: DatahubApi) -> None:
        self.datahub = datahub

    async def list(self, space: DatahubSpace, folder: str, until: Collection[str] | None = None) -> builtins.list[RemoteEntry]:
        """The folder's entries, all of them (`until` is the file spaces' early stop; not used here)."""
        return await self.datahub.list_files(space, folder)

    async def delete(self, space: DatahubSpace, paths: builtins.list[str]) -> None:
        await self.datahub.delete_files(space, paths)


__all__ = ["DirectDatahubDestination", "StagedDatahubDestination", "DatahubTree", "Fatal", "staging_folder"]
