"""One suite, every file-space destination (rclone's fstests idea): the engine drives each the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.destinations.base import Destination
from transfer.destinations.chunked import ChunkedDestination
from transfer.destinations.sftp import SftpDestination
from transfer.engine import Engine, SendItem
from transfer.folders import RemoteFolders
from transfer.hashing import stat_file
from transfer.journal import Journal
from transfer.models import RemoteTarget, Space, join_remote
from transfer.progress import Event

from .conftest import ALICE, KEY, md5_of, write_random

MiB = 1 << 20
CS = MiB  # small chunks: a few MiB make many of them


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path_factory.mktemp("conformance") / "platform", sftp=True) as server:
        yield server


@dataclass
class Rig:
    emu: EmulatorThread
    api: PlatformClient
    destination: Destination
    journal: Journal
    remote_root: str

    def engine(self, progress: object = None) -> Engine:
        return Engine(self.journal, self.destination, chunk_size=CS, settle_seconds=0.05,
                      progress=progress)  # type: ignore[arg-type]

    def items(self, src: Path, rels: list[str]) -> list[SendItem]:
        return [SendItem(stat_file(src / rel, rel), RemoteTarget(Space.PRIVATE, *_split(join_remote(self.remote_root, rel))))
                for rel in rels]

    def on_disk(self, rel: str) -> Path:
        return self.emu.private_path(join_remote(self.remote_root, rel))


def _split(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition("/")
    return folder, name


@pytest.fixture(params=["http", "sftp"])
async def rig(request: pytest.FixtureRequest, platform: EmulatorThread, tmp_path: Path) -> AsyncIterator[Rig]:
    async with PlatformClient(platform.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        destination: Destination
        if request.param == "http":
            destination = ChunkedDestination(api, RemoteFolders(api), chunk_size=CS, small_file_threshold=CS)
        else:
            destination = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS, block_size=64 << 10)
        journal = await Journal(tmp_path / "journal.sqlite3").open()
        try:
            yield Rig(platform, api, destination, journal, f"conf/{request.param}/{tmp_path.name}")
        finally:
            if isinstance(destination, SftpDestination):
                await destination.close()
            await journal.close()


SIZES = {
    "zero.bin": 0,
    "one.bin": 1,
    "cs-1.bin": CS - 1,
    "a/cs.bin": CS,
    "a/b/cs+1.bin": CS + 1,
    "中文目录/数据 文件.bin": 3 * CS + 17,
    "with space/big file.dat": 5 * MiB + 3,
}


async def test_sizes_and_names(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, (rel, size) in enumerate(SIZES.items()):
        write_random(src / rel, size, seed=i)
    summary = await rig.engine().run(rig.items(src, list(SIZES)))
    assert summary.failures == [] and summary.files_sent == len(SIZES)
    assert summary.transports == {rig.destination.transport}
    for rel in SIZES:
        assert md5_of(rig.on_disk(rel)) == md5_of(src / rel), rel
    assert not list(rig.emu.private_path(rig.remote_root).rglob("*.hubsync-part"))
    if isinstance(rig.destination, SftpDestination):  # the engine hands confirm() each file's md5
        assert rig.destination.md5_confirmed == sum(1 for size in SIZES.values() if size)


class _Interrupted(Exception):
    pass


class _StopAfter:
    """A progress sink that interrupts the run once `limit` bytes have gone by (a crash)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def emit(self, event: Event) -> None:
        if event.kind == "progress":
            self.seen += int(event.bytes or 0)
            if self.seen >= self.limit:
                raise _Interrupted


async def test_resume_after_a_partial_attempt(rig: Rig, tmp_path: Path) -> None:
    size = 12 * CS + 5
    src = tmp_path / "src"
    write_random(src / "resume.bin", size, seed=42)
    items = rig.items(src, ["resume.bin"])
    with pytest.raises(_Interrupted):
        await rig.engine(_StopAfter(6 * CS)).run(items)
    assert not rig.on_disk("resume.bin").exists()
    summary = await rig.engine().run(items)
    assert summary.failures == [] and summary.files_sent == 1
    assert 0 < summary.bytes_sent <= size - 3 * CS, summary.bytes_sent  # most of the first half was kept
    assert md5_of(rig.on_disk("resume.bin")) == md5_of(src / "resume.bin")


async def test_overwrite_with_new_content(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    path = write_random(src / "over.bin", 3 * CS + 1, seed=1)
    assert (await rig.engine().run(rig.items(src, ["over.bin"]))).files_sent == 1
    first = md5_of(rig.on_disk("over.bin"))
    write_random(path, 2 * CS + 7, seed=2)  # shorter and different
    summary = await rig.engine().run(rig.items(src, ["over.bin"]))
    assert summary.failures == [] and summary.files_sent == 1
    assert md5_of(rig.on_disk("over.bin")) == md5_of(path) != first
    assert rig.on_disk("over.bin").stat().st_size == 2 * CS + 7
