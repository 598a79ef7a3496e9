"""The four destinations of the conformance suite, each behind one `Rig` the cases drive alike.

A rig sends with the engine in-process (fast, and able to interrupt or change a file at an
exact point) and names the same remote for the CLI (for SIGKILL and --delete). What the
platform took in is read back from the emulator's own logs, never from the client.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.sftp_server import sftp_write_log
from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.datahub import DatahubApi
from transfer.destinations.base import Destination
from transfer.destinations.chunked import ChunkedDestination
from transfer.destinations.datahub import DirectDatahubDestination, StagedDatahubDestination
from transfer.destinations.sftp import SftpDestination
from transfer.engine import Engine, RunSummary, SendItem
from transfer.folders import RemoteFolders
from transfer.hashing import stat_file
from transfer.journal import Journal
from transfer.models import DatahubSpace, RemoteTarget, Space
from transfer.progress import ProgressSink
from transfer.remotepath import RemoteFolder, join

from .conftest import hubsync_cmd, run_cli, user_env

CS = 64 << 10  # the smallest chunk size the CLI takes: a few hundred KiB make many chunks
KINDS = ("http", "sftp", "staged", "direct")
FILE_CHUNK_CALL = "/api/file/file/uploadFile"
DATAHUB_CHUNK_CALL = "/api/market/datahub/data/uploadFile"


@dataclass
class Platform:
    """One emulator (HTTP + SFTP) for the whole suite, and the model version datahub rigs fill."""

    emu: EmulatorThread
    version: DatahubSpace


def build_destination(kind: str, api: PlatformClient, tmp: Path, poll_timeout: float = 30.0) -> Destination:
    """The destination as the CLI composes it, with the suite's small chunks."""
    if kind == "sftp":
        return SftpDestination(api, pin_file=tmp / "known_hosts", chunk_size=CS, block_size=16 << 10)
    chunked = ChunkedDestination(api, RemoteFolders(api), chunk_size=CS, small_file_threshold=CS)
    if kind == "http":
        return chunked
    if kind == "staged":
        return StagedDatahubDestination(DatahubApi(api), chunked, poll_timeout=poll_timeout)
    return DirectDatahubDestination(DatahubApi(api), chunk_size=CS, poll_timeout=poll_timeout)


@dataclass
class Rig:
    kind: str
    platform: Platform
    api: PlatformClient
    destination: Destination
    journal: Journal
    root: str  # this test's own folder, in the private space or in the version
    tmp: Path
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def emu(self) -> EmulatorThread:
        return self.platform.emu

    @property
    def space(self) -> Space | DatahubSpace:
        return self.platform.version if self.kind in ("staged", "direct") else Space.PRIVATE

    @property
    def instant(self) -> bool:
        """Whether the destination places content the platform already holds without sending it."""
        return self.kind in ("http", "staged")

    # -- in-process ------------------------------------------------------------------------
    def engine(self, progress: ProgressSink | None = None) -> Engine:
        return Engine(self.journal, self.destination, chunk_size=CS, settle_seconds=0.05, progress=progress)

    def target(self, rel: str) -> RemoteTarget:
        return RemoteFolder(self.space, self.root).target(rel)

    def items(self, src: Path, rels: list[str]) -> list[SendItem]:
        return [SendItem(stat_file(src / rel, rel), self.target(rel)) for rel in rels]

    async def run(self, src: Path, rels: list[str], progress: ProgressSink | None = None) -> RunSummary:
        return await self.engine(progress).run(self.items(src, rels))

    def on_disk(self, rel: str) -> Path:
        """Where the emulator keeps the target of `rel`."""
        path = join(self.root, rel)
        if isinstance(self.space, DatahubSpace):
            v = self.space
            return self.emu.datahub_path(v.kind, v.asset_id, v.version_id, path)  # type: ignore[arg-type]
        return self.emu.private_path(path)

    # -- the CLI ---------------------------------------------------------------------------
    def remote(self) -> str:
        if isinstance(self.space, DatahubSpace):
            return f"{self.space.kind}:{self.space.asset_name}@{self.space.version_name}:/{self.root}"
        return f"private:/{self.root}"

    def flags(self) -> list[str]:
        return {"http": ["--transport", "http"], "sftp": ["--transport", "sftp"],
                "staged": ["--via", "staged", "--transport", "http"], "direct": ["--via", "direct"]}[self.kind]

    def sync_args(self, src: Path, *extra: str) -> list[str]:
        return ["--json", "sync", str(src), self.remote(), *self.flags(), "--chunk-size", "64KiB", *extra]

    @property
    def env(self) -> dict[str, str]:
        if not self._env:
            self._env = user_env(self.emu, self.tmp)
        return self._env

    def cli(self, src: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.sync_args(src, *extra), self.env, timeout=120)

    def popen(self, src: Path, bandwidth_limit: str) -> subprocess.Popen[bytes]:
        """The CLI in the background, slowed down so that a test can kill it half-way."""
        config = self.tmp / "slow.toml"
        config.write_text(f'[transfer]\nbandwidth_limit = "{bandwidth_limit}"\n', encoding="utf-8")
        return subprocess.Popen(hubsync_cmd("--config", str(config), *self.sync_args(src)), env=self.env,
                                cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- what the platform took in ---------------------------------------------------------
    def mark(self) -> tuple[int, int]:
        """The current ends of the request log and the SFTP write log."""
        return len(self.emu.log_entries()), len(sftp_write_log(self.emu.root))

    def taken_in(self, since: tuple[int, int], rel: str) -> int:
        """Bytes of `rel` the platform holds so far (for SFTP: its part file, logged only at the end)."""
        if self.kind == "sftp":
            folder = self.on_disk(rel).parent
            return sum(p.stat().st_size for p in folder.glob("*hubsync-part*")) if folder.is_dir() else 0
        return sum(self.accepted(since).values())

    def accepted(self, since: tuple[int, int]) -> dict[Any, int]:
        """Bytes the platform accepted for this rig's files since `since`, per chunk (or SFTP write)."""
        if self.kind == "sftp":
            writes = sftp_write_log(self.emu.root)[since[1]:]
            return {("write", i): e["bytes"] for i, e in enumerate(writes) if self.root in e["path"]}
        call = DATAHUB_CHUNK_CALL if self.kind == "direct" else FILE_CHUNK_CALL
        found: dict[Any, int] = {}
        for e in self.emu.log_entries()[since[0]:]:
            if e["path"] == call and e["ok"] and "index" in e and self.root in e.get("currentPath", ""):
                key = (e.get("submitId") or e.get("fileMd5"), e.get("filePath") or e.get("fileName"), e["index"])
                found[key] = found.get(key, 0) + e["chunk_bytes"]
        return found
