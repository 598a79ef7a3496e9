"""The SQLite journal: what was sent where, acknowledged chunks, cached digests.

One writer (the engine) owns a connection on one dedicated thread, so SQLite work never runs
on the event loop and never needs cross-thread locking. `JournalView` is the read-only side
that `hubsync status` opens while a daemon writes (WAL lets both proceed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from .errors import JournalError, JournalUnusable
from .models import Digest, LocalFile
from .remotepath import display

log = logging.getLogger("hubsync.journal")

T = TypeVar("T")

# Each entry migrates from version i to i+1; released entries are never edited, only appended.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE files(
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL DEFAULT '',
        local_path TEXT NOT NULL,
        remote TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        inode INTEGER NOT NULL DEFAULT 0,
        device INTEGER NOT NULL DEFAULT 0,
        md5 TEXT,
        chunk_size INTEGER,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        transport TEXT,
        resume TEXT,
        bytes_sent INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        done_at REAL,
        UNIQUE(local_path, remote)
    );
    CREATE INDEX files_remote ON files(remote);
    CREATE INDEX files_state ON files(state);
    CREATE TABLE chunks(
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        md5 TEXT NOT NULL,
        chunk_size INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        chunk_md5 TEXT NOT NULL,
        acked_at REAL NOT NULL,
        PRIMARY KEY(file_id, md5, chunk_size, idx)
    );
    CREATE TABLE digests(
        local_path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        device INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        md5 TEXT NOT NULL
    );
    """,
    # 2: one row per one-shot run (status: the last run of each remote). Append; never edit a released one.
    """
    CREATE TABLE runs(
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL DEFAULT '',
        remote TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        result TEXT,
        files_total INTEGER NOT NULL DEFAULT 0,
        files_sent INTEGER NOT NULL DEFAULT 0,
        files_skipped INTEGER NOT NULL DEFAULT 0,
        files_failed INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        bytes_sent INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_remote ON runs(job, remote, started_at);
    """,
    # 3: the file system (st_dev) of each source at its last good pass, per remote: a delete pass
    # on another one (a disk not mounted) deletes nothing.
    """
    CREATE TABLE source_devices(
        key TEXT PRIMARY KEY,
        device INTEGER NOT NULL,
        recorded_at REAL NOT NULL
    );
    """,
    # 4: the time the platform showed for a file when it was confirmed, on the platform's clock
    # (ms; NULL where it showed none): drift compares remote time with remote time, never with
    # done_at (the local clock), so a skewed platform clock neither fakes nor hides a change.
    """
    ALTER TABLE files ADD COLUMN remote_mtime_ms INTEGER;
    """,
    # 5: what a run covered, so status shows one row per remote and datahub versions by name:
    # the journal key prefix of its files (ids) and the same folder for people (names).
    """
    ALTER TABLE runs ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN shown_prefix TEXT NOT NULL DEFAULT '';
    """,
    # 6: the account ("host#uid ", the part of a journal key before the remote) in its own
    # column, so that a folder's records are found by an index (account, remote range) instead
    # of substr() over every row. UNIQUE(local_path, remote) becomes UNIQUE(account, remote,
    # local_path), whose index serves those lookups; SQLite cannot change a constraint in place,
    # so `files` is rebuilt (its chunks kept aside meanwhile: dropping `files` would cascade).
    """
    CREATE TABLE chunks_kept AS SELECT * FROM chunks;
    DROP TABLE chunks;
    CREATE TABLE files_new(
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL DEFAULT '',
        local_path TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        remote TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        inode INTEGER NOT NULL DEFAULT 0,
        device INTEGER NOT NULL DEFAULT 0,
        md5 TEXT,
        chunk_size INTEGER,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        transport TEXT,
        resume TEXT,
        bytes_sent INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        done_at REAL,
        remote_mtime_ms INTEGER,
        UNIQUE(account, remote, local_path)
    );
    INSERT INTO files_new(id,job,local_path,account,remote,size,mtime_ns,inode,device,md5,chunk_size,state,
        attempts,last_error,transport,resume,bytes_sent,created_at,updated_at,done_at,remote_mtime_ms)
    SELECT id,job,local_path,
        CASE WHEN instr(remote,' ') > 0 AND instr(substr(remote,1,instr(remote,' ')),'/') = 0
             THEN substr(remote,1,instr(remote,' ')) ELSE '' END,
        CASE WHEN instr(remote,' ') > 0 AND instr(substr(remote,1,instr(remote,' ')),'/') = 0
             THEN substr(remote,instr(remote,' ')+1) ELSE remote END,
        size,mtime_ns,inode,device,md5,chunk_size,state,attempts,last_error,transport,resume,bytes_sent,
        created_at,updated_at,done_at,remote_mtime_ms
    FROM files;
    DROP TABLE files;
    ALTER TABLE files_new RENAME TO files;
    CREATE INDEX files_state ON files(state);
    CREATE TABLE chunks(
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        md5 TEXT NOT NULL,
        chunk_size INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        chunk_md5 TEXT NOT NULL,
        acked_at REAL NOT NULL,
        PRIMARY KEY(file_id, md5, chunk_size, idx)
    );
    INSERT INTO chunks SELECT * FROM chunks_kept;
    DROP TABLE chunks_kept;
    """,
]

