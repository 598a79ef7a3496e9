"""Walk a source into LocalFile values: excludes, symlinks, special and unreadable entries."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transfer.models import LocalFile
from transfer.remotepath import display, is_part_name


@dataclass
class ScanResult:
    """Regular files found, and the entries that could not be taken (each with a reason)."""

    files: list[LocalFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (display(rel), reason)
    directories: list[str] = field(default_factory=list)
    # Symbolic links not followed because they lead outside the source (see `scan`): not a
    # failure, and never a reason to delete what the remote holds under that path.
    links: list[str] = field(default_factory=list)

    def under_link(self, rel: str) -> bool:
        """Whether `rel` is a skipped link or lies below one (its remote copy is left alone)."""
        return any(rel == link or rel.startswith(link + "/") for link in self.links)


def source_root(text: str | os.PathLike[str]) -> Path:
    """SRC as given on the command line, made absolute: the one spelling that keys the journal.

    `abspath` (not `resolve`): `data`, `./data` and `/home/u/data` are one tree, while a SRC
    that is itself a symbolic link keeps its own name (a link to a file is sent under that name).
    """
    return Path(os.path.abspath(os.path.expanduser(os.fspath(text))))


class Excludes:
    """gitignore-style patterns, matched against '/'-separated paths below the source.

    With `part_tag` (this agent's, `transfer.agenttag`), hubsync's own part files are excluded
    too: never sent, never deleted by --delete. Only names with that tag: a user's file that
    merely ends in `.hubsync-part` is a file like any other.
    """

    def __init__(self, patterns: list[str], part_tag: str | None = None) -> None:
        self.patterns = list(patterns)
        self.spec = None
        if self.patterns:  # imported only when used: pathspec is a tenth of a no-op's start-up
            import pathspec

            self.spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        self.part_tag = part_tag

    def excluded(self, rel: str, is_dir: bool = False) -> bool:
        if self.part_tag is not None and not is_dir and is_part_name(rel.rsplit("/", 1)[-1], self.part_tag):
            return True
        if self.spec is None:
            return False
        return self.spec.match_file(rel + "/" if is_dir else rel)


@dataclass
class Folder:
    """One folder of a walk: its regular files (by name) and what in it could not be taken."""

    rel: str  # "" for the source itself
    files: list[LocalFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (display(rel), reason)
    directories: list[str] = field(default_factory=list)  # its subfolders that are walked too
    links: list[str] = field(default_factory=list)  # see ScanResult.links


def scan(source: Path, excludes: Excludes, *, follow_symlinks: bool = False, root: Path | None = None) -> ScanResult:
    """Walk `source` (a folder or a single file) whole. Blocking: call it in a thread.

    A tree of millions of files is better walked with `walk` (or `folders`), a folder at a time.
    """
    result = ScanResult()
    for folder in walk(source, excludes, follow_symlinks=follow_symlinks, root=root):
        result.files += folder.files
        result.problems += folder.problems
        result.directories += folder.directories
        result.links += folder.links
    result.files.sort(key=lambda f: f.rel)
    return result


def walk(source: Path, excludes: Excludes, *, follow_symlinks: bool = False,
         root: Path | None = None) -> Iterator[Folder]:
    """Walk `source` (a folder or a single file), a folder at a time. Blocking: iterate it in a thread.

    A symbolic link that leads outside `root` (default: `source`) is not followed unless
    `follow_symlinks`: it goes to `links` (reported, not sent, not deleted remotely). Links
    inside the tree are followed, each folder at most once (a loop is a problem). What is held
    between two folders is the folders still to walk, never the files already walked.
    """
    inside = os.path.realpath(root or source)
    try:
        st = os.stat(source)
    except OSError as exc:
        yield Folder("", problems=[(display(str(source)), f"cannot read source: {exc.strerror}")])
        return
    if stat.S_ISREG(st.st_mode):
        yield Folder("", files=[_local(os.fspath(source), source.name, st)])
        return
    if not stat.S_ISDIR(st.st_mode):
        yield Folder("", problems=[(display(str(source)), "source is not a regular file or a folder")])
        return
    visited = {(st.st_dev, st.st_ino)}
    stack: list[tuple[Path, str]] = [(source, "")]
    while stack:
        folder, prefix = stack.pop()
        result = Folder(prefix)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((display(prefix or "."), f"unreadable folder: {exc.strerror}"))
            yield result
            continue
        for entry in entries:
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            if not follow_symlinks and entry.is_symlink() and not _within(os.path.realpath(entry.path), inside):
                if os.path.lexists(os.path.realpath(entry.path)) and not excludes.excluded(rel):
                    result.links.append(rel)
                    continue
            try:
                est = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if entry.is_symlink():
                    result.problems.append((display(rel), "broken symbolic link"))
                else:
                    result.problems.append((display(rel), f"cannot stat: {exc.strerror}"))
                continue
            if stat.S_ISDIR(est.st_mode):
                if excludes.excluded(rel, is_dir=True):
                    continue
                key = (est.st_dev, est.st_ino)
                if key in visited:
                    # A symlink back into the tree (or a bind-mount loop): never followed twice.
                    result.problems.append((display(rel), "folder already visited (symbolic link loop); skipped"))
                    continue
                visited.add(key)
                result.directories.append(rel)
                stack.append((Path(entry.path), rel))
            elif stat.S_ISREG(est.st_mode):
                if not excludes.excluded(rel):
                    result.files.append(_local(entry.path, rel, est))
            elif not excludes.excluded(rel):
                result.problems.append((display(rel), "special file (device, socket or pipe); skipped"))
        del entries
        yield result


async def folders(source: Path, excludes: Excludes, *, follow_symlinks: bool = False,
                  ahead: int = 4) -> AsyncIterator[Folder]:
    """`walk` in its own thread, at most `ahead` folders ahead of the consumer (back-pressure):
    the walk waits while the folders it found are not taken. Leaving early stops the walk."""
    loop = asyncio.get_running_loop()
    found: asyncio.Queue[Folder | Exception | None] = asyncio.Queue()
    slots = threading.Semaphore(ahead)
    stop = threading.Event()

    def post(item: Folder | Exception | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(found.put_nowait, item)

    def produce() -> None:
        try:
            for folder in walk(source, excludes, follow_symlinks=follow_symlinks):
                while not slots.acquire(timeout=0.25):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                post(folder)
            post(None)
        except Exception as exc:  # noqa: BLE001 - whatever ends the walk is raised by the consumer
            post(exc)

    threading.Thread(target=produce, name="hubsync-walk", daemon=True).start()
    try:
        while (item := await found.get()) is not None:
            if isinstance(item, Exception):
                raise item
            slots.release()
            yield item
    finally:
        stop.set()


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _local(path: str, rel: str, st: os.stat_result) -> LocalFile:
    return LocalFile(path=path, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, device=st.st_dev)
