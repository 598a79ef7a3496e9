"""The SFTP fallback (protocol.md §4): pipelined writes into a hidden part file, then a rename.

Each file goes to `.NAME.TAG.hubsync-part` beside its target (TAG: this agent's own, see
`transfer.agenttag`; a name too long for that is shortened with a hash) and is renamed into place only once
its size and the md5 of the bytes written are verified, so nothing partial (nor a mix of two
versions of a file rewritten in place while it was sent) ever shows under the target name.
The journal holds `{"transport": "sftp", "space": ..., "part": ..., "md5": ..., "offset": N}` with N bytes known
written; a restarted transfer re-reads the last window before N from the server, compares it
with the local bytes, and continues from N if they agree, else truncates back to the window's
start. A part file nobody wrote for `stale_part_age` is stale: it is started again rather than
resumed, and `remove_stale_parts` deletes those the journal says this agent made.

Round trips are what a file costs far from the platform: a folder is made once per run, a part
file nothing was known written to is truncated as it is opened (no stat), and its size is asked
while its handles close; a small file is four requests in a row (open, write, close, rename).
A large file is written through more SFTP channels of the connection when the measured round
trip × throughput says one channel's window binds (sftp_channels.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import asyncssh

if TYPE_CHECKING:
    from hashlib import _Hash as Hash


from ..agenttag import load_tag
from ..api import PlatformClient
from ..bandwidth import TokenBucket
from ..errors import AuthFailed, EndpointUnavailable, Fatal, LocalFileChanged, Retryable, TransferError
from ..hashing import READ_BLOCK, pread_full
from ..hostkeys import HostKeyCheck, HostKeyPolicy, host_pattern
from ..journal import Journal
from ..models import Digest, LocalFile, RemoteTarget, SftpAccount, Space
from ..pacer import Pacer
from ..readback import ByteSink
from ..remotepath import PART_SUFFIX, join, part_path
from ..scope import RunScope
from .base import Confirmation, ConfirmItem, OnBytes, ResumeFields, ResumeState, ensure_unchanged
from .sftp_channels import PartWriters, Ramp, Session

log = logging.getLogger("hubsync.sftp")

# AES-GCM first: AES-NI makes it several times cheaper than chacha20-poly1305, which asyncssh
# prefers by default and which cost a quarter of the client's CPU on a 2 GiB upload (bench:
# 24.9 s -> 16.2 s). The others stay as fallbacks for servers that offer neither GCM cipher.
_CIPHERS = (
    "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr",
    "chacha20-poly1305@openssh.com", "aes192-ctr",
)
T = TypeVar("T")

_WRITE = asyncssh.FXF_READ | asyncssh.FXF_WRITE | asyncssh.FXF_CREAT  # read: to verify on resume
# checkFileExist misses in a row, with no hit, after which a run concludes that the platform does
# not index SFTP uploads and stops asking.
MD5_PROBES = 8
STAT_COST = 0.0005  # seconds of the client's own work per stat
CONFIRM_LEAST, CONFIRM_MOST = 8, 64  # stats in flight when confirming
READ_PIECE = 4 << 20  # bytes per read when a file is read back: asyncssh pipelines it in blocks


@dataclass
class _RunState:
    """What one run learns about the SFTP service (RunScope part): forgotten when the run ends."""

    refused: dict[Space, TransferError] = field(default_factory=dict)  # one refusal per run, not per file
    reset_done: set[Space] = field(default_factory=set)  # the password is reset at most once per run
    md5_checks: bool = True
    md5_confirmed: int = 0
    md5_not_held: int = 0
    # Folders this run made or found, per space: each is made once per run, not once per file
    # (at a 20 ms round trip, two mkdirs and two stats per file were 80 ms of each small file).
    folders: dict[Space, set[str]] = field(default_factory=dict)
    folder_locks: dict[Space, asyncio.Lock] = field(default_factory=dict)


class _PinningClient(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy, check: HostKeyCheck) -> None:
        self._policy = policy
        self._check = check

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._policy.accept(self._check, key)


@dataclass(frozen=True)
class SftpResume(ResumeFields):
    """The part file a transfer writes, for which content, and how far it is known to be written."""

    transport: str = ""  # "sftp": what remove_stale_parts looks for
    space: str = ""
    part: str = ""  # "" once renamed into place (older records: null)
    md5: str = ""
    offset: int = 0


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
        max_channels: int = 4,
        connect_timeout: float = 10.0,
        request_timeout: float = 30.0,
        min_rate: float = 32 << 10,
        pacer: Pacer | None = None,
        bandwidth: TokenBucket | None = None,
        stale_part_age: float = 7 * 86400,
        confirm_concurrency: int | None = None,
        clock: Callable[[], float] = time.time,
        part_tag: str | None = None,
    ) -> None:
        self.api = api
        # This agent's mark on its part files (kept in the state dir beside the pinned keys).
        self.part_tag = part_tag or load_tag(pin_file.parent)
        self.host_keys = HostKeyPolicy(pin_file, known_hosts)
        self.allow_password_reset = allow_password_reset
        self.chunk_size = chunk_size
        self.block_size = block_size
        # Keep the unacknowledged window within one chunk, so a crash re-sends at most ~2 chunks.
        self.requests_in_flight = max(1, min(requests_in_flight, chunk_size // block_size or 1))
        # Channels a large file may be written through at once (see sftp_channels.py).
        self.max_channels = max(1, max_channels)
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.min_rate = min_rate  # a read of N bytes may take request_timeout + N / min_rate
        self.pacer = pacer or Pacer()
        self.bandwidth = bandwidth
        self.stale_part_age = stale_part_age
        self.confirm_concurrency = None if confirm_concurrency is None else max(1, confirm_concurrency)
        self.clock = clock  # compared with the server's mtimes: only days matter, not clock skew
        self._sessions: dict[Space, Session] = {}
        self._locks: dict[Space, asyncio.Lock] = {}
        self.resume_mismatches = 0  # windows found different on resume (for tests and status)
        self.md5_confirmed = 0  # files whose content checkFileExist reported as held (all runs)
        self.md5_not_held = 0
        self._own_scope = RunScope()  # for calls made without a run's scope (tests, stale-part cleanup)

    def _run(self, scope: RunScope | None) -> _RunState:
        return (scope or self._own_scope).part(self, _RunState)

    # -- connections ---------------------------------------------------------------------
    async def _session(self, space: Space, run: _RunState) -> Session:
        lock = self._locks.setdefault(space, asyncio.Lock())
        async with lock:
            if space in run.refused:
                raise run.refused[space]
            session = self._sessions.get(space)
            if session is not None and session.conn.is_closed():
                del self._sessions[space]
                session = None
            if session is None:
                try:
                    session = await self._login(space, run)
                except (AuthFailed, Fatal) as exc:
                    run.refused[space] = exc  # one refusal per run, not one per file
                    raise
                self._sessions[space] = session
            return session

    async def _login(self, space: Space, run: _RunState) -> Session:
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
        if not self.allow_password_reset or space in run.reset_done:
            hint = (
                "" if space in run.reset_done else
                "; set [sftp] allow_password_reset = true to let hubsync ask the platform for a new"
                " one (it changes the password for every user of that account)"
            )
            raise AuthFailed(f"SFTP login as {where} was refused with the platform's current password{hint}")
        run.reset_done.add(space)
        log.warning("SFTP login as %s refused; asking the platform for a new password", where)
        account = await self.api.reset_sftp_password(space)
        try:
            return await self._open(account)
        except asyncssh.PermissionDenied:
            raise AuthFailed(f"SFTP login as {where} was refused even after a password reset") from None

    async def _open(self, account: SftpAccount) -> Session:
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
                    encryption_algs=_CIPHERS,
                    config=None,
                    login_timeout=self.connect_timeout,
                    # A server that stops answering closes the connection within request_timeout,
                    # so no SFTP operation waits for ever.
                    keepalive_interval=max(1.0, self.request_timeout / 3),
                    keepalive_count_max=3,
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
        except socket.gaierror as exc:  # a name that does not resolve will not resolve on retry
            raise Fatal(f"cannot resolve SFTP host {account.host}: {exc.strerror or exc}") from exc
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            where = host_pattern(account.host, account.port)
            if isinstance(exc, ConnectionRefusedError):
                raise Retryable(f"cannot connect to SFTP {where}: connection refused",
                                patience=self.connect_timeout) from exc
            if isinstance(exc, TimeoutError):
                raise Retryable(f"cannot connect to SFTP {where}: no connection within {self.connect_timeout:g}s"
                                " ([transfer] connect_timeout)") from exc
            raise Retryable(f"cannot connect to SFTP {where}: {_reason(exc)}") from exc
        await asyncio.to_thread(self.host_keys.pin, check)
        try:
            sftp = await conn.start_sftp_client()
        except (asyncssh.Error, OSError) as exc:
            conn.close()
            raise Retryable(f"SFTP subsystem refused: {_reason(exc)}") from exc
        return Session(conn, sftp)

    async def _drop(self, space: Space) -> None:
        session = self._sessions.pop(space, None)
        if session is not None:
            session.conn.close()

    def channels(self, space: Space) -> int:
        """SFTP channels open to `space` now: 1 per connection, plus those opened for large files (0: none)."""
        session = self._sessions.get(space)
        return 0 if session is None or session.conn.is_closed() else session.channels

    async def close(self) -> None:
        """Close every connection."""
        for space in list(self._sessions):
            session = self._sessions.pop(space)
            session.conn.close()
            await session.conn.wait_closed()

    async def _call(
        self, space: Space, work: Callable[[asyncssh.SFTPClient], Awaitable[T]], run: _RunState, what: str
    ) -> T:
        """One leaf SFTP operation, paced: retried (on a new connection) while the failure is transient."""
        return await self._call_in(space, lambda session: work(session.sftp), run, what)

    async def _call_in(
        self, space: Space, work: Callable[[Session], Awaitable[T]], run: _RunState, what: str
    ) -> T:
        """`_call` for work that needs the whole session (its channels, its round-trip time)."""
        return await self.pacer.call(lambda: self._call_once(space, work, run), what=f"sftp {what}")

    async def _call_once(self, space: Space, work: Callable[[Session], Awaitable[T]], run: _RunState) -> T:
        """Run `work` on the space's session, translating asyncssh errors into ours."""
        session = await self._session(space, run)
        try:
            return await work(session)
        except asyncssh.SFTPError as exc:
            error = _classify(exc)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            error = Retryable(f"SFTP connection failed: {_reason(exc)}")
        if isinstance(error, Retryable):
            await self._drop(space)
        raise error

    # -- sending -------------------------------------------------------------------------
    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes,
        *, scope: RunScope | None = None,
    ) -> None:
        """Write the part file (resuming at the recorded offset), verify it, rename it into place.

        Each SFTP operation is a paced leaf call: a dropped connection is reopened and the
        upload continues from the offset the journal holds (read again on every attempt).
        """
        run = self._run(scope)
        progress = _Progress(on_bytes)
        space = _file_space(target)
        part = part_path(target, self.part_tag)
        await self._ensure_folder(space, target.folder, run)
        mine = SftpResume("sftp", space.value, part, digest.md5)
        if replace(resume.load(SftpResume), offset=0) != mine:
            await resume.save(mine)

        async def upload(session: Session) -> None:
            sftp = session.sftp
            recorded = resume.load(SftpResume).offset  # read again on every attempt
            fd = await asyncio.to_thread(os.open, local.path, os.O_RDONLY)
            try:
                # Nothing known written: the part file starts empty (truncated as it is opened,
                # one round trip), else the resume point is checked against the local bytes.
                opened = time.perf_counter()
                remote = await self._open_part(sftp, space, target.folder, part, truncate=recorded == 0, run=run)
                session.observe(time.perf_counter() - opened)
                writers = PartWriters(session, part, remote, _WRITE)
                try:
                    start = 0 if recorded == 0 else await self._resume_point(remote, part, fd, recorded, local.size)
                    progress.at(start)
                    await resume.save(replace(mine, offset=start))
                    # The md5 of what the part file holds: the local bytes before the resume
                    # point (the window before it was just compared), then each block as sent.
                    written = hashlib.md5()
                    if start:
                        await asyncio.to_thread(_hash_range, written, fd, 0, start, local.rel)
                    # OpenSSH takes at most 255 KiB per write (limits@openssh.com); a larger block
                    # would be split by asyncssh into a full request and a 1 KiB one.
                    block = min(self.block_size, sftp.limits.max_write_len or self.block_size)
                    if session.extra and local.size - start > 2 * self.chunk_size:
                        await writers.open_known()  # channels a large file before this one opened
                    await self._write_from(writers, fd, start, local, resume, mine, progress, block, written)
                    # Every write is acknowledged, so the part file's size by its path is final:
                    # it is asked for while the handles close (one round trip for all).
                    _, attrs = await asyncio.gather(writers.close(), sftp.stat(part))
                finally:
                    await writers.close()  # a no-op once closed
            finally:
                await asyncio.to_thread(os.close, fd)
            size = attrs.size
            if size != local.size:
                await resume.save(mine)
                raise Retryable(f"{part} holds {size} bytes after upload, expected {local.size}")
            await asyncio.to_thread(ensure_unchanged, local)
            if written.hexdigest() != digest.md5:
                # Rewritten in place while it was sent, size and mtime restored: stat saw nothing,
                # but the part file holds bytes of two versions. It is never renamed into place.
                await resume.save(mine)
                raise LocalFileChanged(f"{local.rel} changed while it was sent (the bytes sent do not have"
                                       " its md5)")
            await _rename(sftp, part, target.path)
            await resume.save(replace(mine, part=""))

        await self._call_in(space, upload, run, f"upload {target}")

    async def _ensure_folder(self, space: Space, folder: str, run: _RunState) -> None:
        """Make `folder` and its parents, once per run (one at a time per space: they share parents)."""
        known = run.folders.setdefault(space, set())
        if not folder or folder in known:
            return
        lock = run.folder_locks.setdefault(space, asyncio.Lock())
        async with lock:
            if folder not in known:
                await self._call(space, lambda sftp: _makedirs(sftp, folder, known), run, f"mkdir {folder}")

    async def _open_part(self, sftp: asyncssh.SFTPClient, space: Space, folder: str, part: str, *,
                         truncate: bool, run: _RunState) -> asyncssh.SFTPClientFile:
        """Open the part file for writing; a folder removed since this run made it is made again."""
        flags = _WRITE | (asyncssh.FXF_TRUNC if truncate else 0)
        try:
            return await sftp.open(part, flags, encoding=None)
        except asyncssh.SFTPNoSuchFile:
            if not folder:
                raise
        known = run.folders.setdefault(space, set())
        _forget_folder(known, folder)
        await _makedirs(sftp, folder, known)
        return await sftp.open(part, flags, encoding=None)

    async def _resume_point(
        self, remote: asyncssh.SFTPClientFile, part: str, fd: int, recorded: int, size: int
    ) -> int:
        """Where to continue: the recorded offset if the window before it matches the local bytes."""
        attrs = await remote.stat()
        remote_size = attrs.size or 0
        offset = min(recorded, remote_size, size)
        if offset > 0 and self._stale(attrs):
            log.info("%s: not written for more than %.0fs (stale_part_age); starting it again",
                     part, self.stale_part_age)
            offset = 0
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
        self, remote: PartWriters, fd: int, start: int, local: LocalFile, resume: ResumeState,
        mine: SftpResume, progress: _Progress, block: int, written: Hash,
    ) -> None:
        """Pipelined writes: up to requests_in_flight blocks outstanding, acked strictly in order.

        Each block is added to `written` in the thread that reads it, in file order. After each
        chunk, the measured throughput and round-trip time say whether one more channel would
        pay (sftp_channels.py); blocks go to the channel with the fewest outstanding.
        """
        pending: deque[tuple[int, asyncio.Task[int]]] = deque()
        pos = acked = persisted = start
        ramp = Ramp(remote.session.rtt, self.max_channels, start, span=2 * self.chunk_size)
        try:
            while pos < local.size or pending:
                while pos < local.size and len(pending) < self.requests_in_flight:
                    n = min(block, local.size - pos)
                    data = await asyncio.to_thread(_read_hashed, written, fd, n, pos)
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
                    await resume.save(replace(mine, offset=acked))
                    persisted = acked
                    if remote.growing:
                        ramp.restart(acked)  # judged once the new channel writes too
                    elif not remote.refused and ramp.grow(acked, len(remote.files)):
                        remote.add_channel()
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
        if acked != persisted:
            await resume.save(replace(mine, offset=acked))

    # -- reading back --------------------------------------------------------------------
    async def connect(self, space: Space, *, scope: RunScope | None = None) -> None:
        """Log in to the space's SFTP service now (paced): a refusal shows once, before any file."""
        await self._call(space, lambda sftp: sftp.realpath("."), self._run(scope), "connect")

    async def read_into(self, target: RemoteTarget, sink: ByteSink, *, scope: RunScope | None = None) -> None:
        """Stream the file at `target` into `sink`, READ_PIECE bytes per read, each within its
        deadline. Paced: a connection lost midway is reopened and the read goes on from
        `sink.position`."""
        space = _file_space(target)
        deadline = self.request_timeout + READ_PIECE / self.min_rate

        async def read(sftp: asyncssh.SFTPClient) -> None:
            async with sftp.open(target.path, asyncssh.FXF_READ, encoding=None) as remote:
                while data := await asyncio.wait_for(remote.read(READ_PIECE, sink.position), deadline):
                    await sink.write(cast(bytes, data))  # encoding=None: bytes (asyncssh types it AnyStr)

        await self._call(space, read, self._run(scope), f"read {target}")

    # -- confirming ----------------------------------------------------------------------
    async def confirm(self, items: list[ConfirmItem], *, scope: RunScope | None = None) -> list[Confirmation]:
        """Stat each target (a regular file of the expected size), then ask the platform for its md5.

        Stats in flight: confirm_concurrency if given, else enough to cover the connection's
        round trip (a stat costs the client ~STAT_COST), CONFIRM_LEAST to CONFIRM_MOST: a batch of
        500 at 20 ms takes 0.25 s, not 1.25 s with 8.
        """
        run = self._run(scope)
        limit = asyncio.Semaphore(self.confirm_concurrency or self._confirm_width())

        async def one(item: ConfirmItem) -> Confirmation:
            async with limit:
                return await self._confirm_one(item, run)

        results = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        confirmations: list[Confirmation] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            confirmations.append(result)
        return confirmations

    def _confirm_width(self) -> int:
        rtts = [s.rtt for s in self._sessions.values() if math.isfinite(s.rtt)]
        wide = math.ceil(max(rtts) / STAT_COST) if rtts else 0
        return max(CONFIRM_LEAST, min(CONFIRM_MOST, wide))

    async def _confirm_one(self, item: ConfirmItem, run: _RunState) -> Confirmation:
        target = item.target
        try:
            attrs = await self._call(_file_space(target), lambda sftp: sftp.stat(target.path), run, f"stat {target}")
        except Fatal as exc:
            return Confirmation(target, f"not found over SFTP after upload: {exc}")
        if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
            return Confirmation(target, "is a folder on the server")
        if attrs.size != item.size:
            return Confirmation(target, f"holds {attrs.size} bytes over SFTP, expected {item.size}")
        await self._check_md5(item, run)
        # The server's mtime is the platform's clock, as its listings' lastModifyTime is.
        mtime_ms = None if attrs.mtime is None else attrs.mtime * 1000 + (attrs.mtime_ns or 0) // 1_000_000
        return Confirmation(target, None, mtime_ms)

    async def _check_md5(self, item: ConfirmItem, run: _RunState) -> None:
        """Ask checkFileExist whether the platform holds the file's content, where it tells.

        The answer concerns content (md5 and size), not a path: "held", with the size just seen
        at the target, is as near to an md5 check of the target as the API comes. We ask about
        our own md5, so it cannot report some other content as held. "Not held" proves nothing
        (a platform may index only chunk-API uploads, or index later), so it leaves the size
        check standing rather than failing the file; after MD5_PROBES such answers and no
        "held", the platform evidently does not index SFTP uploads and the run stops asking.
        """
        if not item.md5 or item.size == 0 or not run.md5_checks:
            return  # checkFileExist refuses fileSize 0 (protocol.md §6): an empty file's size says all
        target = item.target
        try:
            check = await self.api.check_file(_file_space(target), target.folder, target.name, item.md5, item.size)
        except (EndpointUnavailable, AuthFailed) as exc:
            _stop_md5_checks(run, f"checkFileExist is not available ({exc})")
            return
        except TransferError as exc:
            log.info("%s: md5 not checked (%s); its size is right", target, exc)
            return
        if check.held:
            self.md5_confirmed += 1
            run.md5_confirmed += 1
            return
        self.md5_not_held += 1
        run.md5_not_held += 1
        if run.md5_confirmed == 0 and run.md5_not_held >= MD5_PROBES:
            _stop_md5_checks(run, "the platform does not report files written over SFTP as held")

    # -- stale part files ----------------------------------------------------------------
    def _stale(self, attrs: asyncssh.SFTPAttrs) -> bool:
        """Whether a part file was last written more than stale_part_age ago."""
        return attrs.mtime is not None and self.clock() - attrs.mtime > self.stale_part_age

    async def remove_stale_parts(
        self, journal: Journal, namespace: str = "", *, scope: RunScope | None = None
    ) -> list[str]:
        """Delete the part files this agent made that nobody wrote for stale_part_age.

        Only a part file named in a resume record of `journal` under `namespace` (the engine's
        key prefix for this platform and user) is considered: anything the journal does not
        record as ours is never touched. The age, not the record's state, protects transfers
        in progress (a crashed run leaves 'sending'; a file sent later over HTTP leaves 'done'
        with the part still named). Returns "space:/path" of every part removed.
        """
        removed: list[str] = []
        run = self._run(scope)
        for record in await journal.resume_parts(namespace, self.transport):
            recorded = SftpResume.from_blob(record.resume)
            part, space = recorded.part, recorded.space
            if not _is_part_path(part) or space not in (Space.PRIVATE.value, Space.PUBLIC.value):
                continue

            async def remove_if_stale(sftp: asyncssh.SFTPClient, part: str = str(part)) -> str:
                try:
                    attrs = await sftp.stat(part)
                except asyncssh.SFTPNoSuchFile:
                    return "gone"
                if not self._stale(attrs):
                    return "fresh"
                await sftp.remove(part)
                return "removed"

            try:
                outcome = await self._call(Space(space), remove_if_stale, run, f"remove {part}")
            except Fatal as exc:
                log.warning("cannot remove stale part file %s:/%s: %s", space, part, exc)
                continue
            if outcome == "fresh":
                continue
            resume = ResumeState(journal, record, record.md5 or "", record.chunk_size or self.chunk_size)
            await resume.save(replace(recorded, part="", offset=0))
            if outcome == "removed":
                log.info("removed stale part file %s:/%s", space, part)
                removed.append(f"{space}:/{part}")
        return removed


