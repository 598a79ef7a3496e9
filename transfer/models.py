"""Frozen value types shared by the engine, its destinations and the application."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Space(StrEnum):
    """The two file spaces of the platform."""

    PRIVATE = "private"
    PUBLIC = "public"

    @property
    def is_public(self) -> bool:
        return self is Space.PUBLIC


@dataclass(frozen=True)
class DatahubSpace:
    """One asset version, by ids: what a RemoteTarget's `space` is for datahub targets."""

    kind: str
    asset_id: str
    version_id: str
    asset_name: str = field(default="", compare=False)
    version_name: str = field(default="", compare=False)

    # The journal keys and messages use ids only: names can be edited on the platform.
    def __str__(self) -> str:
        return f"{self.kind}:{self.asset_id}@{self.version_id}"

    def label(self) -> str:
        """For people: names where known."""
        return f"{self.kind}:{self.asset_name or self.asset_id}@{self.version_name or self.version_id}"


@dataclass(frozen=True)
class RemoteTarget:
    """Where one file goes: a space (or a datahub version), a folder in it (canonical, '' = root) and a name."""

    space: Space | DatahubSpace
    folder: str
    name: str

    @property
    def path(self) -> str:
        # Built only by transfer.remotepath: folder canonical, name one checked component.
        return f"{self.folder}/{self.name}" if self.folder else self.name

    def __str__(self) -> str:
        # folder is canonical and name a single component: no join needed (hot in planning).
        return f"{self.space}:/{self.folder}/{self.name}" if self.folder else f"{self.space}:/{self.name}"

    def label(self) -> str:
        """For people: a datahub version by its names where known (str() is the journal's key, by ids)."""
        if isinstance(self.space, DatahubSpace):
            return f"{self.space.label()}:/{self.path}"
        return str(self)


def file_space(target: RemoteTarget) -> Space:
    """The private/public space of a file-storage target (a datahub target is a programming error)."""
    if not isinstance(target.space, Space):
        raise TypeError(f"{target} is not in the private or public space")
    return target.space


class LocalFile(NamedTuple):
    """A regular file as stat saw it; `rel` is its '/'-separated path below the sync root.

    `path` is a plain string (every use is an os call): a pathlib.Path per file cost a third
    of the walk and ~300 bytes a file on trees of tens of thousands of files. A named tuple
    (immutable, as the frozen dataclass it was) is made in a third of a frozen dataclass's time:
    the walk makes one per file.
    """

    path: str
    rel: str
    size: int
    mtime_ns: int
    inode: int
    device: int

    @property
    def stat_key(self) -> tuple[int, int, int, int]:
        """What says the file is unchanged without reading it: (size, mtime_ns, inode, device)."""
        return self[2:]

    def same_stat(self, other: LocalFile) -> bool:
        return self.stat_key == other.stat_key


@dataclass(frozen=True)
class ChunkPlan:
    """How a file of `size` bytes is cut: every chunk `chunk_size` long except the last."""

    size: int
    chunk_size: int

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if self.size < 0:
            raise ValueError("size must not be negative")

    @property
    def total(self) -> int:
        return math.ceil(self.size / self.chunk_size)

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk `index`."""
        if not 0 <= index < self.total:
            raise IndexError(index)
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def spans(self) -> list[tuple[int, int]]:
        return [self.span(i) for i in range(self.total)]


@dataclass(frozen=True)
class Digest:
    """A file's md5 and the cheap xxhash fingerprint that says the content is unchanged.

    `chunks`, when known, are the md5s of its `chunk_size` chunks, computed in the same read as
    `md5` (so both describe the same bytes). `content` is what that read saw of a file small
    enough to be read whole (hashing.INLINE_MAX): a destination may send it rather than read
    the file again. Neither is stored in the journal.
    """

    md5: str
    fingerprint: str
    chunks: tuple[str, ...] = field(default=(), repr=False)
    chunk_size: int = 0
    content: bytes | None = field(default=None, repr=False, compare=False)

    def chunk_md5(self, plan: ChunkPlan, index: int) -> str | None:
        """The md5 of chunk `index` of `plan`, if known without reading the file."""
        if plan.total == 1:
            return self.md5  # a file of one chunk is its own chunk
        if self.chunk_size == plan.chunk_size and len(self.chunks) == plan.total:
            return self.chunks[index]
        return None


@dataclass(frozen=True)
class RemoteEntry:
    """One row of a folder listing."""

    name: str
    path: str
    is_dir: bool
    size: int
    mtime_ms: int | None = None


@dataclass(frozen=True)
class CheckResult:
    """checkFileExist: is the content held, and which chunks (index -> md5) are received."""

    held: bool
    chunks: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UserInfo:
    """Who the token belongs to; user_id is a string as every file call wants it."""

    user_id: str
    user_name: str
    tenant_id: str


@dataclass(frozen=True)
class SftpAccount:
    """SFTP credentials for one space; the password never appears in repr()."""

    username: str
    password: str = field(repr=False)
    host: str
    port: int
