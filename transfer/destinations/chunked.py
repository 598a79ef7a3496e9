"""The platform's md5 chunk protocol: check, upload missing chunks in parallel, merge, confirm."""

from __future__ import annotations

import asyncio
import builtins
from collections import defaultdict
from collections.abc import Collection

from ..api import PlatformClient
from ..bandwidth import TokenBucket
from ..envelope import PlatformRefused
from ..errors import LocalFileChanged
from ..folders import RemoteFolders
from ..hashing import FileSpan, hash_file, md5_hex, md5_of_span, read_span
from ..models import ChunkPlan, Digest, LocalFile, RemoteEntry, RemoteTarget, Space, file_space
from ..pacer import Pacer
from ..scope import RunScope
from .base import Confirmation, ConfirmItem, OnBytes, ResumeState, ensure_unchanged
from .workers import run_workers

SMALL_FILE_THRESHOLD = 1 << 20


class ChunkedDestination:
    """Private or public file storage through checkFileExist / uploadFile / mergeFile."""

    transport = "http"

    def __init__(
        self,
        api: PlatformClient,
        folders: RemoteFolders,
        *,
        chunk_size: int = 8 << 20,
        chunks_per_file: int = 4,
        small_file_threshold: int = SMALL_FILE_THRESHOLD,
        merge_attempts: int = 3,
        bandwidth: TokenBucket | None = None,
        confirm_timeout: float = 5.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.bandwidth = bandwidth
        self.confirm_timeout = confirm_timeout
        self.pacer = pacer or api.pacer  # polls on the policy's clock
        self.api = api
        self.folders = folders
        self.chunk_size = chunk_size
        self.chunks_per_file = chunks_per_file
        self.small_file_threshold = min(small_file_threshold, chunk_size)
        self.merge_attempts = merge_attempts
        self.chunk_requests = 0

    @property
    def hashed_chunk_size(self) -> int:
        """The chunks whose md5s the engine computes in a file's hashing read (see Destination)."""
        return self.chunk_size

    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes,
        *, scope: RunScope | None = None,
    ) -> bool:
        space = file_space(target)
        await self.folders.ensure(space, target.folder)
        since = self.folders.remade
        try:
            return await self._send_into(space, local, digest, target, resume, on_bytes)
        except PlatformRefused:
            # The folder may have gone since it was made (deleted there: the cache of folders
            # made is then stale). Made again, the file is worth one more try.
            if not await self.folders.made_again(space, target.folder, since):
                raise
            return await self._send_into(space, local, digest, target, resume, on_bytes)

    async def _send_into(
        self, space: Space, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState,
        on_bytes: OnBytes,
    ) -> bool:
        if local.size == 0 or local.size < self.small_file_threshold:
            await self._send_small(local, digest, target, on_bytes)
            return False
        plan = ChunkPlan(local.size, self.chunk_size)
        for attempt in range(1, self.merge_attempts + 1):
            check = await self.api.check_file(space, target.folder, target.name, digest.md5, local.size)
            if not check.held:
                await self._send_missing(local, digest, target, plan, check.chunks, resume, on_bytes)
            await asyncio.to_thread(ensure_unchanged, local)
            try:
                await self.api.merge(
                    space, target.folder, target.name, file_md5=digest.md5, size=local.size, total=plan.total
                )
                return check.held
            except PlatformRefused:
                if await self.folders.made_again(space, target.folder, self.folders.remade):
                    # The folder had gone (deleted on the platform since it was made): the chunks
                    # are held by md5, not by folder, so the merge alone is tried again.
                    await self.api.merge(
                        space, target.folder, target.name, file_md5=digest.md5, size=local.size, total=plan.total
                    )
                    return check.held
                # The platform checks the whole file's md5 at merge. A file rewritten in place
                # with its size and mtime restored looks unchanged to stat: only its bytes tell.
                if await asyncio.to_thread(_md5_now, local) != digest.md5:
                    raise LocalFileChanged(f"{local.rel} changed while it was sent (its content no longer"
                                           " has the md5 it was sent under)") from None
                # Same content: the platform keeps what it has, and the next check lists the
                # chunks it holds; each is verified against the file again, none trusted from
                # the journal (one may hold bytes of another version of the file).
                await resume.reset()
                if attempt == self.merge_attempts:
                    raise
        return False  # not reached: the last attempt returns or raises

    async def _send_small(self, local: LocalFile, digest: Digest, target: RemoteTarget, on_bytes: OnBytes) -> None:
        if digest.content is not None and len(digest.content) == local.size:
            data = digest.content  # what the hashing read saw: its md5 is digest.md5
            ensure_unchanged(local)  # one stat on the loop (the walk has just stat'ed it): cheaper than a hop
        else:
            data = await asyncio.to_thread(_read_small, local, digest.md5)
        if self.bandwidth is not None:
            await self.bandwidth.consume(local.size)
        await self.api.simple_upload(file_space(target), target.folder, target.name, data)
        on_bytes(local.size, True)

    async def _send_missing(
        self,
        local: LocalFile,
        digest: Digest,
        target: RemoteTarget,
        plan: ChunkPlan,
        held: dict[int, str],
        resume: ResumeState,
        on_bytes: OnBytes,
    ) -> None:
        acked = await resume.acked_chunks()

        async def one(index: int) -> None:
            offset, length = plan.span(index)
            reported = held.get(index)
            if reported is not None and acked.get(index) == reported:
                on_bytes(length, False)  # held and known to be ours: no read, no send
                return
            # Known from the file's hashing read (or hashed now, on a resume from a cached
            # digest), streamed from the file when sent: no chunk is held in memory.
            chunk_md5 = digest.chunk_md5(plan, index)
            if chunk_md5 is None:
                chunk_md5 = await asyncio.to_thread(md5_of_span, local.path, offset, length)
            if reported is not None and reported == chunk_md5:
                await resume.ack_chunk(index, chunk_md5, 0)
                on_bytes(length, False)
                return
            self.chunk_requests += 1
            if self.bandwidth is not None:
                await self.bandwidth.consume(length)
            try:
                # Not hashed again on the way: the platform refuses a chunk whose bytes do not
                # have its chunkMd5, which is what a file changed since it was hashed sends.
                await self.api.upload_chunk(
                    file_space(target),
                    target.folder,
                    target.name,
                    file_md5=digest.md5,
                    index=index,
                    total=plan.total,
                    data=FileSpan(local.path, offset, length, chunk_md5, verify=False),
                    chunk_md5=chunk_md5,
                )
            except PlatformRefused:
                # Only a refusal costs a pass over the chunk: to tell a changed file (sent again
                # by the engine, hashed afresh) from a refusal of something else.
                if await asyncio.to_thread(md5_of_span, local.path, offset, length) != chunk_md5:
                    raise LocalFileChanged(f"{local.rel} changed while it was sent (chunk {index} no longer"
                                           " has the md5 it was hashed with)") from None
                raise
            await resume.ack_chunk(index, chunk_md5, length)
            on_bytes(length, True)

        await run_workers(range(plan.total), one, self.chunks_per_file)

    async def confirm(self, items: list[ConfirmItem], *, scope: RunScope | None = None) -> list[Confirmation]:
        """One listing per folder confirms every file sent into it.

        A platform may show a merged file a moment later than it answers: folders with missing
        files are listed again, for up to `confirm_timeout` seconds, before anything is reported
        as failed.
        """
        verdicts: dict[int, str | None] = {}
        times: dict[int, int | None] = {}
        waiting = list(range(len(items)))

        async def all_shown() -> bool:
            nonlocal waiting
            by_folder: dict[tuple[Space, str], list[int]] = defaultdict(list)
            for i in waiting:
                by_folder[(file_space(items[i].target), items[i].target.folder)].append(i)
            waiting = []
            for (space, folder), group in by_folder.items():
                names = {items[i].target.name for i in group}
                listing = {e.name: e for e in await self.api.list_folder(space, folder, until=names)}
                for i in group:
                    target, size = items[i].target, items[i].size
                    entry = listing.get(target.name)
                    if entry is None or entry.is_dir:
                        verdicts[i] = "not shown in the folder listing after upload"
                        waiting.append(i)
                    elif entry.size != size:
                        verdicts[i] = f"listed with {entry.size} bytes, expected {size}"
                        waiting.append(i)
                    else:
                        verdicts[i], times[i] = None, entry.mtime_ms
            return not waiting

        await self.pacer.poll_until(all_shown, self.pacer.deadline(self.confirm_timeout), first=0.2)
        return [Confirmation(items[i].target, verdicts[i], times.get(i)) for i in range(len(items))]


def _md5_now(local: LocalFile) -> str:
    """The file's md5 as it is now (blocking; LocalFileChanged if its stat changes meanwhile)."""
    return hash_file(local).md5


def _read_small(local: LocalFile, md5: str) -> bytes:
    """The whole (small) file, checked against its md5 and stat in the same thread hop."""
    data = read_span(local.path, 0, local.size)
    if md5_hex(data) != md5:
        raise LocalFileChanged(f"{local.rel} changed after it was hashed")
    ensure_unchanged(local)
    return data


class FileStorageTree:
    """List and delete in the private/public spaces (RemoteTree)."""

    def __init__(self, api: PlatformClient) -> None:
        self.api = api

    async def list(self, space: Space, folder: str, until: Collection[str] | None = None) -> builtins.list[RemoteEntry]:
        """The folder's entries; with `until`, perhaps only those up to the last of these names."""
        return await self.api.list_folder(space, folder, until)

    async def delete(self, space: Space, paths: builtins.list[str]) -> None:
        await self.api.delete(space, paths)