STATES = ("queued", "sending", "merged", "done", "failed")
# The transport of a record that failed before anything was sent: its name refused, or the
# file (or folder) could not be read. A later walk of its folder drops both kinds first.
REFUSED, UNREADABLE = "refused", "unreadable"


@dataclass(frozen=True)
class FileRecord:
    """One row of `files`."""

    id: int
    job: str
    local_path: str
    remote: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    md5: str | None
    chunk_size: int | None
    state: str
    attempts: int
    last_error: str | None
    transport: str | None
    resume: dict[str, Any]
    bytes_sent: int
    updated_at: float

    def matches(self, local: LocalFile) -> bool:
        return (self.size, self.mtime_ns, self.inode, self.device) == local.stat_key


def _store_digest(conn: sqlite3.Connection, local: LocalFile, digest: Digest) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO digests(local_path,size,mtime_ns,inode,device,fingerprint,md5)"
        " VALUES(?,?,?,?,?,?,?)",
        (display(local.path), local.size, local.mtime_ns, local.inode, local.device, digest.fingerprint, digest.md5),
    )


def split_key(key: str) -> tuple[str, str]:
    """A journal key (the engine's namespace "host#uid " + the remote) as (account, remote).

    Every remote holds a '/' before any space (`private:/...`), an account never does: so the
    account is what precedes the first space when no '/' does, else empty (a key made without a
    namespace). The same rule splits keys and key prefixes, and migration 6 applies it in SQL.
    """
    space = key.find(" ")
    if space < 0 or "/" in key[:space]:
        return "", key
    return key[: space + 1], key[space + 1 :]


def _below(prefix: str) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause and its parameters for the records whose key starts with `prefix`: an
    account and a range of remotes, which the (account, remote, local_path) index answers."""
    account, remote = split_key(prefix)
    if not remote:
        return "account=?", (account,)
    # The smallest string greater than every one that starts with `remote`.
    upper = remote[:-1] + chr(ord(remote[-1]) + 1)
    return "account=? AND remote>=? AND remote<?", (account, remote, upper)


def _key_column(conn: sqlite3.Connection) -> str:
    """The journal key as SQL: account and remote, or the one column of a journal from before
    migration 6 (`status` reads without migrating)."""
    return "account||remote" if _user_version(conn) >= 6 else "remote"


class PlanRow(NamedTuple):
    """A record's stat key (size, mtime_ns, inode, device), state and transport."""

    stat_key: tuple[int, int, int, int]
    state: str
    transport: str | None
    done_at: float | None = None  # when it was confirmed (epoch seconds, the local clock)
    remote_mtime_ms: int | None = None  # the time the platform showed for it then (its clock)


