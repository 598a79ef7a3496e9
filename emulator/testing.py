"""`EmulatorThread`: the emulator on a loopback port, served from a background thread.

Typical use in a test:

    with EmulatorThread(tmp_path / "platform") as emu:
        emu.faults.busy_rate = 0.5  # takes effect on the next request
        ...  # talk HTTP to emu.url; inspect emu.log_entries(), emu.private_path("dir/f")

Tests run their own event loop; the emulator's loop lives in its own thread.

Keyword arguments are EmulatorConfig fields, or fault switches (faults.py) that EmulatorConfig
does not have, e.g. `EmulatorThread(root, datahub_create_delay=1.0, busy_rate=0.1)`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import start_server
from .config import EmulatorConfig
from .datahub_store import KINDS, DatahubStore, Kind, Owner
from .faults import Faults
from .state import STATE


class EmulatorThread:
    """Run the emulator with its own event loop in a daemon thread, on 127.0.0.1 (port 0)."""

    def __init__(self, root: Path, *, sftp: bool = False, **config_overrides: Any) -> None:
        config_overrides.setdefault("host", "127.0.0.1")
        config_overrides.setdefault("port", 0)
        # sftp=True also serves SFTP (sftp_server.py) on config.sftp_port (0 or unset = a free port).
        self.sftp = sftp
        self.sftp_port = 0
        self.sftp_refuse_logins = False  # test switch: the SFTP server refuses every password
        self._sftp_acceptor: Any = None
        config_names = {f.name for f in fields(EmulatorConfig)}
        fault_names = set(Faults().public_fields()) - config_names
        switches = {k: config_overrides.pop(k) for k in list(config_overrides) if k in fault_names}
        self.config = EmulatorConfig(root=Path(root), **config_overrides)
        self.config.faults.update(switches)
        self.root = self.config.root
        self.port = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def faults(self) -> Faults:
        """The live fault switches (assign attributes from any thread)."""
        return self.config.faults

    def start(self) -> EmulatorThread:
        """Start serving; returns once the port is open."""
        if self._thread is not None:
            raise RuntimeError("EmulatorThread already started")
        self._thread = threading.Thread(target=self._run, name=f"emulator-{id(self):x}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("emulator failed to start") from self._error
        if self.sftp:
            self.start_sftp()
        return self

    def stop(self) -> None:
        """Stop serving: pending requests are cancelled, the socket and the thread end."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        self.stop_sftp()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        if self._runner is None:
            raise RuntimeError("EmulatorThread not running")
        # One attribute assignment: safe from this thread, effective for the next request.
        self._runner.app[STATE].tokens.rotate()

    def start_sftp(self) -> int:
        """(Re)start the SFTP server on the same port as before (a free one the first time)."""
        if self._loop is None:
            raise RuntimeError("EmulatorThread not running")
        from .sftp_server import start_sftp_server

        acceptor, port = asyncio.run_coroutine_threadsafe(
            start_sftp_server(
                self.config,
                self.sftp_port or self.config.sftp_port or 0,
                refuse_logins=lambda: self.sftp_refuse_logins,
            ),
            self._loop,
        ).result(timeout=30)
        self._sftp_acceptor, self.sftp_port = acceptor, port
        self.config.sftp_port = port  # what queryUserInfo reports
        return port

    def stop_sftp(self) -> None:
        """Stop the SFTP server and drop its connections (start_sftp() brings it back)."""
        acceptor, self._sftp_acceptor = self._sftp_acceptor, None
        if acceptor is not None and self._loop is not None:

            async def close() -> None:
                acceptor.close()
                await acceptor.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)

    def sftp_writes(self, path: str | None = None) -> int:
        """Bytes the SFTP server wrote (to `path`, relative to its space root, if given)."""
        from .sftp_server import sftp_write_log

        return sum(e["bytes"] for e in sftp_write_log(self.root) if path is None or e["path"] == path)

    # -- inspection -------------------------------------------------------------------------

    def log_entries(self) -> list[dict[str, Any]]:
        """Every request logged so far, oldest first."""
        assert self.config.log_path is not None
        try:
            text = self.config.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def clear_log(self) -> None:
        """Empty the request log (the server keeps appending to the same file)."""
        assert self.config.log_path is not None
        if self.config.log_path.exists():
            with open(self.config.log_path, "r+", encoding="utf-8") as f:
                f.truncate(0)

    def private_path(self, rel: str, user_id: int = 5) -> Path:
        """Disk path of `rel` in a user's private space."""
        return self.root / "spaces" / "private" / str(user_id) / rel.lstrip("/")

    def public_path(self, rel: str, tenant_id: int = 101) -> Path:
        """Disk path of `rel` in a tenant's public space."""
        return self.root / "spaces" / "public" / str(tenant_id) / rel.lstrip("/")

    # -- the datahub ------------------------------------------------------------------------------

    def datahub_create_asset(
        self, kind: Kind, name: str, versions: tuple[str, ...] = ("v1",), user_id: int = 5
    ) -> tuple[str, list[str]]:
        """Make an asset owned by `user_id` whose versions (oldest first) are all finished.

        Returns the asset id and the version ids in the order of `versions`. Direct state
        manipulation: no HTTP call, nothing in the request log.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown datahub kind {kind!r}")
        user = self.config.user_by_id(user_id)
        if user is None:
            raise ValueError(f"no emulator user with id {user_id}")
        owner = Owner(user.username, user.user_id, user.tenant_id)
        asset = self._datahub().create_asset(kind, name, owner, version_names=tuple(versions))
        return asset.id, [v.id for v in asset.versions]

    def datahub_path(self, kind: Kind, asset_id: str, version_id: str, rel: str = "") -> Path:
        """Disk path of `rel` inside a datahub version (the version's root for "")."""
        return self.root / "datahub" / kind / asset_id / version_id / "files" / rel.lstrip("/")

    def datahub_versions(self, kind: Kind, asset_id: str) -> list[dict[str, Any]]:
        """The asset's versions, oldest first: id, name, createStatus, parentId."""
        asset = self._datahub().asset(asset_id)
        if asset is None or asset.kind != kind:
            raise KeyError(f"no {kind} asset {asset_id}")
        return [
            {"id": v.id, "name": v.name, "createStatus": v.status, "parentId": v.parent_id}
            for v in asset.versions
        ]

    def _datahub(self) -> DatahubStore:
        """The running emulator's store (thread-safe), or one on the root while stopped."""
        if self._runner is not None and self._thread is not None:
            return self._runner.app[STATE].datahub
        return DatahubStore(self.root)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                self._runner, self.port = loop.run_until_complete(
                    start_server(self.config, shutdown_timeout=0.1)
                )
                self.url = f"http://{self.config.host}:{self.port}"
            except BaseException as e:
                self._error = e
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
