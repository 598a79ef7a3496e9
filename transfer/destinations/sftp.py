"""The SFTP fallback (protocol.md §4): pipelined writes into a hidden part file, then a rename.

Each file goes to `.NAME.hubsync-part` beside its target and is renamed into place only once
its size is verified, so nothing partial ever shows under the target name. The journal holds
`{"transport": "sftp", "part": ..., "md5": ..., "offset": N}` with N bytes known written; a
restarted transfer re-reads the last window before N from the server, compares it with the
local bytes, and continues from N if they agree, else truncates back to the window's start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh

from ..api import PlatformClient
from ..bandwidth import TokenBucket
from ..errors import AuthFailed, Fatal, LocalFileChanged, Retryable, TransferError
from ..hashing import pread_full
from ..hostkeys import HostKeyCheck, HostKeyPolicy, host_pattern
from ..models import Digest, LocalFile, RemoteTarget, SftpAccount, Space
from ..pacer import Pacer
from .base import Confirmation, ConfirmItem, OnBytes, ResumeState, ensure_unchanged

log = logging.getLogger("hubsync.sftp")
T = TypeVar("T")

PART_SUFFIX = ".hubsync-part"
_WRITE = asyncssh.FXF_READ | asyncssh.FXF_WRITE | asyncssh.FXF_CREAT  # read: to verify on resume


def part_name(name: str) -> str:
    """The hidden name a file is written under until it is complete."""
    return f".{name}{PART_SUFFIX}"


@dataclass
class _Session:
    conn: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient


class _PinningClient(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy, check: HostKeyCheck) -> None:
        self._policy = policy
        self._check = check

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._policy.accept(self._check, key)


class SftpDestination:
    """Private or public file storage over the space's SFTP account (one connection per space)."""

    transport = "sftp"

    def __init__(
        self,
        api: PlatformClient,
        *,
        pin_file: Path,
        known_hosts: Path | None = None,
        allow_password_reset: bool = False,
        chunk_size: int = 8 << 20,
        block_size: int = 256 << 10,
        requests_in_flight: int = 32,
        connect_timeout: float = 30.0,
        pacer: Pacer | None = None,
        bandwidth: TokenBucket | None = None,
    ) -> None:
        self.api = api
        self.host_keys = HostKeyPolicy(pin_file, known_hosts)
        self.allow_password_reset = allow_password_reset
        self.chunk_size = chunk_size
        self.block_size = block_size
        # Keep the unacknowledged window within one chunk, so a crash re-sends at most ~2 chunks.
        self.requests_in_flight = max(1, min(requests_in_flight, chunk_size // block_size or 1))
        self.connect_timeout = connect_timeout
        self.pacer = pacer or Pacer(attempts=5, base_delay=0.5)
        self.bandwidth = bandwidth
        self._sessions: dict[Space, _Session] = {}
        self._locks: dict[Space, asyncio.Lock] = {}
        self._refused: dict[Space, TransferError] = {}
        self._reset_done: set[Space] = set()
        self.resume_mismatches = 0  # windows found different on resume (for tests and status)

    # -- connections ---------------------------------------------------------------------
    async def _session(self, space: Space) -> _Session:
        lock = self._locks.setdefault(space, asyncio.Lock())
        async with lock:
            if space in self._refused:
                raise self._refused[space]
            session = self._sessions.get(space)
            if session is not None and session.conn.is_closed():
                del self._sessions[space]
                session = None
            if session is None:
                try:
                    session = await self._login(space)
                except (AuthFailed, Fatal) as exc:
                    self._refused[space] = exc  # one refusal per run, not one per file
                    raise
                self._sessions[space] = session
            return session

    async def _login(self, space: Space) -> _Session:
        """Connect with the platform's password; re-fetch it once, then reset it if allowed."""
        account = await self.api.sftp_account(space)
        try:
            return await self._open(account)
        except asyncssh.PermissionDenied:
            pass
        account = await self.api.sftp_account(space)  # someone may have reset it meanwhile
        try:
            return await self._open(account)
        except asyncssh.PermissionDenied:
            pass
        where = f"{account.username}@{host_pattern(account.host, account.port)}"
        if not self.allow_password_reset or space in self._reset_done:
            hint = (
                "" if space in self._reset_done else
                "; set [sftp] allow_password_reset = true to let hubsync ask the platform for a new"
                " one (it changes the password for every user of that account)"
            )
            raise AuthFailed(f"SFTP login as {where} was refused with the platform's current password{hint}")
        self._reset_done.add(space)
        log.warning("SFTP login as %s refused; asking the platform for a new password", where)
        account = await self.api.reset_sftp_password(space)
        try:
            return await self._open(account)
        except asyncssh.PermissionDenied:
            raise AuthFailed(f"SFTP login as {where} was refused even after a password reset") from None

    async def _open(self, account: SftpAccount) -> _Session:
        check = HostKeyCheck(account.host, account.port)
        check.trusted = await asyncio.to_thread(self.host_keys.trusted_keys, account.host, account.host, account.port)
        try:
            conn, _ = await asyncio.wait_for(
                asyncssh.create_connection(
                    lambda: _PinningClient(self.host_keys, check),
                    account.host,
                    account.port,
                    username=account.username,
                    password=account.password,
                    known_hosts=([], [], []),  # every key goes through _PinningClient
                    client_keys=None,
                    agent_path=None,
                    preferred_auth="password,keyboard-interactive",
                    config=None,
                ),
                self.connect_timeout,
            )
        except asyncssh.PermissionDenied:
            await asyncio.to_thread(self.host_keys.pin, check)
            raise
        except asyncssh.HostKeyNotVerifiable as exc:
            if check.offered is not None:
                raise self.host_keys.refusal(check) from exc
            raise Fatal(f"SFTP host {host_pattern(account.host, account.port)}: {exc.reason}") from exc
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            raise Retryable(f"cannot connect to SFTP {host_pattern(account.host, account.port)}: {_reason(exc)}") from exc
        await asyncio.to_thread(self.host_keys.pin, check)
        try:
            sftp = await conn.start_sftp_client()
        except (asyncssh.Error, OSError) as exc:
            conn.close()
            raise Retryable(f"SFTP subsystem refused: {_reason(exc)}") from exc
        return _Session(conn, sftp)

    async def _drop(self, space: Space) -> None:
        session = self._sessions.pop(space, None)
        if session is not None:
            session.conn.close()

    async def close(self) -> None:
        """Close every connection."""
        for space in list(self._sessions):
            session = self._sessions.pop(space)
            session.conn.close()
            await session.conn.wait_closed()

    async def _call(self, space: Space, work: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """Run `work` on the space's SFTP client, translating asyncssh errors into ours."""
        session = await self._session(space)
        try:
            return await work(session.sftp)
        except asyncssh.SFTPError as exc:
            error = _classify(exc)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            error = Retryable(f"SFTP connection failed: {_reason(exc)}")
        if isinstance(error, Retryable):
            await self._drop(space)
        raise error

    # -- sending -------------------------------------------------------------------------
    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes
    ) -> None:
        progress = _Progress(on_bytes)
        await self.pacer.call(lambda: self._send_once(local, digest, target, resume, progress), what=str(target))

    async def _send_once(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, progress: _Progress
    ) -> None:
        part = posixpath.join(target.folder, part_name(target.name)) if target.folder else part_name(target.name)
        if target.folder:
            await self._call(target.space, lambda sftp: _makedirs(sftp, target.folder))
        same = resume.get("transport") == "sftp" and resume.get("part") == part and resume.get("md5") == digest.md5
        recorded = int(resume.get("offset", 0)) if same else 0
        if not same:
            await resume.put(transport="sftp", part=part, md5=digest.md5, offset=0)

        async def upload(sftp: asyncssh.SFTPClient) -> None:
            fd = await asyncio.to_thread(os.open, local.path, os.O_RDONLY)
            try:
                async with sftp.open(part, _WRITE, encoding=None) as remote:
                    start = await self._resume_point(sftp, remote, part, fd, recorded, local.size)
                    progress.at(start)
                    await resume.put(offset=start)
                    await self._write_from(remote, fd, start, local, resume, progress)
            finally:
                await asyncio.to_thread(os.close, fd)
            size = (await sftp.stat(part)).size
            if size != local.size:
                await resume.put(offset=0)
                raise Retryable(f"{part} holds {size} bytes after upload, expected {local.size}")
            await asyncio.to_thread(ensure_unchanged, local)
            await _rename(sftp, part, target.path)
            await resume.put(offset=0, part=None)

        await self._call(target.space, upload)

    async def _resume_point(
        self, sftp: asyncssh.SFTPClient, remote: asyncssh.SFTPClientFile, part: str, fd: int, recorded: int, size: int
    ) -> int:
        """Where to continue: the recorded offset if the window before it matches the local bytes."""
        remote_size = (await remote.stat()).size or 0
        offset = min(recorded, remote_size, size)
        if offset > 0:
            window = min(self.chunk_size, offset)
            theirs = await remote.read(window, offset - window)
            ours = await asyncio.to_thread(pread_full, fd, window, offset - window)
            if theirs != ours:
                self.resume_mismatches += 1
                log.info("%s: the last %d bytes before %d differ from the local file; re-sending them",
                         part, window, offset)
                offset -= window
        if remote_size != offset:
            await remote.truncate(offset)  # never leave stale or holed bytes past the resume point
        return offset

    async def _write_from(
        self, remote: asyncssh.SFTPClientFile, fd: int, start: int, local: LocalFile, resume: ResumeState,
        progress: _Progress,
    ) -> None:
        """Pipelined writes: up to requests_in_flight blocks outstanding, acked strictly in order."""
        pending: deque[tuple[int, asyncio.Task[int]]] = deque()
        pos = acked = persisted = start
        try:
            while pos < local.size or pending:
                while pos < local.size and len(pending) < self.requests_in_flight:
                    n = min(self.block_size, local.size - pos)
                    data = await asyncio.to_thread(pread_full, fd, n, pos)
                    if len(data) != n:
                        raise LocalFileChanged(f"{local.rel} got shorter while it was sent")
                    if self.bandwidth is not None:
                        await self.bandwidth.consume(n)
                    pending.append((pos + n, asyncio.ensure_future(remote.write(data, pos))))
                    pos += n
                end, task = pending.popleft()
                await task
                progress.sent(end - acked)
                acked = end
                if acked - persisted >= self.chunk_size:
                    await resume.put(offset=acked)
                    persisted = acked
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
        if acked != persisted:
            await resume.put(offset=acked)

    # -- confirming ----------------------------------------------------------------------
    async def confirm(self, items: list[ConfirmItem]) -> list[Confirmation]:
        """Stat each target: it must exist as a regular file of the expected size."""
        results: list[Confirmation] = []
        for item in items:
            target, size = item.target, item.size
            try:
                attrs = await self._call(target.space, lambda sftp, t=target: sftp.stat(t.path))
            except Fatal as exc:
                results.append(Confirmation(target, f"not found over SFTP after upload: {exc}"))
                continue
            if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                results.append(Confirmation(target, "is a folder on the server"))
            elif attrs.size != size:
                results.append(Confirmation(target, f"holds {attrs.size} bytes over SFTP, expected {size}"))
            else:
                results.append(Confirmation(target, None))
        return results


class _Progress:
    """Turns 'now at offset N' into on_bytes deltas, so a retried attempt never double counts."""

    def __init__(self, on_bytes: OnBytes) -> None:
        self.on_bytes = on_bytes
        self.reported = 0

    def at(self, offset: int) -> None:
        """The transfer (re)starts at `offset`: bytes before it were sent by an earlier attempt."""
        if offset != self.reported:
            self.on_bytes(offset - self.reported, False)
            self.reported = offset

    def sent(self, n: int) -> None:
        self.on_bytes(n, True)
        self.reported += n


async def _makedirs(sftp: asyncssh.SFTPClient, folder: str) -> None:
    """Create `folder` and its parents; tolerant of folders made meanwhile by someone else."""
    path = ""
    for piece in folder.split("/"):
        path = posixpath.join(path, piece) if path else piece
        try:
            await sftp.mkdir(path)
        except asyncssh.SFTPError:
            if not await sftp.isdir(path):
                raise


async def _rename(sftp: asyncssh.SFTPClient, part: str, path: str) -> None:
    """Atomic replace where the server offers posix-rename, else remove + rename."""
    try:
        await sftp.posix_rename(part, path)
        return
    except asyncssh.SFTPOpUnsupported:
        pass
    try:
        await sftp.rename(part, path)
    except asyncssh.SFTPError:
        if not await sftp.exists(path):
            raise
        await sftp.remove(path)
        await sftp.rename(part, path)


def _classify(exc: asyncssh.SFTPError) -> TransferError:
    reason = _reason(exc)
    if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
        return Retryable(f"SFTP connection lost: {reason}")
    if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded):
        return Fatal(f"SFTP server is out of space: {reason}")
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return Fatal(f"SFTP permission denied: {reason}")
    return Fatal(f"SFTP server refused: {reason}")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason)
