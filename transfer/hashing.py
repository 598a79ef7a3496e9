"""Streaming md5 in one read pass, chunk md5s, and the cheap xxhash fingerprint.

Everything here blocks: callers run it in a thread (asyncio.to_thread), never on the loop.
hashlib releases the GIL for large updates, so a hashing thread runs beside the uploads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xxhash

from .errors import LocalFileChanged
from .models import Digest, LocalFile

READ_BLOCK = 1 << 20  # 1 MiB: large enough for md5sum's speed, small enough to stay flat
SAMPLE = 64 << 10  # fingerprint samples: head, middle and tail


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


def md5_hex(data: bytes | memoryview) -> str:
    return hashlib.md5(data).hexdigest()


def hash_file(local: LocalFile, on_read: Callable[[int], None] | None = None) -> Digest:
    """md5 of the whole file in one pass; raises LocalFileChanged if it changed meanwhile.

    `on_read(n)`, when given, is called (in this thread) after each block of n bytes is hashed.
    """
    md5 = hashlib.md5()
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    total = 0
    with open(local.path, "rb", buffering=0) as f:
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        while True:
            n = f.readinto(buf)
            if not n:
                break
            md5.update(view[:n])
            total += n
            if on_read is not None:
                on_read(n)
    after = stat_file(local.path, local.rel)
    if total != local.size or not after.same_stat(local):
        raise LocalFileChanged(f"{local.rel} changed while it was hashed")
    return Digest(md5=md5.hexdigest(), fingerprint=fingerprint(local.path, local.size))


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
    """`length` bytes of a file at `offset` whose md5 is known: sent by streaming, never held whole."""

    path: Path | str
    offset: int
    length: int
    md5: str
