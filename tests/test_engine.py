"""The engine in-process against the emulator: crash points between merge and confirmation."""

from __future__ import annotations

from pathlib import Path

from agent.scanner import Excludes, scan
from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.destinations.chunked import ChunkedDestination
from transfer.engine import Engine, SendItem
from transfer.folders import RemoteFolders
from transfer.journal import Journal
from transfer.models import RemoteTarget, Space

from .conftest import ALICE, KEY, md5_of, write_random


async def test_merged_but_unconfirmed_files_are_confirmed_not_resent(emu: EmulatorThread, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(3):
        write_random(src / f"f{i}.bin", (2 << 20) + i, seed=i)
    items = [SendItem(f, RemoteTarget(Space.PRIVATE, "m", f.rel)) for f in scan(src, Excludes([])).files]
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        try:
            def engine() -> Engine:
                dest = ChunkedDestination(api, RemoteFolders(api), chunk_size=1 << 20)
                return Engine(journal, dest, chunk_size=1 << 20)

            first = await engine().run(items)
            assert first.files_sent == 3
            # Simulate a crash after mergeFile, before the listing confirmed the files.
            for item in items:
                record = await journal.get(str(item.local.path), item.remote)
                assert record is not None and record.state == "done"
                await journal.update(record.id, state="merged")
            emu.clear_log()
            second = await engine().run(items)
            assert second.files_sent == 3 and second.files_failed == 0
            paths = [e["path"] for e in emu.log_entries()]
            assert not any(p.endswith(("/uploadFile", "/mergeFile", "/checkFileExist")) for p in paths), paths
            # A merged file that the platform does not show is sent again, not trusted.
            record = await journal.get(str(items[0].local.path), items[0].remote)
            assert record is not None
            await journal.update(record.id, state="merged")
            emu.private_path("m/f0.bin").unlink()
            third = await engine().run(items)
            assert third.files_sent == 1 and third.files_skipped == 2
            assert md5_of(emu.private_path("m/f0.bin")) == md5_of(src / "f0.bin")
        finally:
            await journal.close()
