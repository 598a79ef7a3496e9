"""The platform's SFTP service (protocol.md §4): asyncssh, serving the emulator's own file spaces.

- Accounts are the ones queryUserInfo/updateUserInfo hand out (`accounts.py`): the private
  account (the platform user's name) is chrooted to `spaces/private/<userId>/`, the public
  account (`public-<tenantId>`) to `spaces/public/<tenantId>/`. The store is re-read on every
  login, so a password reset takes effect at once.
- The host key is generated once per emulator root (`<root>/sftp_host_key`) and reused across
  restarts, as a real server's would be.
- For tests, every file handle that wrote data appends one line to `<root>/sftp.jsonl` when it
  is closed (or its connection drops): `{"op": "write", "space": "private/5", "path": "a/.b.hubsync-part",
  "bytes": N}` with `path` relative to the space root. `sftp_write_log(root)` reads it back.
- Paths are checked as the HTTP API checks them (protocol.md §6): a `.` or `..` component, a
  `\\`, a control character or bytes that are not UTF-8 are refused (permission denied), except
  the bare `.` (the home folder, which SFTP clients ask for). Under the `lenient_paths` fault
  `\\` is a literal character and `.`/`..` resolve inside the space, as a lax server's would.
- A file a handle wrote to is hashed into the content index when that handle closes, before
  the close is answered (`Storage.index_written`): `checkFileExist` then reports the content
  as held, as it does for merged uploads. A rename keeps the inode, so the entry follows the
  file to its final name; a later write makes the entry stale.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh

from .accounts import SftpAccounts
from .config import EmulatorConfig
from .faults import Faults
from .storage import Space, Storage

HOST_KEY_NAME = "sftp_host_key"
WRITE_LOG_NAME = "sftp.jsonl"
_SPACE = "hubsync_space"
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]")  # C0, DEL and (UTF-8 encoded) C1


def path_refusal(path: bytes, lenient: bool) -> str | None:
    """Why the SFTP service refuses the client's `path` (None: it does not)."""
    if path in (b".", b"./"):
        return None
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        return "path is not UTF-8"
    if _CONTROL.search(path):
        return "path has a control character"
    if lenient:
        return None
    if b"\\" in path:
        return "path has a backslash"
    if any(part in (b".", b"..") for part in path.split(b"/")):
        return "path has a . or .. component"
    return None


def host_key_path(root: Path) -> Path:
    return Path(root) / HOST_KEY_NAME


def load_host_key(root: Path) -> asyncssh.SSHKey:
    """The root's host key, generated (ed25519, mode 0600) on first use."""
    path = host_key_path(root)
    try:
        return asyncssh.read_private_key(str(path))
    except FileNotFoundError:
        pass
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    os.replace(tmp, path)
    return key


