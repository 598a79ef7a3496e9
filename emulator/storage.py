"""The platform's disk: file spaces, chunks of uploads in progress, and a content index.

Layout under the emulator's root (shared with the SFTP server, which serves the same spaces):

    spaces/private/<userId>/...       a user's private space
    spaces/public/<tenantId>/...      a tenant's public space
    chunks/<private-U|public-T>/<fileMd5>/<index>   received chunks (+ <index>.md5 sidecars)
    objects/<md5>  (+ <md5>.meta)     content index: a hard link to every file the platform holds
                                      (merged or simply uploaded over HTTP, or written over SFTP)
    tmp/                              uploads and merges in progress, never visible in a space

Everything here is blocking; the HTTP layer calls it through `asyncio.to_thread`. Errors a
client may cause raise `StorageError` with the Chinese message the platform would show.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_READ_BLOCK = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON "\\udcff" escape: not a UTF-8 name
#: The `lenient_paths` fault for the request being served (the gate middleware sets it per
#: request; asyncio.to_thread carries it into the storage threads). Off: the house reading.
LENIENT_PATHS: ContextVar[bool] = ContextVar("lenient_paths", default=False)
_MAX_NAME_BYTES = 255
_STALE_TMP_SECONDS = 24 * 3600


class StorageError(Exception):
    """A refused operation; `str(error)` is the message for the client."""


@dataclass(frozen=True)
class Space:
    """A file space: a user's private one (owner = userId) or a tenant's public one (tenantId)."""

    kind: Literal["private", "public"]
    owner_id: int

    @property
    def key(self) -> str:
        """Directory name of the space's chunk store, e.g. `private-5`."""
        return f"{self.kind}-{self.owner_id}"


@dataclass(frozen=True)
class Entry:
    """One item of a folder listing."""

    name: str
    is_dir: bool
    size: int
    mtime: float


def folder_entries(folder: Path) -> list[Entry]:
    """The entries of an existing folder on disk: folders first, then by name."""
    entries = []
    with os.scandir(folder) as it:
        for item in it:
            try:
                st = item.stat()
                is_dir = item.is_dir()
            except OSError:
                continue  # vanished while listing
            entries.append(Entry(item.name, is_dir, 0 if is_dir else st.st_size, st.st_mtime))
    entries.sort(key=lambda e: (not e.is_dir, e.name))
    return entries


@dataclass(frozen=True)
class HashedFile:
    """A finished temp file under tmp/, with its md5 and size."""

    path: Path
    md5: str
    size: int


def split_path(path: str) -> tuple[str, ...]:
    """Components of a space-relative path; raises StorageError on a path the platform refuses.

    Doubled, leading and trailing `/` are fine; `.`/`..`, control characters and `\\` are refused
    even where they would stay inside the space (protocol.md §6), and so is text that is not
    UTF-8. Under the `lenient_paths` fault `\\` is an ordinary character and `.`/`..` are
    resolved, never above the space's root, as a lax platform would.
    """
    lenient = LENIENT_PATHS.get()
    if "\\" in path and not lenient:
        raise StorageError("路径不能包含反斜杠")
    if _CONTROL.search(path):
        raise StorageError("路径不能包含控制字符")
    if _SURROGATE.search(path):
        raise StorageError("路径不是合法的UTF-8")
    parts: list[str] = []
    for part in path.split("/"):
        if part in (".", "..") and not lenient:
            raise StorageError("路径不能包含 . 或 ..")
        if part == "..":
            del parts[-1:]
        elif part and part != ".":
            if len(part.encode("utf-8")) > _MAX_NAME_BYTES:
                raise StorageError("文件名过长")
            parts.append(part)
    return tuple(parts)


def check_name(name: str) -> str:
    """A single file or folder name (no `/`), else StorageError."""
    if not name:
        raise StorageError("名称不能为空")
    if "/" in name:
        raise StorageError("名称不能包含 /")
    if name in (".", ".."):
        raise StorageError("路径不能包含 . 或 ..")
    split_path(name)
    return name


def display_path(parts: tuple[str, ...]) -> str:
    """`/a/b` form of a space-relative path (`/` for the root)."""
    return "/" + "/".join(parts)


