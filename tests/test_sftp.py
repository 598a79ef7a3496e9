"""The SFTP transport against the emulator's asyncssh SFTP server, on loopback."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from emulator.accounts import SftpAccounts
from emulator.sftp_server import host_key_path
from emulator.storage import Space as EmuSpace
from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.destinations.base import ConfirmItem, ResumeState
from transfer.destinations.sftp import SftpDestination, part_name
from transfer.errors import AuthFailed
from transfer.hashing import hash_file, stat_file
from transfer.journal import Journal
from transfer.models import RemoteTarget, SftpAccount, Space

from .conftest import (
    ALICE,
    KEY,
    REPO,
    hubsync_cmd,
    json_lines,
    md5_of,
    run_cli,
    summary_of,
    user_env,
    wait_for,
    write_random,
)

MiB = 1 << 20
CS = 8 * MiB  # the default chunk size: the resume bound below is stated in chunks


@pytest.fixture
def emu_sftp(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path / "platform", sftp=True) as server:
        yield server


@pytest.fixture
def sftp_env(emu_sftp: EmulatorThread, tmp_path: Path) -> dict[str, str]:
    return user_env(emu_sftp, tmp_path)


def test_auto_switches_to_sftp_when_the_chunk_api_is_off(emu_sftp: EmulatorThread, sftp_env: dict,
                                                         tmp_path: Path) -> None:
    emu_sftp.faults.chunk_api_off = True
    src = tmp_path / "src"
    # Every file is above the small-file threshold, so each would use the (disabled) chunk API.
    sizes = {"big.bin": 100 * MiB + 7, "中文 目录/数据 文件.bin": 2 * MiB + 1, "a/b/c.bin": CS + 1}
    for i, (rel, size) in enumerate(sizes.items()):
        write_random(src / rel, size, seed=i)
    result = run_cli(["--json", "sync", str(src), "private:/x"], sftp_env)
    summary = summary_of(result)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary["files_sent"] == 3 and summary["transports"] == ["sftp"]
    infos = [e for e in json_lines(result.stdout) if e.get("event") == "info"]
    assert any("switching this run to sftp" in e.get("message", "") for e in infos), infos
    for rel in sizes:
        assert md5_of(emu_sftp.private_path(f"x/{rel}")) == md5_of(src / rel), rel
    assert not list(emu_sftp.private_path("x").rglob("*.hubsync-part"))
    pinned = (tmp_path / "state" / "known_hosts").read_text()
    assert pinned.startswith(f"[127.0.0.1]:{emu_sftp.sftp_port} ssh-ed25519 ")


def test_kill_mid_upload_then_resume_sends_little_again(emu_sftp: EmulatorThread, sftp_env: dict,
                                                        tmp_path: Path) -> None:
    size = 200 * MiB + 3
    big = write_random(tmp_path / "src" / "big.bin", size)
    target = emu_sftp.private_path("x/big.bin")
    part = emu_sftp.private_path("x/" + part_name("big.bin"))
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the target must never show partial content
        while not stop.is_set():
            try:
                seen.append(target.stat().st_size)
            except FileNotFoundError:
                pass
            stop.wait(0.002)  # leave the GIL to the emulator's thread

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    args = hubsync_cmd("--json", "sync", "--transport", "sftp", str(big), "private:/x")
    proc = subprocess.Popen(args, env=sftp_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: part.exists() and part.stat().st_size >= 60 * MiB, timeout=60, interval=0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not target.exists()
    rel_part = "x/" + part_name("big.bin")
    first = wait_for(lambda: emu_sftp.sftp_writes(rel_part), timeout=30)  # logged once the server sees the drop
    assert 0 < first < size

    result = run_cli(["--json", "sync", "--transport", "sftp", str(big), "private:/x"], sftp_env)
    stop.set()
    watcher.join(timeout=10)
    summary = summary_of(result)
    assert result.returncode == 0 and summary["files_sent"] == 1 and summary["transports"] == ["sftp"]
    assert md5_of(target) == md5_of(big)
    assert not part.exists()
    written = emu_sftp.sftp_writes(rel_part)
    assert written <= size + 2 * CS, (first, written)
    assert summary["bytes_sent"] < size - 40 * MiB  # the rerun really resumed
    assert seen and set(seen) == {size}


async def test_corrupted_part_tail_is_detected_and_resent(emu_sftp: EmulatorThread, tmp_path: Path) -> None:
    size = 40 * MiB + 5
    src = write_random(tmp_path / "src" / "f.bin", size, seed=3)
    local = stat_file(src, "f.bin")
    digest = hash_file(local)
    target = RemoteTarget(Space.PRIVATE, "deep/er", "f.bin")
    part = emu_sftp.private_path("deep/er/" + part_name("f.bin"))

    class Interrupted(Exception):
        pass

    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS)
        try:
            record = await journal.begin(local, "k", md5=digest.md5, chunk_size=CS, transport="sftp")
            done = 0

            def stop_midway(n: int, crossed: bool) -> None:
                nonlocal done
                done += n
                if done > 25 * MiB:
                    raise Interrupted

            with pytest.raises(Interrupted):
                await dest.send(local, digest, target, ResumeState(journal, record, digest.md5, CS), stop_midway)
            record = await journal.get(str(src), "k")
            assert record is not None
            offset = record.resume["offset"]
            assert CS <= offset <= part.stat().st_size
            _corrupt(part, offset)
            before = emu_sftp.sftp_writes()
            sent = 0

            def count(n: int, crossed: bool) -> None:
                nonlocal sent
                sent += n if crossed else 0

            await dest.send(local, digest, target, ResumeState(journal, record, digest.md5, CS), count)
            assert dest.resume_mismatches == 1
            assert md5_of(emu_sftp.private_path("deep/er/f.bin")) == digest.md5
            assert sent == size - offset + CS  # the mismatching window, then the rest
            assert emu_sftp.sftp_writes() - before == sent
            assert (await dest.confirm([ConfirmItem(target, size)]))[0].error is None
        finally:
            await dest.close()
            await journal.close()


def _corrupt(part: Path, offset: int) -> None:
    """Flip bytes just before the recorded offset, and leave junk after it."""
    with open(part, "r+b") as f:
        f.seek(offset - 100)
        f.write(b"\xff" * 50)
        f.seek(offset)
        f.write(b"junk" * 1000)


def _fingerprints(text: str) -> set[str]:
    return set(re.findall(r"SHA256:[A-Za-z0-9+/]+", text))


def test_changed_host_key_is_refused_and_nothing_sent(emu_sftp: EmulatorThread, sftp_env: dict,
                                                     tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "one.bin", 2 * MiB)
    first = run_cli(["--json", "sync", "--transport", "sftp", str(src), "private:/x"], sftp_env)
    assert first.returncode == 0, first.stdout[-2000:]
    old_key = asyncssh.read_private_key(str(host_key_path(emu_sftp.root)))

    emu_sftp.stop_sftp()
    host_key_path(emu_sftp.root).unlink()
    emu_sftp.start_sftp()  # same port, new key
    new_key = asyncssh.read_private_key(str(host_key_path(emu_sftp.root)))
    assert new_key.get_fingerprint("sha256") != old_key.get_fingerprint("sha256")

    write_random(src / "two.bin", 2 * MiB, seed=9)
    before = emu_sftp.sftp_writes()
    second = run_cli(["--json", "sync", "--transport", "sftp", str(src), "private:/x"], sftp_env)
    assert second.returncode == 1
    failures = summary_of(second)["failures"]
    assert [f["path"] for f in failures] == ["two.bin"]
    message = failures[0]["error"]
    assert _fingerprints(message) == {old_key.get_fingerprint("sha256"), new_key.get_fingerprint("sha256")}
    assert f"[127.0.0.1]:{emu_sftp.sftp_port}" in message and "remove the line" in message
    assert emu_sftp.sftp_writes() == before
    assert not emu_sftp.private_path("x/two.bin").exists()


class _ResetBehindTheBack(PlatformClient):
    """A real client whose first account fetch is followed by someone else resetting the password."""

    def __init__(self, emu: EmulatorThread, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.emu = emu
        self.fetches = 0

    async def sftp_account(self, space: Space) -> SftpAccount:
        account = await super().sftp_account(space)
        self.fetches += 1
        if self.fetches == 1:
            SftpAccounts(self.emu.root).reset(EmuSpace("private", 5), "alice")
        return account


def _calls(emu: EmulatorThread, name: str) -> int:
    return sum(1 for e in emu.log_entries() if e["path"].endswith(name))


async def _send_one(dest: SftpDestination, journal: Journal, src: Path, target: RemoteTarget) -> None:
    local = stat_file(src, src.name)
    digest = hash_file(local)
    record = await journal.begin(local, str(target), md5=digest.md5, chunk_size=CS, transport="sftp")
    await dest.send(local, digest, target, ResumeState(journal, record, digest.md5, CS), lambda n, c: None)


async def test_a_password_changed_meanwhile_is_fetched_again_not_reset(emu_sftp: EmulatorThread,
                                                                      tmp_path: Path) -> None:
    src = write_random(tmp_path / "a.bin", 3 * MiB)
    target = RemoteTarget(Space.PRIVATE, "", "a.bin")
    async with _ResetBehindTheBack(emu_sftp, emu_sftp.url, username=ALICE[0], password=ALICE[1],
                                   password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", allow_password_reset=True)
        try:
            await _send_one(dest, journal, src, target)
        finally:
            await dest.close()
            await journal.close()
    assert api.fetches == 2 and _calls(emu_sftp, "/updateUserInfo") == 0
    assert md5_of(emu_sftp.private_path("a.bin")) == md5_of(src)


@pytest.mark.parametrize("allowed", [False, True])
async def test_password_reset_only_when_allowed_and_at_most_once(emu_sftp: EmulatorThread, tmp_path: Path,
                                                                 allowed: bool) -> None:
    emu_sftp.sftp_refuse_logins = True
    target = RemoteTarget(Space.PRIVATE, "", "a.bin")
    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", allow_password_reset=allowed)
        try:
            for name in ("a.bin", "b.bin"):  # the second file must not trigger another reset
                src = write_random(tmp_path / name, MiB)
                with pytest.raises(AuthFailed) as caught:
                    await _send_one(dest, journal, src, RemoteTarget(Space.PRIVATE, "", name))
                if allowed:
                    assert "even after a password reset" in str(caught.value)
                else:
                    assert "allow_password_reset = true" in str(caught.value)
        finally:
            await dest.close()
            await journal.close()
    assert _calls(emu_sftp, "/updateUserInfo") == (1 if allowed else 0)
    assert _calls(emu_sftp, "/queryUserInfo") == 2
    assert not emu_sftp.private_path(target.name).exists()
    assert emu_sftp.sftp_writes() == 0
    assert (tmp_path / "known_hosts").exists()  # the host key was pinned although login failed


def test_refused_sftp_login_stops_the_run_with_exit_3(emu_sftp: EmulatorThread, sftp_env: dict,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(3):
        write_random(src / f"f{i}.bin", 2 * MiB, seed=i)
    emu_sftp.sftp_refuse_logins = True
    result = run_cli(["sync", str(src), "private:/denied", "--transport", "sftp"], sftp_env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "allow_password_reset" in result.stderr
    assert _calls(emu_sftp, "updateUserInfo") == 0
