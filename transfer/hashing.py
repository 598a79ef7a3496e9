"""Streaming md5 in one read pass, chunk md5s, and the cheap xxhash fingerprint.

Everything here blocks: callers run it in a thread (asyncio.to_thread), never on the loop.
hashlib releases the GIL for large updates, so a hashing thread runs beside the uploads.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import xxhash

from .errors import LocalFileChanged
from .models import Digest, LocalFile

T = TypeVar("T")

READ_BLOCK = 1 << 20  # 1 MiB: large enough for md5sum's speed, small enough to stay flat
SAMPLE = 64 << 10  # fingerprint samples: head, middle and tail
# Files of at most this size may be read and hashed on the caller's thread, the event loop's
# included: from the page cache that costs less than the hop to a thread and back (issue 15).
INLINE_MAX = SAMPLE


class InlineReads:
    """Whether a small file is read on the event loop, learned from how long such reads take.

    From the page cache a small read costs microseconds, far less than a thread hop; from a
    cold disk or a network file system it can take milliseconds, which on the loop would stall
    every transfer in flight. After a read slower than `slow` seconds the next `backoff` small
    files go to a thread (where such reads overlap); then the loop is tried again.
    """

    def __init__(self, now: Callable[[], float], *, slow: float = 0.002, backoff: int = 256) -> None:
        self._now, self._slow, self._backoff = now, slow, backoff
        self._threaded = 0  # small files still to send to a thread

    def inline(self, size: int) -> bool:
        if size > INLINE_MAX:
            return False
        if self._threaded:
            self._threaded -= 1
            return False
        return True

    def timed(self, read: Callable[[], T]) -> T:
        """`read()` on this thread, timed: a slow one sends the next small files to a thread."""
        started = self._now()
        try:
            return read()
        finally:
            if self._now() - started > self._slow:
                self._threaded = self._backoff
OnRead = Callable[[int], None]


def stat_file(path: Path | str, rel: str) -> LocalFile:
    """A LocalFile from os.stat (follows symlinks, like the scanner does for files)."""
    st = os.stat(path)
    return LocalFile(path=os.fspath(path), rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, device=st.st_dev)


def fingerprint(path: Path | str, size: int) -> str:
    """xxh3-128 over the size and three 64 KiB samples: cheap proof that content is unchanged."""
    h = xxhash.xxh3_128()
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb", buffering=0) as f:
        for offset in sorted({0, max(0, size // 2 - SAMPLE // 2), max(0, size - SAMPLE)}):
            h.update(os.pread(f.fileno(), SAMPLE, offset))
    return h.hexdigest()


def _fingerprint_whole(data: bytes) -> str:
    """fingerprint() of a file of at most SAMPLE bytes, from its content: its one sample is all of it."""
    h = xxhash.xxh3_128()
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)
    return h.hexdigest()


def md5_hex(data: bytes | memoryview) -> str:
    return hashlib.md5(data).hexdigest()


def hash_file(local: LocalFile, on_read: OnRead | None = None, *, chunk_size: int = 0) -> Digest:
    """md5 of the whole file in one read pass; raises LocalFileChanged if it changed meanwhile.

    `on_read(n)`, when given, is called (in this thread) after each block of n bytes is hashed.
    With `chunk_size`, a file of more than one chunk also gets the md5 of every chunk from the
    same read: a second hasher in its own thread takes each block as the first does, so both
    digests describe the same bytes and two cores share the work.
    """
    if local.size <= SAMPLE:
        return _hash_whole(local, on_read)
    with open(local.path, "rb", buffering=0) as f:
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        if 0 < chunk_size < local.size:
            md5, chunks, total = _md5_with_chunks(f, chunk_size, on_read)
        else:
            md5, total = _md5(f, on_read)
            chunks = ()
    after = stat_file(local.path, local.rel)
    if total != local.size or not after.same_stat(local):
        raise LocalFileChanged(f"{local.rel} changed while it was hashed")
    return Digest(md5=md5, fingerprint=fingerprint(local.path, local.size), chunks=chunks,
                  chunk_size=chunk_size if chunks else 0)


def _hash_whole(local: LocalFile, on_read: OnRead | None) -> Digest:
    """hash_file of a file of at most SAMPLE bytes: one read gives its md5 and its fingerprint.

    Cheap enough to run on the event loop (INLINE_MAX): no thread hop for a small file.
    """
    fd = os.open(local.path, os.O_RDONLY | os.O_CLOEXEC)  # no file object: half the cost here
    try:
        data = pread_full(fd, local.size + 1, 0)  # one byte more: a file that grew shows
        st = os.fstat(fd)  # the file read; the send checks the path again (ensure_unchanged)
    finally:
        os.close(fd)
    if len(data) != local.size or (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev) != local.stat_key:
        raise LocalFileChanged(f"{local.rel} changed while it was hashed")
    if on_read is not None:
        on_read(len(data))
    return Digest(md5=md5_hex(data), fingerprint=_fingerprint_whole(data), content=data)


def _md5(f: io.FileIO, on_read: OnRead | None) -> tuple[str, int]:
    """(md5, bytes read) of what is left in `f`."""
    md5 = hashlib.md5()
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    total = 0
    while n := f.readinto(buf):
        md5.update(view[:n])
        total += n
        if on_read is not None:
            on_read(n)
    return md5.hexdigest(), total


def _md5_with_chunks(f: io.FileIO, chunk_size: int, on_read: OnRead | None) -> tuple[str, tuple[str, ...], int]:
    """(md5, chunk md5s, bytes read) of what is left in `f`, from one read of each block.

    This thread reads and feeds the file's hasher; a second thread feeds the chunk hasher from
    the same buffer (hashlib releases the GIL on large updates: both cores hash). Two buffers
    alternate, so the next block is read while the other thread still hashes the last one.
    No block spans two chunks.
    """
    views = [memoryview(bytearray(READ_BLOCK)), memoryview(bytearray(READ_BLOCK))]
    jobs: queue.SimpleQueue[tuple[memoryview, bool] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
    chunks: list[str] = []

    def chunk_hasher() -> None:
        md5 = hashlib.md5()
        try:
            while (job := jobs.get()) is not None:
                block, ends_chunk = job
                md5.update(block)
                if ends_chunk:
                    chunks.append(md5.hexdigest())
                    md5 = hashlib.md5()
                done.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, which raises it
            done.put(exc)

    def handed_back() -> None:
        error = done.get()
        if error is not None:
            raise error

    md5 = hashlib.md5()
    total = 0
    busy = False  # the chunk hasher holds the other buffer
    helper = threading.Thread(target=chunk_hasher, name="hubsync-chunk-md5", daemon=True)
    helper.start()
    try:
        for turn in itertools.count():
            view = views[turn & 1]
            n = f.readinto(view[: min(READ_BLOCK, chunk_size - total % chunk_size)])
            if busy:
                handed_back()
                busy = False
            if not n:
                break
            block = view[:n]
            total += n
            jobs.put((block, total % chunk_size == 0))
            busy = True
            md5.update(block)
            if on_read is not None:
                on_read(n)
        if total % chunk_size:  # the last, shorter chunk
            jobs.put((views[0][:0], True))
            handed_back()
    finally:
        jobs.put(None)
        helper.join()
    return md5.hexdigest(), tuple(chunks), total


def pread_full(fd: int, length: int, offset: int) -> bytes:
    """Up to `length` bytes at `offset`, retrying short reads; shorter only at end of file."""
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def read_span(path: Path | str, offset: int, length: int) -> bytes:
    """Exactly `length` bytes at `offset`, or LocalFileChanged if the file got shorter."""
    with open(path, "rb", buffering=0) as f:
        data = pread_full(f.fileno(), length, offset)
    if len(data) < length:
        raise LocalFileChanged(f"{path} is shorter than expected")
    return data


SPAN_PIECE = 2 << 20


def md5_of_span(path: Path | str, offset: int, length: int, piece: int = SPAN_PIECE) -> str:
    """md5 of `length` bytes at `offset`, read a piece at a time (nothing retained)."""
    md5 = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        done = 0
        while done < length:
            data = pread_full(f.fileno(), min(piece, length - done), offset + done)
            if not data:
                raise LocalFileChanged(f"{path} is shorter than expected")
            md5.update(data)
            done += len(data)
    return md5.hexdigest()


@dataclass(frozen=True)
class FileSpan:
    """`length` bytes of a file at `offset` whose md5 is known: sent by streaming, never held whole.

    `verify`: check the bytes read against `md5` while streaming (an md5 pass). Off where the
    receiver checks them itself and refuses a mismatch (uploadFile's chunkMd5).
    """

    path: Path | str
    offset: int
    length: int
    md5: str
    verify: bool = True