def _record(row: sqlite3.Row) -> FileRecord:
    return FileRecord(
        id=row["id"],
        job=row["job"],
        local_path=row["local_path"],
        remote=row["account"] + row["remote"],
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        inode=row["inode"],
        device=row["device"],
        md5=row["md5"],
        chunk_size=row["chunk_size"],
        state=row["state"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        transport=row["transport"],
        resume=json.loads(row["resume"]) if row["resume"] else {},
        bytes_sent=row["bytes_sent"],
        updated_at=row["updated_at"],
    )


def _connect(path: Path, *, readonly: bool = False, immutable: bool = False) -> sqlite3.Connection:
    if readonly:
        flags = "mode=ro&immutable=1" if immutable else "mode=ro"
        conn = sqlite3.connect(f"file:{path}?{flags}", uri=True, check_same_thread=False, timeout=30)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            _wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _wal(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Switch to WAL. The switch does not wait for the busy timeout: of several processes opening
    a fresh journal at once, the others find it locked for a moment, and try again (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if _code(exc) not in (_SQLITE_BUSY, _SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; on any failure a rollback, so nothing is half-written.

    SQLite may already have rolled back by itself (a full disk, for instance): the rollback is
    then skipped, and never masks the error that caused it. Inside a transaction already open
    (a group of writes, Journal._write), the block is part of that one.
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _newer(version: int, path: Path | None = None) -> JournalUnusable:
    where = f": {path}" if path is not None else ""
    return JournalUnusable(f"journal schema {version} is newer than this hubsync ({len(MIGRATIONS)}){where}")


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """Bring the schema to the newest version; returns it.

    All steps run in one immediate transaction that reads the version again once it holds the
    write lock: of two processes starting on a fresh state dir, the second waits for the first
    and then finds the schema done.
    """
    newest = len(MIGRATIONS)
    version = _user_version(conn)
    if version > newest:
        raise _newer(version, path)
    if version == newest:
        return newest
    with _transaction(conn):
        version = _user_version(conn)
        if version > newest:
            raise _newer(version, path)
        for target in range(version, newest):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version={newest}")
    return newest


# SQLite's primary result codes that matter here (sqlite3.h).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 3, 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_corrupt(exc: BaseException) -> bool:
    """Whether a SQLite error says the file is damaged or not a database at all."""
    return _code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _disk_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < (64 << 10)
    except OSError:
        return False


def journal_error(exc: sqlite3.Error | OSError, path: Path) -> JournalError:
    """One clear line for what went wrong with the journal at `path` (its directory is the state dir)."""
    directory = path.parent
    code = _code(exc)
    err = exc.errno if isinstance(exc, OSError) else None
    reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    if code == _SQLITE_FULL or err in (errno.ENOSPC, errno.EDQUOT) or (
        code == _SQLITE_IOERR and _disk_full(directory)
    ):
        return JournalError(f"no space left on device: {directory} (state dir)")
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM) or err in (errno.EROFS, errno.EACCES, errno.EPERM):
        return JournalUnusable(f"state dir is not writable: {directory} ({reason})")
    if is_corrupt(exc):
        return JournalError(f"journal is corrupt: {path} ({reason}); the next run moves it aside and starts a new one")
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return JournalError(f"journal is busy: {path} stayed locked by another process ({reason})")
    return JournalError(f"journal {path}: {reason}")


class _Corrupt(Exception):
    """The journal failed its integrity check at open."""


def _check(conn: sqlite3.Connection) -> None:
    """Raise _Corrupt unless the file is a sound SQLite database (PRAGMA quick_check: ~35 ms per 50,000 files)."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            raise _Corrupt(str(exc)) from exc
        raise
    if rows != ["ok"]:
        raise _Corrupt("; ".join(" ".join(str(r).replace("***", "").split()) for r in rows))


def _open_checked(path: Path) -> sqlite3.Connection:
    """Connect, check and migrate; _Corrupt when the file is damaged."""
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            raise _Corrupt(str(exc)) from exc
        raise
    try:
        _check(conn)
        migrate(conn, path)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError) and is_corrupt(exc):
            raise _Corrupt(str(exc)) from exc
        raise
    return conn


SIDE_FILES = ("-wal", "-shm")


def open_journal(path: Path) -> sqlite3.Connection:
    """The writer's connection. A damaged journal is only a lost cache (the platform holds the
    truth): it is moved aside as `journal.sqlite3.corrupt-<UTC time>` (with its -wal and -shm),
    with one warning, and a new one is started."""
    try:
        return _open_checked(path)
    except _Corrupt:
        pass
    # Under a lock file, so that of two processes finding it damaged, one moves it aside and
    # the other then uses the new one (instead of moving that aside too).
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            return _open_checked(path)
        except _Corrupt as exc:
            reason = str(exc)
        aside = _move_aside(path)
        log.warning("journal %s is corrupt (%s): moved it aside to %s and started a new one", path, reason, aside.name)
        return _open_checked(path)


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, aside)
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


def corrupt_copies(path: Path) -> list[Path]:
    """Journals found damaged and moved aside beside `path`, oldest first."""
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(SIDE_FILES))


class Journal:
    """The engine's journal. Every method is a coroutine that runs on the journal's own thread."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubsync-journal")
        self._conn: sqlite3.Connection | None = None
        self._queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._group: asyncio.Future[None] | None = None  # a group of writes in the journal's thread

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one transaction with the writes queued in the same turn of the event loop
        or while the previous group ran.

        Group commit: the per-file writes of many files in flight (begin, merged, chunk acks)
        cost one thread hop and one transaction per group instead of one each. Each caller
        returns once its group is committed; a group that fails fails each of its callers.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append((fn, future))
        if self._group is None:
            self._group = loop.create_future()
            # After this turn of the loop: the writes of the other tasks that run in it join.
            loop.call_soon(self._next_group, loop)
        return await future

    def _next_group(self, loop: asyncio.AbstractEventLoop) -> None:
        group, self._queued = self._queued, []
        fns = [fn for fn, _ in group]

        def run(conn: sqlite3.Connection) -> list[Any]:
            with _transaction(conn):
                return [fn(conn) for fn in fns]

        def finished(job: asyncio.Future[list[Any]]) -> None:  # on the loop
            error = job.exception() if not job.cancelled() else asyncio.CancelledError()
            for i, (_, future) in enumerate(group):
                if future.done():
                    continue  # its caller was cancelled; the write itself went on, as with _run
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(job.result()[i])
            if self._queued:
                self._next_group(loop)
            elif self._group is not None:
                self._group.set_result(None)
                self._group = None

        loop.run_in_executor(self._executor, self._in_thread, run).add_done_callback(finished)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Every SQLite or OS error of the journal becomes a JournalError: a run-level failure
        # (a full or read-only state dir), never mistaken for one file's.
        try:
            if self._conn is None:
                self._conn = open_journal(self.path)
            return fn(self._conn)
        except (sqlite3.Error, OSError) as exc:
            raise journal_error(exc, self.path) from exc

    async def open(self) -> Journal:
        try:
            await self._run(lambda conn: None)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        return self

    async def close(self) -> None:
        def _close(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._group is not None:
            await asyncio.shield(self._group)  # the writes queued before closing still go in
        if self._conn is not None:
            await self._run(_close)
        self._executor.shutdown(wait=True)

    # -- digests ---------------------------------------------------------------------------
    async def cached_digest(self, local: LocalFile) -> Digest | None:
        """The stored digest of this path if its stat is unchanged (the caller checks the fingerprint)."""

        def q(conn: sqlite3.Connection) -> Digest | None:
            row = conn.execute("SELECT * FROM digests WHERE local_path=?", (display(local.path),)).fetchone()
            if row is None:
                return None
            if (row["size"], row["mtime_ns"], row["inode"], row["device"]) != local.stat_key:
                return None
            return Digest(md5=row["md5"], fingerprint=row["fingerprint"])

        return await self._run(q)

    async def cached_digests(self, paths: list[str]) -> dict[str, tuple[tuple[int, int, int, int], Digest]]:
        """path -> (stat key, digest) for every path the cache holds: one query for a whole run."""

        def q(conn: sqlite3.Connection) -> dict[str, tuple[tuple[int, int, int, int], Digest]]:
            found: dict[str, tuple[tuple[int, int, int, int], Digest]] = {}
            if not conn.execute("SELECT 1 FROM digests LIMIT 1").fetchone():
                return found  # a first run: nothing to look up
            for start in range(0, len(paths), 500):
                batch = paths[start : start + 500]
                marks = ",".join("?" * len(batch))
                for row in conn.execute(
                    "SELECT local_path,size,mtime_ns,inode,device,fingerprint,md5 FROM digests"
                    f" WHERE local_path IN ({marks})", batch,
                ):
                    found[row[0]] = ((row[1], row[2], row[3], row[4]), Digest(md5=row[6], fingerprint=row[5]))
            return found

        return await self._run(q)

    async def store_digest(self, local: LocalFile, digest: Digest) -> None:
        await self._write(lambda conn: _store_digest(conn, local, digest))

    async def forget_digest(self, local_path: str) -> None:
        """Drop the cached digest of a path whose content proved different from it."""

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM digests WHERE local_path=?", (local_path,))

        await self._write(w)

    # -- files -----------------------------------------------------------------------------
    async def records_under(self, remote_prefix: str) -> dict[tuple[str, str], FileRecord]:
        """Every file record whose remote starts with `remote_prefix`, keyed by (local, remote)."""

        where, params = _below(remote_prefix)

        def q(conn: sqlite3.Connection) -> dict[tuple[str, str], FileRecord]:
            records = (_record(r) for r in conn.execute(f"SELECT * FROM files WHERE {where}", params))
            return {(r.local_path, r.remote): r for r in records}

        return await self._run(q)

    async def plan_rows(self, remote_prefix: str) -> dict[tuple[str, str], PlanRow]:
        """What planning needs of every record under `remote_prefix`: stat key, state, transport.

        Lighter than records_under (no resume blob parsed, no FileRecord built).
        """
        where, params = _below(remote_prefix)

        def q(conn: sqlite3.Connection) -> dict[tuple[str, str], PlanRow]:
            rows = conn.execute(
                "SELECT local_path,account||remote,size,mtime_ns,inode,device,state,transport,done_at,remote_mtime_ms"
                f" FROM files WHERE {where}", params,
            )
            return {(r[0], r[1]): PlanRow((r[2], r[3], r[4], r[5]), r[6], r[7], r[8], r[9]) for r in rows}

        return await self._run(q)

    async def plan_rows_of(self, keys: list[str]) -> dict[tuple[str, str], PlanRow]:
        """plan_rows for these journal keys only (one folder's files): index lookups, a few
        hundred keys a query, so a plan costs what the folder holds, not what the journal holds."""

        def q(conn: sqlite3.Connection) -> dict[tuple[str, str], PlanRow]:
            found: dict[tuple[str, str], PlanRow] = {}
            by_account: dict[str, list[str]] = {}
            for key in keys:
                account, remote = split_key(key)
                by_account.setdefault(account, []).append(remote)
            for account, remotes in by_account.items():
                for start in range(0, len(remotes), 500):
                    batch = remotes[start : start + 500]
                    for r in conn.execute(
                        "SELECT local_path,remote,size,mtime_ns,inode,device,state,transport,done_at,remote_mtime_ms"
                        f" FROM files WHERE account=? AND remote IN ({','.join('?' * len(batch))})", (account, *batch),
                    ):
                        found[(r[0], account + r[1])] = PlanRow((r[2], r[3], r[4], r[5]), r[6], r[7], r[8], r[9])
            return found

        return await self._run(q)

    async def resume_parts(self, remote_prefix: str, transport: str) -> list[FileRecord]:
        """Records under `remote_prefix`, in any state, whose resume blob names a `transport` temp file."""

        where, params = _below(remote_prefix)

        def q(conn: sqlite3.Connection) -> list[FileRecord]:
            rows = conn.execute(f"SELECT * FROM files WHERE {where} AND resume IS NOT NULL", params).fetchall()
            records = [_record(r) for r in rows]
            return [r for r in records if r.resume.get("transport") == transport and r.resume.get("part")]

        return await self._run(q)

    async def get(self, local_path: str, remote: str) -> FileRecord | None:
        account, path = split_key(remote)

        def q(conn: sqlite3.Connection) -> FileRecord | None:
            row = conn.execute(
                "SELECT * FROM files WHERE account=? AND remote=? AND local_path=?", (account, path, local_path)
            ).fetchone()
            return _record(row) if row else None

        return await self._run(q)

    async def begin(self, local: LocalFile, remote: str, *, job: str = "", md5: str | None = None,
                    chunk_size: int | None = None, transport: str | None = None,
                    digest: Digest | None = None) -> FileRecord:
        """Record that `local` is being sent to `remote` (insert or update), state 'sending'.

        The resume blob survives only while the content (md5) and the chunk size are the same.
        """
        now = self._clock()
        account, path = split_key(remote)
        where = "account=? AND remote=? AND local_path=?"

        def w(conn: sqlite3.Connection) -> FileRecord:
            with _transaction(conn):
                if digest is not None:  # a freshly computed md5 is cached in the same transaction
                    _store_digest(conn, local, digest)
                row = conn.execute(f"SELECT * FROM files WHERE {where}", (account, path, display(local.path))).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO files(job,local_path,account,remote,size,mtime_ns,inode,device,md5,chunk_size,"
                        "state,transport,created_at,updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job, display(local.path), account, path, local.size, local.mtime_ns, local.inode, local.device,
                         md5, chunk_size, "sending", transport, now, now),
                    )
                else:
                    same = row["md5"] == md5 and row["chunk_size"] == chunk_size
                    conn.execute(
                        "UPDATE files SET job=?,size=?,mtime_ns=?,inode=?,device=?,md5=?,chunk_size=?,state='sending',"
                        "attempts=attempts+1,transport=COALESCE(?,transport),resume=?,updated_at=?,done_at=NULL,"
                        "remote_mtime_ms=NULL WHERE id=?",
                        (job, local.size, local.mtime_ns, local.inode, local.device, md5, chunk_size, transport,
                         row["resume"] if same else None, now, row["id"]),
                    )
                row = conn.execute(f"SELECT * FROM files WHERE {where}", (account, path, display(local.path))).fetchone()
            return _record(row)

        return await self._write(w)

    async def update(self, file_id: int, **fields: Any) -> None:
        """Set columns of one file row (state, last_error, transport, resume (dict), bytes_sent...)."""
        allowed = {"state", "last_error", "transport", "resume", "bytes_sent", "md5", "chunk_size", "job"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown journal fields {unknown}")
        if "resume" in fields and fields["resume"] is not None:
            fields["resume"] = json.dumps(fields["resume"], sort_keys=True)
        now = self._clock()
        if fields.get("state") == "done":
            fields["done_at"] = now
        fields["updated_at"] = now
        cols = ",".join(f"{k}=?" for k in fields)

        def w(conn: sqlite3.Connection) -> None:
            conn.execute(f"UPDATE files SET {cols} WHERE id=?", (*fields.values(), file_id))

        await self._write(w)

    async def update_many(self, file_ids: list[int], **fields: Any) -> None:
        """Set the same columns on several rows in one transaction (e.g. a confirmed batch: done)."""
        allowed = {"state", "last_error"}
        if set(fields) - allowed:
            raise ValueError(f"update_many sets only {sorted(allowed)}")
        now = self._clock()
        if fields.get("state") == "done":
            fields["done_at"] = now
        fields["updated_at"] = now
        cols = ",".join(f"{k}=?" for k in fields)
        values = tuple(fields.values())
        await self._write_many(f"UPDATE files SET {cols} WHERE id=?", [(*values, i) for i in file_ids])

    async def mark_done(self, confirmed: list[tuple[int, int | None]]) -> None:
        """(file id, the platform's time for it): confirmed files, state 'done', in one transaction."""
        now = self._clock()
        await self._write_many(
            "UPDATE files SET state='done',last_error=NULL,done_at=?,updated_at=?,remote_mtime_ms=? WHERE id=?",
            [(now, now, mtime_ms, file_id) for file_id, mtime_ms in confirmed],
        )

    async def requeue(self, keys: list[tuple[str, str]]) -> None:
        """(local path, remote) of done files the platform no longer holds as sent: 'queued', so
        the next run (or a restarted daemon) sends them again instead of skipping them."""
        now = self._clock()
        await self._write_many(
            "UPDATE files SET state='queued',done_at=NULL,remote_mtime_ms=NULL,updated_at=?"
            " WHERE account=? AND remote=? AND local_path=? AND state='done'",
            [(now, *split_key(remote), local) for local, remote in keys],
        )

    async def adopt_remote_times(self, times: list[tuple[str, str, int]]) -> None:
        """(local path, remote, ms): the platform's time for done files confirmed before the journal
        kept one (a listing just showed them as sent), the baseline later listings are held to."""
        await self._write_many(
            "UPDATE files SET remote_mtime_ms=? WHERE account=? AND remote=? AND local_path=? AND state='done'"
            " AND remote_mtime_ms IS NULL", [(ms, *split_key(remote), local) for local, remote, ms in times],
        )

    async def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One statement over many rows in one transaction; nothing at all for no rows."""
        if not rows:
            return

        def w(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(sql, rows)

        await self._write(w)

    async def record_refused(self, refused: list[tuple[str, str, int, str]], *, job: str = "",
                             clear_under: str | None = None, kind: str = REFUSED) -> None:
        """Record (local path, remote label, size, reason) of files that failed before any send,
        state 'failed' and transport `kind`: REFUSED for their names, UNREADABLE for what the walk
        or the hashing could not read. With `clear_under`, first drop both kinds recorded below
        that remote prefix (one walk of it found the current ones)."""
        now = self._clock()
        where, params = _below(clear_under or "")

        def w(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if clear_under is not None:
                    conn.execute(f"DELETE FROM files WHERE {where} AND state='failed' AND transport IN (?,?)",
                                 (*params, REFUSED, UNREADABLE))
                conn.executemany(
                    "INSERT INTO files(job,local_path,account,remote,size,state,last_error,transport,attempts,"
                    "created_at,updated_at) VALUES(?,?,?,?,?,'failed',?,?,1,?,?)"
                    " ON CONFLICT(account,remote,local_path) DO UPDATE"
                    " SET job=excluded.job,size=excluded.size,state='failed',last_error=excluded.last_error,"
                    "transport=excluded.transport,attempts=attempts+1,updated_at=excluded.updated_at",
                    [(job, local, *split_key(remote), size, reason, kind, now, now)
                     for local, remote, size, reason in refused],
                )

        await self._run(w)

    async def forget_remotes(self, remotes: list[str]) -> None:
        """Delete the records of these remote files (deleted there), in one transaction."""

        def w(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany("DELETE FROM files WHERE account=? AND remote=?", [split_key(r) for r in remotes])

        await self._run(w)

    async def forget(self, local_path: str, remote: str) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM files WHERE account=? AND remote=? AND local_path=?",
                         (*split_key(remote), local_path))

        await self._run(w)

    async def run_started(self, job: str, remote: str, prefix: str = "", shown_prefix: str = "") -> int:
        """Record that a run of `remote` (named for people) began now; returns its id. `prefix` is
        the journal key prefix of its files, `shown_prefix` the same folder as people read it."""

        def w(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                cur = conn.execute("INSERT INTO runs(job, remote, started_at, prefix, shown_prefix)"
                                   " VALUES (?, ?, ?, ?, ?)", (job, remote, self._clock(), prefix, shown_prefix))
            return int(cur.lastrowid or 0)

        return await self._run(w)

    async def run_ended(self, run_id: int, result: str, counts: dict[str, int]) -> None:
        """Record a run's end: result (ok, failed, interrupted, error) and its summary counts.

        Only the newest RUNS_KEPT runs of a remote are kept: a daemon records one per batch.
        """
        names = [n for n in RUN_COUNTS if n in counts]

        def w(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(f"UPDATE runs SET ended_at=?, result=?{''.join(f', {n}=?' for n in names)} WHERE id=?",
                             (self._clock(), result, *(int(counts[n]) for n in names), run_id))
                conn.execute(
                    "DELETE FROM runs WHERE id IN (SELECT s.id FROM runs r JOIN runs s ON s.job=r.job AND"
                    " s.remote=r.remote WHERE r.id=? ORDER BY s.id DESC LIMIT -1 OFFSET ?)", (run_id, RUNS_KEPT))

        await self._run(w)

    async def forget_remote(self, remote: str) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM files WHERE account=? AND remote=?", split_key(remote))

        await self._run(w)

    async def forget_under(self, remote_prefix: str) -> None:
        """Delete every file record whose remote starts with `remote_prefix` (a deleted remote folder)."""

        where, params = _below(remote_prefix)

        def w(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM files WHERE {where}", params)

        await self._run(w)

    # -- sources ---------------------------------------------------------------------------
    async def source_device(self, key: str) -> int | None:
        """The device recorded for a (remote, source) at its last good pass; None when none was."""

        def q(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT device FROM source_devices WHERE key=?", (key,)).fetchone()
            return None if row is None else int(row[0])

        return await self._run(q)

    async def record_source_device(self, key: str, device: int) -> None:
        now = self._clock()

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO source_devices(key,device,recorded_at) VALUES(?,?,?)",
                         (key, device, now))

        await self._run(w)

    # -- chunks ----------------------------------------------------------------------------
    async def acked_chunks(self, file_id: int, md5: str, chunk_size: int) -> dict[int, str]:
        """index -> chunk md5 of the chunks the platform acknowledged for this content and cut."""

        def q(conn: sqlite3.Connection) -> dict[int, str]:
            rows = conn.execute(
                "SELECT idx, chunk_md5 FROM chunks WHERE file_id=? AND md5=? AND chunk_size=?",
                (file_id, md5, chunk_size),
            ).fetchall()
            return {r[0]: r[1] for r in rows}

        return await self._run(q)

    async def ack_chunk(
        self, file_id: int, md5: str, chunk_size: int, index: int, chunk_md5: str, sent_bytes: int
    ) -> None:
        now = self._clock()

        def w(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO chunks(file_id,md5,chunk_size,idx,chunk_md5,acked_at) VALUES(?,?,?,?,?,?)",
                    (file_id, md5, chunk_size, index, chunk_md5, now),
                )
                conn.execute(
                    "UPDATE files SET bytes_sent=bytes_sent+?, updated_at=? WHERE id=?", (sent_bytes, now, file_id)
                )

        await self._write(w)

    async def clear_chunks(self, file_id: int) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM chunks WHERE file_id=?", (file_id,))

        await self._write(w)


RUNS_KEPT = 100  # of each (job, remote)
RUN_COUNTS = ("files_total", "files_sent", "files_skipped", "files_failed", "bytes_total", "bytes_sent")


class JournalView:
    """Read-only access for `status`; safe while another process writes.

    Every failure is a JournalError with one line (a corrupt file, a newer schema, an unreadable
    state dir): `status` never tracebacks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def corrupt_copies(self) -> list[Path]:
        """Damaged journals that a run moved aside here, oldest first."""
        return corrupt_copies(self.path)

    def check(self) -> None:
        """Raise JournalError if the journal is damaged or from a newer hubsync."""

        def q(conn: sqlite3.Connection) -> None:
            _check(conn)
            version = _user_version(conn)
            if version > len(MIGRATIONS):
                raise _newer(version, self.path)

        self._query(q)

    def summary(self) -> list[dict[str, Any]]:
        """Per (job, remote root): counts and bytes by state."""
        return self._query(lambda conn: [dict(r) for r in conn.execute(
            f"SELECT job, {_key_column(conn)} AS remote, state, size, bytes_sent, last_error, updated_at FROM files"
        )])

    def last_runs(self) -> list[dict[str, Any]]:
        """The newest run of each (job, remote), newest first; none in a journal from before runs were kept."""

        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            if _user_version(conn) < 2:
                return []
            return [dict(r) for r in conn.execute(
                "SELECT * FROM runs r WHERE id = (SELECT MAX(id) FROM runs s WHERE s.job=r.job AND s.remote=r.remote)"
                " ORDER BY started_at DESC"
            )]

        return self._query(q)

    def failures(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._query(lambda conn: [dict(r) for r in conn.execute(
            f"SELECT job, local_path, {_key_column(conn)} AS remote, last_error, attempts, updated_at FROM files"
            " WHERE state='failed' ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )])

    def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            try:
                conn = _connect(self.path, readonly=True)
                try:
                    return fn(conn)
                finally:
                    conn.close()
            except sqlite3.OperationalError as exc:
                if _code(exc) not in (_SQLITE_CANTOPEN, _SQLITE_READONLY):
                    raise
                # A read-only state dir: WAL needs a -shm file there. Read the database file
                # alone (what the last writer checkpointed into it).
                conn = _connect(self.path, readonly=True, immutable=True)
                try:
                    return fn(conn)
                finally:
                    conn.close()
        except _Corrupt as exc:
            raise JournalError(f"journal is corrupt: {self.path} ({exc}); the next sync moves it aside"
                               " and starts a new one") from None
        except (sqlite3.Error, OSError) as exc:
            raise journal_error(exc, self.path) from exc