class HashingWriter:
    """A temp file outside every space that md5-hashes what is written to it."""

    def __init__(self, tmp_dir: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="up-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append `data` (call off the event loop for large data)."""
        self._file.write(data)
        self._md5.update(data)
        self.size += len(data)

    def finish(self) -> HashedFile:
        """Close the file and return it with its digest."""
        self._file.close()
        return HashedFile(self.path, self._md5.hexdigest(), self.size)

    def discard(self) -> None:
        """Close and delete the file (an aborted or refused upload)."""
        self._file.close()
        self.path.unlink(missing_ok=True)


class Storage:
    """Spaces, chunk store and content index under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spaces_dir = root / "spaces"
        self.chunks_dir = root / "chunks"
        self.objects_dir = root / "objects"
        self.tmp_dir = root / "tmp"
        for d in (self.spaces_dir, self.chunks_dir, self.objects_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._sweep_tmp()

    # -- spaces ----------------------------------------------------------------------------

    def space_root(self, space: Space) -> Path:
        """The space's root directory (created on first use, as the platform provisions it)."""
        path = self.spaces_dir / space.kind / str(space.owner_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolve(self, space: Space, parts: tuple[str, ...]) -> Path:
        """The disk path of `parts` in `space`; refuses a symlink that leads out of the space."""
        root = self.space_root(space)
        path = root.joinpath(*parts)
        real_root = os.path.realpath(root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise StorageError("路径越界")
        return path

    def folder(self, space: Space, parts: tuple[str, ...]) -> Path:
        """An existing folder of `space`, else StorageError."""
        path = self.resolve(space, parts)
        if not path.is_dir():
            raise StorageError(f"文件夹不存在：{display_path(parts)}")
        return path

    def list_folder(self, space: Space, parts: tuple[str, ...]) -> list[Entry]:
        """Entries of a folder: folders first, then by name."""
        return folder_entries(self.folder(space, parts))

    def make_folder(self, space: Space, parent: tuple[str, ...], name: str) -> None:
        """Create one folder level; refused ("文件夹已存在") when it is there already."""
        target = self.folder(space, parent) / check_name(name)
        if target.is_dir():
            raise StorageError("文件夹已存在")
        if target.exists() or target.is_symlink():
            raise StorageError("同名文件已存在")
        try:
            target.mkdir()
        except FileExistsError:
            raise StorageError("文件夹已存在") from None

    def delete(self, space: Space, paths: list[tuple[str, ...]]) -> None:
        """Delete files and folders (recursively); all paths are checked before any is deleted."""
        targets = []
        for parts in paths:
            if not parts:
                raise StorageError("不能删除根目录")
            path = self.resolve(space, parts)
            if not path.exists() and not path.is_symlink():
                raise StorageError(f"文件或文件夹不存在：{display_path(parts)}")
            targets.append(path)
        for path in targets:
            # An earlier target may have held this one: a vanished path is already deleted.
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def place_upload(self, space: Space, folder: tuple[str, ...], name: str, upload: HashedFile) -> None:
        """Move a finished simple upload to `folder/name`, replacing a file there."""
        target = self._file_target(space, folder, name)
        if upload.size:
            self._remember(upload.path, upload.md5)
        os.replace(upload.path, target)

    # -- chunks ----------------------------------------------------------------------------

    def new_writer(self) -> HashingWriter:
        """A temp file for an incoming upload body."""
        return HashingWriter(self.tmp_dir)

    def chunk_dir(self, space: Space, file_md5: str) -> Path:
        """Where the chunks of (space, fileMd5) are kept."""
        return self.chunks_dir / space.key / file_md5

    def store_chunk(self, space: Space, file_md5: str, index: int, chunk: HashedFile) -> None:
        """Keep a verified chunk; re-sending an index replaces it."""
        d = self.chunk_dir(space, file_md5)
        d.mkdir(parents=True, exist_ok=True)
        target = d / str(index)
        os.replace(chunk.path, target)
        st = target.stat()
        _write_json(d / f"{index}.md5", {"md5": chunk.md5, "size": st.st_size, "mtime_ns": st.st_mtime_ns})

    def received_chunks(self, space: Space, file_md5: str) -> dict[int, str]:
        """index -> md5 of every chunk kept for (space, fileMd5)."""
        d = self.chunk_dir(space, file_md5)
        if not d.is_dir():
            return {}
        found = {}
        for item in d.iterdir():
            if item.name.isdigit():
                md5 = self._chunk_md5(item)
                if md5 is not None:
                    found[int(item.name)] = md5
        return dict(sorted(found.items()))

    def drop_chunks(self, space: Space, file_md5: str) -> None:
        """Forget the chunks of (space, fileMd5) after a successful merge."""
        shutil.rmtree(self.chunk_dir(space, file_md5), ignore_errors=True)

    def merge(
        self, space: Space, folder: tuple[str, ...], name: str, file_md5: str, size: int, total: int
    ) -> bool:
        """Make `folder/name` hold the file: from the content index, else from chunks 0..total-1.

        Returns True for an instant upload (content already held). On a missing chunk or a
        mismatch raises StorageError and keeps the chunks. The target appears atomically.
        """
        target = self._file_target(space, folder, name)
        held = self.held_object(file_md5, size)
        if held is not None:
            tmp = self._tmp_name("link-")
            os.link(held, tmp)
            os.replace(tmp, target)
            self.drop_chunks(space, file_md5)
            return True
        d = self.chunk_dir(space, file_md5)
        parts = [d / str(i) for i in range(total)]
        missing = [i for i, p in enumerate(parts) if not p.is_file()]
        if missing:
            shown = ", ".join(map(str, missing[:20]))
            raise StorageError(f"分片缺失：{shown}")
        sizes = [p.stat().st_size for p in parts]
        # House reading: every chunk but the last has one size, the last is not larger.
        if any(s != sizes[0] for s in sizes[:-1]) or sizes[-1] > sizes[0]:
            raise StorageError("分片大小不一致")
        if sum(sizes) != size:
            raise StorageError(f"文件大小不符：分片共 {sum(sizes)} 字节，fileSize 为 {size}")
        writer = self.new_writer()
        try:
            for p in parts:
                with open(p, "rb") as f:
                    while block := f.read(_READ_BLOCK):
                        writer.write(block)
        except BaseException:
            writer.discard()
            raise
        merged = writer.finish()
        if merged.md5 != file_md5 or merged.size != size:
            merged.path.unlink(missing_ok=True)
            raise StorageError("文件MD5校验失败")
        self._remember(merged.path, file_md5)
        os.replace(merged.path, target)
        self.drop_chunks(space, file_md5)
        return False

    # -- content index ---------------------------------------------------------------------

    def held_object(self, md5: str, size: int) -> Path | None:
        """The stored copy of content (md5, size), if the platform holds it."""
        obj = self.objects_dir / md5
        meta_path = self.objects_dir / f"{md5}.meta"
        try:
            st = obj.stat()
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        # The object is a hard link to a visible file: if that file was rewritten in place
        # (e.g. over SFTP), the object changed with it and no longer holds this content.
        if meta != {"size": st.st_size, "mtime_ns": st.st_mtime_ns}:
            obj.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None
        return obj if st.st_size == size else None

    def index_written(self, path: Path) -> str | None:
        """Index a file written outside the HTTP API (over SFTP) as held content; returns its md5.

        House reading: the platform holds what its SFTP service wrote, as it holds merged
        uploads, so `checkFileExist` reports that content (md5, size) as held. Blocking: hashes
        the file. Returns None for an empty file or one that changed while it was hashed.
        """
        try:
            before = path.stat()
        except OSError:
            return None
        if before.st_size == 0:
            return None
        md5 = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(_READ_BLOCK):
                md5.update(block)
        digest = md5.hexdigest()
        if self.held_object(digest, before.st_size) is not None:
            return digest  # keep the copy indexed first: rewriting this one must not unindex it
        tmp = self._tmp_name("obj-")
        os.link(path, tmp)
        st = tmp.stat()  # the linked inode: a write after this makes held_object drop the entry
        if (st.st_ino, st.st_size, st.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
            tmp.unlink(missing_ok=True)
            return None
        _write_json(self.objects_dir / f"{digest}.meta", {"size": st.st_size, "mtime_ns": st.st_mtime_ns})
        os.replace(tmp, self.objects_dir / digest)
        return digest

    def _remember(self, path: Path, md5: str) -> None:
        """Index `path` (about to become visible) as the content `md5`."""
        st = path.stat()
        tmp = self._tmp_name("obj-")
        os.link(path, tmp)
        _write_json(self.objects_dir / f"{md5}.meta", {"size": st.st_size, "mtime_ns": st.st_mtime_ns})
        os.replace(tmp, self.objects_dir / md5)

    # -- internals -------------------------------------------------------------------------

    def _file_target(self, space: Space, folder: tuple[str, ...], name: str) -> Path:
        target = self.folder(space, folder) / check_name(name)
        if target.is_dir() and not target.is_symlink():
            raise StorageError("同名文件夹已存在")
        return target

    def _tmp_name(self, prefix: str) -> Path:
        return self.tmp_dir / f"{prefix}{secrets.token_hex(8)}"

    def _chunk_md5(self, chunk: Path) -> str | None:
        """A chunk's md5 from its sidecar, recomputed (and re-recorded) when that is stale."""
        sidecar = chunk.with_name(f"{chunk.name}.md5")
        try:
            st = chunk.stat()
        except OSError:
            return None
        try:
            meta = json.loads(sidecar.read_text())
            if meta["size"] == st.st_size and meta["mtime_ns"] == st.st_mtime_ns:
                return str(meta["md5"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        md5 = hashlib.md5()
        with open(chunk, "rb") as f:
            while block := f.read(_READ_BLOCK):
                md5.update(block)
        _write_json(sidecar, {"md5": md5.hexdigest(), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        return md5.hexdigest()

    def _sweep_tmp(self) -> None:
        """Remove temp files left by a crashed run (old ones only: a sibling may be running)."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        for item in self.tmp_dir.iterdir():
            try:
                if item.stat().st_mtime < cutoff:
                    item.unlink()
            except OSError:
                pass


def _write_json(path: Path, value: object) -> None:
    """Write a small JSON file atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