def sftp_write_log(root: Path) -> list[dict[str, Any]]:
    """Every write entry the SFTP server logged under `root`, oldest first."""
    try:
        text = (Path(root) / WRITE_LOG_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _WriteLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


class _AccountServer(asyncssh.SSHServer):
    """Password logins against the emulator's SFTP account store; nothing else."""

    def __init__(self, accounts: SftpAccounts, refuse_logins: Callable[[], bool]) -> None:
        self._accounts = accounts
        self._refuse_logins = refuse_logins
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        if self._refuse_logins():
            return False
        space = await asyncio.to_thread(self._accounts.authenticate, username, password)
        if space is None or self._conn is None:
            return False
        self._conn.set_extra_info(**{_SPACE: space})
        return True


class _SpaceSftp(asyncssh.SFTPServer):
    """An SFTP session chrooted to the logged-in account's space, counting bytes written."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path, log: _WriteLog, storage: Storage,
                 faults: Faults) -> None:
        space: Space = chan.get_connection().get_extra_info(_SPACE)
        self._space = space
        self._space_root = root / "spaces" / space.kind / str(space.owner_id)
        self._space_root.mkdir(parents=True, exist_ok=True)
        super().__init__(chan, chroot=os.fsencode(self._space_root))
        self._log = log
        self._storage = storage
        self._faults = faults
        self._written: dict[int, list[Any]] = {}  # id(file) -> [space-relative path, bytes, disk path]

    def map_path(self, path: bytes) -> bytes:
        # Every operation maps its paths here first: one check covers open, mkdir, rename, stat...
        refusal = path_refusal(path, self._faults.lenient_paths)
        if refusal is not None:
            raise asyncssh.SFTPPermissionDenied(refusal)
        return super().map_path(path)

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        # asyncssh's own lists `.` and `..` by stat'ing `path/.` and `path/..` through map_path,
        # which refuses such paths from clients: the same listing, without that detour.
        local = self.map_path(path)
        for name in (b".", b".."):
            yield asyncssh.SFTPName(name, attrs=asyncssh.SFTPAttrs.from_local(os.lstat(os.path.join(local, name))))
        with os.scandir(local) as entries:
            for entry in entries:
                yield asyncssh.SFTPName(entry.name, attrs=self._attrs(entry.stat(follow_symlinks=False)))

    # The platform's clock, as skewed as the clock_offset fault makes it (the listings' too).
    def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._attrs(os.stat(self.map_path(path)))

    def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._attrs(os.lstat(self.map_path(path)))

    def _attrs(self, st: os.stat_result) -> asyncssh.SFTPAttrs:
        attrs = asyncssh.SFTPAttrs.from_local(st)
        offset = round(self._faults.clock_offset)
        if offset and attrs.mtime is not None:
            attrs.mtime += offset
        return attrs

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        file_obj = super().open(path, pflags, attrs)
        # `path` is as the client sent it (relative to the chroot, or absolute inside it).
        rel = posixpath.normpath(posixpath.join("/", os.fsdecode(path))).lstrip("/")
        self._written[id(file_obj)] = [rel, 0, Path(os.fsdecode(self.map_path(path)))]
        return file_obj

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        result = super().write(file_obj, offset, data)
        entry = self._written.get(id(file_obj))
        if entry is not None:
            entry[1] += len(data)
        return result  # type: ignore[return-value]

    async def close(self, file_obj: object) -> None:  # asyncssh awaits it, also when a connection drops
        entry = self._flush(id(file_obj))
        super().close(file_obj)
        if entry is not None:
            await asyncio.to_thread(self._storage.index_written, entry[2])

    def exit(self) -> None:
        for key in list(self._written):
            self._flush(key)
        super().exit()

    def _flush(self, key: int) -> list[Any] | None:
        """Log the bytes a handle wrote; returns its entry if it wrote any."""
        entry = self._written.pop(key, None)
        if entry is None or not entry[1]:
            return None
        self._log.append({"op": "write", "space": f"{self._space.kind}/{self._space.owner_id}",
                          "path": entry[0], "bytes": entry[1]})
        return entry


async def start_sftp_server(
    config: EmulatorConfig, port: int = 0, *, refuse_logins: Callable[[], bool] = lambda: False
) -> tuple[asyncssh.SSHAcceptor, int]:
    """Serve SFTP on config.host:`port` (0 = a free port); returns the acceptor and the real port.

    `refuse_logins()` true makes every password login fail (a test switch: a platform whose
    SFTP service keeps refusing the password it hands out).
    """
    root = Path(config.root)
    key = await asyncio.to_thread(load_host_key, root)
    accounts = SftpAccounts(root)
    log = _WriteLog(root / WRITE_LOG_NAME)
    storage = await asyncio.to_thread(Storage, root)
    acceptor = await asyncssh.create_server(
        lambda: _AccountServer(accounts, refuse_logins),
        config.host,
        port,
        server_host_keys=[key],
        sftp_factory=lambda chan: _SpaceSftp(chan, root, log, storage, config.faults),
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
    )
    real_port = int(acceptor.sockets[0].getsockname()[1])
    return acceptor, real_port
