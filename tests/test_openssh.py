"""SftpDestination against a real OpenSSH server: Debian's sshd, started by the test on loopback.

The platform's SFTP service is most likely OpenSSH, so the transport must work against its
SFTP server (internal-sftp) and not only against the emulator's asyncssh one.

- The account is a local user made for this module. Its password is the one the emulator's
  account store generated, so the client gets it the honest way, from queryUserInfo.
- The emulator runs no SFTP server of its own here. Its `sftp_port` (what queryUserInfo
  reports) is sshd's port, and the empty `address` makes the client use the platform URL's
  host, 127.0.0.1, where sshd listens.
- No chroot (emulator/openssh.py, which runs sshd and makes the account, says why): the account's
  home is the login dir, and SftpDestination's paths are relative to it (protocol.md §4: the
  account's home is the space's root).

Without root, or without /usr/sbin/sshd (Debian's `openssh-server`; `.ci/run` installs it),
every test here is skipped, and the skip says why.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.delayproxy import DelayProxy
from emulator.accounts import SftpAccounts
from emulator.config import EmulatorUser
from emulator.openssh import LocalAccount, Sshd, SshdUnavailable, free_port, requirements, uid_of
from emulator.storage import Space as EmuSpace
from emulator.testing import EmulatorThread
from transfer.agenttag import load_tag
from transfer.api import PlatformClient
from transfer.destinations.base import ResumeState
from transfer.destinations.sftp import SftpDestination
from transfer.engine import Engine, SendItem
from transfer.errors import Fatal
from transfer.hashing import hash_file, stat_file
from transfer.journal import Journal
from transfer.models import RemoteTarget, Space
from transfer.readback import Md5Sink
from transfer.remotepath import RemoteFolder, part_name

from .conftest import KEY, md5_of, write_random

PLATFORM_PASSWORD = "Test@123"
MiB = 1 << 20
CS = MiB  # small chunks: a few MiB make many of them


@dataclass
class Account:
    """The local user sshd authenticates, and the emulator whose queryUserInfo points at sshd."""

    name: str
    home: Path
    port: int
    emu: EmulatorThread


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    try:
        requirements()
    except SshdUnavailable as exc:
        pytest.skip(f"OpenSSH test skipped: {exc}")
    local = LocalAccount()
    root = tmp_path_factory.mktemp("openssh") / "platform"
    root.mkdir()
    try:
        try:
            local.create()
            # The emulator's store generates the account's password; the local user gets the same.
            local.set_password(SftpAccounts(root).get(EmuSpace("private", 5), local.name).password)
        except SshdUnavailable as exc:
            pytest.skip(f"OpenSSH test skipped: {exc}")
        port = free_port()
        with EmulatorThread(root, users=[EmulatorUser(local.name, PLATFORM_PASSWORD, 5, 101)], sftp_port=port) as emu:
            yield Account(local.name, local.home, port, emu)
    finally:
        local.remove()


@pytest.fixture
def sshd(account: Account, tmp_path: Path) -> Iterator[Sshd]:
    workdir = tmp_path / "sshd"
    workdir.mkdir()
    server = Sshd(workdir, account.name, account.port)
    try:
        server.start()
    except SshdUnavailable as exc:
        pytest.skip(f"OpenSSH test skipped: {exc}")
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Rig:
    account: Account
    api: PlatformClient
    journal: Journal
    pin_file: Path
    remote_root: str

    def destination(self, **kwargs: object) -> SftpDestination:
        return SftpDestination(self.api, pin_file=self.pin_file, chunk_size=CS, block_size=64 << 10,
                               **kwargs)  # type: ignore[arg-type]

    def on_disk(self, rel: str) -> Path:
        return self.account.home / self.remote_root / rel

    def items(self, src: Path, rels: list[str]) -> list[SendItem]:
        return [SendItem(stat_file(src / rel, rel),
                         RemoteFolder(Space.PRIVATE, self.remote_root).target(rel)) for rel in rels]


@pytest.fixture
async def rig(account: Account, sshd: Sshd, tmp_path: Path) -> AsyncIterator[Rig]:
    async with PlatformClient(account.emu.url, username=account.name, password=PLATFORM_PASSWORD,
                              password_key=KEY) as api:
        journal = await Journal(tmp_path / "journal.sqlite3").open()
        try:
            yield Rig(account, api, journal, tmp_path / "known_hosts", tmp_path.name)
        finally:
            await journal.close()


SIZES = {
    "zero.bin": 0,
    "one.bin": 1,
    "cs-1.bin": CS - 1,
    "cs+1.bin": CS + 1,
    "a/b/c/deep.bin": 2 * CS,
    "中文目录/数据 文件.bin": 3 * CS + 17,
    "with space/big file.dat": 5 * MiB + 3,
}


async def test_sizes_names_and_overwrite(rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncssh.sftp")
    src = tmp_path / "src"
    for i, (rel, size) in enumerate(SIZES.items()):
        write_random(src / rel, size, seed=i)
    dest = rig.destination()
    try:
        summary = await Engine(rig.journal, dest, chunk_size=CS).run(rig.items(src, list(SIZES)))
        assert summary.failures == [] and summary.files_sent == len(SIZES)
        assert summary.transports == {"sftp"}
        uid = uid_of(rig.account.name)
        for rel in SIZES:
            assert md5_of(rig.on_disk(rel)) == md5_of(src / rel), rel
            assert rig.on_disk(rel).stat().st_uid == uid, rel  # written by sshd as the account
        assert not list(rig.on_disk("").rglob("*.hubsync-part"))
        # The emulator never saw these bytes: checkFileExist cannot vouch for them, and the
        # size check alone confirms them (asked for every non-empty file, none failed for it).
        assert dest.md5_confirmed == 0 and dest.md5_not_held == len(SIZES) - 1

        # Overwrite with shorter content: OpenSSH's posix-rename replaces the target atomically.
        new = write_random(src / "cs+1.bin", CS // 2 + 3, seed=99)
        summary = await Engine(rig.journal, dest, chunk_size=CS).run(rig.items(src, ["cs+1.bin"]))
        assert summary.failures == [] and summary.files_sent == 1
        assert md5_of(rig.on_disk("cs+1.bin")) == md5_of(new)
        assert rig.on_disk("cs+1.bin").stat().st_size == CS // 2 + 3
    finally:
        await dest.close()
    # Every file was put in place by OpenSSH's posix-rename extension, none by remove + rename.
    requests = [r.getMessage() for r in caplog.records if "rename request" in r.getMessage()]
    assert len(requests) == len(SIZES) + 1 and all("POSIX rename" in m for m in requests), requests
    assert sum(part_name("cs+1.bin", load_tag(rig.pin_file.parent)) in m for m in requests) == 2


@pytest.mark.parametrize("corrupt", [False, True])
async def test_resume_of_a_partial_upload(rig: Rig, tmp_path: Path, corrupt: bool) -> None:
    size = 12 * CS + 5
    src = write_random(tmp_path / "src" / "f.bin", size, seed=3)
    local = stat_file(src, "f.bin")
    digest = hash_file(local)
    target = RemoteTarget(Space.PRIVATE, f"{rig.remote_root}/x", "f.bin")
    part = rig.on_disk("x/" + part_name("f.bin", load_tag(rig.pin_file.parent)))

    class Interrupted(Exception):
        pass

    dest = rig.destination()
    try:
        record = await rig.journal.begin(local, "k", md5=digest.md5, chunk_size=CS, transport="sftp")
        done = 0

        def stop_midway(n: int, crossed: bool) -> None:
            nonlocal done
            done += n
            if done > 6 * CS:
                raise Interrupted

        with pytest.raises(Interrupted):
            await dest.send(local, digest, target, ResumeState(rig.journal, record, digest.md5, CS), stop_midway)
        record = await rig.journal.get(str(src), "k")
        assert record is not None
        offset = record.resume["offset"]
        assert CS <= offset <= part.stat().st_size and not rig.on_disk("x/f.bin").exists()
        if corrupt:
            _corrupt(part, offset)
        sent = 0

        def count(n: int, crossed: bool) -> None:
            nonlocal sent
            sent += n if crossed else 0

        await dest.send(local, digest, target, ResumeState(rig.journal, record, digest.md5, CS), count)
        if corrupt:  # the mismatching window, then the rest
            assert dest.resume_mismatches == 1 and sent == size - offset + CS
        else:
            assert dest.resume_mismatches == 0 and sent == size - offset
        assert md5_of(rig.on_disk("x/f.bin")) == digest.md5 and not part.exists()
    finally:
        await dest.close()


def _corrupt(part: Path, offset: int) -> None:
    """Flip bytes just before the recorded offset, and leave junk after it."""
    with open(part, "r+b") as f:
        f.seek(offset - 100)
        f.write(b"\xff" * 50)
        f.seek(offset)
        f.write(b"junk" * 1000)


def _fingerprints(text: str) -> set[str]:
    return set(re.findall(r"SHA256:[A-Za-z0-9+/]+", text))


async def _send(dest: SftpDestination, journal: Journal, src: Path, target: RemoteTarget) -> None:
    local = stat_file(src, src.name)
    digest = hash_file(local)
    record = await journal.begin(local, str(target), md5=digest.md5, chunk_size=CS, transport="sftp")
    await dest.send(local, digest, target, ResumeState(journal, record, digest.md5, CS), lambda n, c: None)


async def test_host_key_is_pinned_and_a_changed_one_refused(rig: Rig, sshd: Sshd, tmp_path: Path) -> None:
    first = write_random(tmp_path / "one.bin", 100_000)
    dest = rig.destination()
    try:
        await _send(dest, rig.journal, first, RemoteTarget(Space.PRIVATE, rig.remote_root, "one.bin"))
    finally:
        await dest.close()
    public = sshd.key.export_public_key("openssh").decode().split()[:2]
    assert rig.pin_file.read_text().split() == [f"[127.0.0.1]:{sshd.port}", *public]
    old = sshd.key.get_fingerprint("sha256")

    sshd.new_key()
    sshd.restart()
    new = sshd.key.get_fingerprint("sha256")
    assert new != old
    second = write_random(tmp_path / "two.bin", 100_000, seed=2)
    dest = rig.destination()
    try:
        with pytest.raises(Fatal) as refused:
            await _send(dest, rig.journal, second, RemoteTarget(Space.PRIVATE, rig.remote_root, "two.bin"))
    finally:
        await dest.close()
    message = str(refused.value)
    assert _fingerprints(message) == {old, new} and f"[127.0.0.1]:{sshd.port}" in message
    assert not rig.on_disk("two.bin").exists() and not rig.on_disk(part_name("two.bin", load_tag(rig.pin_file.parent))).exists()

    # A configured known_hosts holding the new key is trusted, and nothing gets pinned.
    known = tmp_path / "configured_known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(sshd.key.export_public_key('openssh').decode().split()[:2])}\n")
    dest = rig.destination(known_hosts=known)
    try:
        await _send(dest, rig.journal, second, RemoteTarget(Space.PRIVATE, rig.remote_root, "two.bin"))
    finally:
        await dest.close()
    assert md5_of(rig.on_disk("two.bin")) == md5_of(second)


async def test_read_back_over_openssh(rig: Rig, tmp_path: Path) -> None:
    """`check --download` reads files back through the same account, pinned key and pacing."""
    src = tmp_path / "src"
    sizes = {"zero.bin": 0, "small.bin": 1000, "big.bin": 9 * MiB + 7}  # big: more than two READ_PIECEs
    for i, (rel, size) in enumerate(sizes.items()):
        write_random(src / rel, size, seed=i)
    dest = rig.destination()
    try:
        assert (await Engine(rig.journal, dest, chunk_size=CS).run(rig.items(src, list(sizes)))).failures == []
        await dest.connect(Space.PRIVATE)
        folder = RemoteFolder(Space.PRIVATE, rig.remote_root)
        for rel in sizes:
            sink = Md5Sink()
            await dest.read_into(folder.target(rel), sink)
            assert (await sink.hexdigest(), sink.position) == (md5_of(src / rel), sizes[rel]), rel
        on_disk = rig.on_disk("big.bin")
        await asyncio.to_thread(_flip_byte, on_disk, 5 * MiB)  # in the second piece
        sink = Md5Sink()
        await dest.read_into(folder.target("big.bin"), sink)
        assert await sink.hexdigest() == md5_of(on_disk) != md5_of(src / "big.bin")
        with pytest.raises(Fatal, match="SFTP server refused"):
            await dest.read_into(folder.target("gone.bin"), Md5Sink())
    finally:
        await dest.close()


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 1]))


async def test_far_away_a_large_file_goes_through_several_openssh_channels(rig: Rig, tmp_path: Path) -> None:
    """100 ms away (the bench's delay proxy before sshd), one channel's 2 MiB window binds: more
    channels of the one connection write the part file, each through its own handle, md5-exact."""
    size = 64 * MiB + 7
    src = write_random(tmp_path / "src" / "far.bin", size, seed=11)
    local = stat_file(src, "far.bin")
    digest = hash_file(local)
    target = RemoteTarget(Space.PRIVATE, f"{rig.remote_root}/far", "far.bin")
    emu = rig.account.emu
    async with DelayProxy(("127.0.0.1", rig.account.port), 0.050) as proxy:
        emu.config.sftp_port = proxy.port  # what queryUserInfo reports: the proxy before sshd
        dest = SftpDestination(rig.api, pin_file=rig.pin_file)  # the defaults: 8 MiB chunks, 255 KiB writes
        try:
            record = await rig.journal.begin(local, "far", md5=digest.md5, chunk_size=8 * MiB, transport="sftp")
            await dest.send(local, digest, target, ResumeState(rig.journal, record, digest.md5, 8 * MiB),
                            lambda n, crossed: None)
            assert dest.channels(Space.PRIVATE) >= 2
        finally:
            await dest.close()
            emu.config.sftp_port = rig.account.port
    assert md5_of(rig.on_disk("far/far.bin")) == digest.md5
    assert not list(rig.on_disk("far").glob("*.hubsync-part"))