def _stop_md5_checks(run: _RunState, why: str) -> None:
    if run.md5_checks:
        run.md5_checks = False
        log.info("SFTP uploads are confirmed by size only for the rest of this run: %s", why)


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


def _read_hashed(md5: Hash, fd: int, length: int, offset: int) -> bytes:
    """`length` bytes at `offset` (shorter at end of file), added to `md5` (blocking)."""
    data = pread_full(fd, length, offset)
    md5.update(data)
    return data


def _hash_range(md5: Hash, fd: int, start: int, end: int, rel: str) -> None:
    """Add the file's bytes [start, end) to `md5`, a block at a time (blocking, memory bounded)."""
    pos = start
    while pos < end:
        data = pread_full(fd, min(READ_BLOCK, end - pos), pos)
        if not data:
            raise LocalFileChanged(f"{rel} got shorter while it was sent")
        md5.update(data)
        pos += len(data)


def _file_space(target: RemoteTarget) -> Space:
    if not isinstance(target.space, Space):
        raise Fatal(f"{target}: SFTP reaches only the private and public file spaces")
    return target.space


def _is_part_path(part: object) -> bool:
    """A space-relative path of a hubsync part file (a guard against a damaged journal)."""
    if not isinstance(part, str) or part.startswith("/"):
        return False
    pieces = part.split("/")
    name = pieces[-1]
    return ".." not in pieces and name.startswith(".") and name.endswith(PART_SUFFIX) and len(name) > len(PART_SUFFIX) + 1


async def _makedirs(sftp: asyncssh.SFTPClient, folder: str, known: set[str]) -> None:
    """Create `folder` and its parents not in `known`; tolerant of folders made meanwhile by someone else.

    Each folder made or found is added to `known`.
    """
    path = ""
    for piece in folder.split("/"):
        path = join(path, piece)
        if path in known:
            continue
        try:
            await sftp.mkdir(path)
        except asyncssh.SFTPError:
            if not await sftp.isdir(path):
                raise
        known.add(path)


def _forget_folder(known: set[str], folder: str) -> None:
    """`folder` is gone after all: forget it and its parents (one of them may have gone with it)."""
    path = folder
    while path:
        known.discard(path)
        path = path.rpartition("/")[0]


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
