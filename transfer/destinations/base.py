"""The seam every transport implements, and the per-file resume state the engine hands it."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, Self, TypeVar

from ..errors import LocalFileChanged
from ..hashing import stat_file
from ..journal import FileRecord, Journal
from ..models import Digest, LocalFile, RemoteEntry, RemoteTarget, Space
from ..scope import RunScope

# (bytes done, whether they crossed the network): held chunks advance progress but are not sent.
OnBytes = Callable[[int, bool], None]


@dataclass(frozen=True)
class ResumeFields:
    """Base of a destination's resume state: a frozen dataclass kept in the journal's JSON blob.

    Each field is stored under its `metadata["key"]` (default: its name), so the keys of
    records written before these types (`stage`, `submitId`, `part`, `offset`, ...) still
    load. A key that is missing or null takes the field's default; a value of another type than
    the default's makes the whole state its defaults: the file starts again, never resumes
    from a misread record.
    """

    @classmethod
    def from_blob(cls, blob: Mapping[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = blob.get(f.metadata.get("key", f.name))
            if value is None:
                continue
            default = f.default
            if type(value) is not type(default) and not (type(default) is float and type(value) is int):
                return cls()
            values[f.name] = value
        return cls(**values)

    def to_blob(self) -> dict[str, Any]:
        return {f.metadata.get("key", f.name): getattr(self, f.name) for f in fields(self)}


R = TypeVar("R", bound=ResumeFields)


class ResumeState:
    """What one transfer may remember between attempts, stored in the journal by the engine.

    Destinations read and write their own `ResumeFields` dataclass (`load`/`save`); several
    may share one blob (staged datahub uploads keep the file space's state beside their own).
    """

    def __init__(self, journal: Journal, record: FileRecord, md5: str, chunk_size: int) -> None:
        self._journal = journal
        self.record = record
        self.md5 = md5
        self.chunk_size = chunk_size
        self._data: dict[str, Any] = dict(record.resume) if isinstance(record.resume, dict) else {}

    async def acked_chunks(self) -> dict[int, str]:
        return await self._journal.acked_chunks(self.record.id, self.md5, self.chunk_size)

    async def ack_chunk(self, index: int, chunk_md5: str, length: int) -> None:
        await self._journal.ack_chunk(self.record.id, self.md5, self.chunk_size, index, chunk_md5, length)

    def load(self, kind: type[R]) -> R:
        """This transfer's state of type `kind` (its defaults when none was saved)."""
        return kind.from_blob(self._data)

    async def save(self, state: ResumeFields) -> None:
        """Merge `state` into the resume blob and persist it before returning (no write if unchanged)."""
        merged = {**self._data, **state.to_blob()}
        if merged == self._data:
            return
        self._data = merged
        await self._journal.update(self.record.id, resume=self._data)

    async def reset(self) -> None:
        self._data = {}
        await self._journal.update(self.record.id, resume={})
        await self._journal.clear_chunks(self.record.id)


@dataclass(frozen=True)
class ConfirmItem:
    """One sent file to confirm: where it went, its size and md5, and its resume state.

    `resume` lets a destination with several steps after sending (datahub's staged import)
    record which step a file reached, so a crash resumes at that step.
    """

    target: RemoteTarget
    size: int
    md5: str = ""
    resume: ResumeState | None = None


@dataclass(frozen=True)
class Confirmation:
    """The result of checking a target after sending: None error means it shows as expected.

    `mtime_ms` is the time the platform showed for the file then, on its own clock (None where
    it shows none): the journal keeps it, and a later listing showing another time means the
    file was changed there (transfer.drift).
    """

    target: RemoteTarget
    error: str | None
    mtime_ms: int | None = None


class Destination(Protocol):
    """A transport into one kind of remote (HTTP chunk protocol, SFTP, datahub).

    A destination that sends chunk md5s may have a `hashed_chunk_size` (int): the engine then
    computes those chunks' md5s in the read that hashes the file (`Digest.chunks`).
    """

    transport: str

    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes,
        *, scope: RunScope | None = None,
    ) -> bool | None:
        """Make `target` hold `local`'s content, committed atomically; raise a TransferError if not.

        True when the platform already held the content and placed it without a byte sent (an
        instant upload); None or False otherwise.

        `scope` is the run's (what the destination learns lasts that run); None: a scope of the
        destination's own.
        """
        ...

    async def confirm(self, items: list[ConfirmItem], *, scope: RunScope | None = None) -> list[Confirmation]:
        """Check that each target now shows with the given size (and md5 where the platform tells)."""
        ...


class RemoteTree(Protocol):
    """Listing and deleting on the remote side (for deletes of extras, listings and verification)."""

    async def list(self, space: Space, folder: str) -> builtins.list[RemoteEntry]: ...

    async def delete(self, space: Space, paths: builtins.list[str]) -> None: ...


def ensure_unchanged(local: LocalFile) -> None:
    """Raise LocalFileChanged if the file's stat differs from when it was hashed (blocking)."""
    try:
        now = stat_file(local.path, local.rel)
    except OSError as exc:
        raise LocalFileChanged(f"{local.rel} disappeared: {exc.strerror}") from exc
    if not now.same_stat(local):
        raise LocalFileChanged(f"{local.rel} changed while it was sent")
