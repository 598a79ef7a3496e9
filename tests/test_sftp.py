"""The SFTP transport against the emulator's asyncssh SFTP server, on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import asyncssh
import pytest

from emulator.accounts import SftpAccounts
from emulator.sftp_server import host_key_path
from emulator.storage import Space as EmuSpace
from emulator.testing import EmulatorThread
from transfer import remotepath
from transfer.agenttag import load_tag
from transfer.api import PlatformClient
from transfer.destinations.base import ConfirmItem, ResumeState
from transfer.destinations.sftp import MD5_PROBES, SftpDestination
from transfer.engine import Engine, SendItem
from transfer.errors import AuthFailed
from transfer.hashing import hash_file, stat_file
from transfer.journal import FileRecord, Journal
from transfer.models import RemoteTarget, SftpAccount, Space
from transfer.scope import RunScope

from .conftest import (
    ALICE,
    KEY,
    REPO,
    hubsync_cmd,
    json_lines,
    md5_of,
    run_cli,
    summary_of,
    wait_for,
    write_random,
)

MiB = 1 << 20
CS = 8 * MiB  # the default chunk size: the resume bound below is stated in chunks


def part_name(name: str, state: Path) -> str:
    """The part file the agent with state dir `state` writes `name` under."""
    return remotepath.part_name(name, load_tag(state))


def test_auto_switches_to_sftp_when_the_chunk_api_is_off(emu_sftp: EmulatorThread, sftp_env: dict,
                                                         tmp_path: Path) -> None:
    emu_sftp.faults.chunk_api_off = True
    src = tmp_path / "src"
    # Files from the small-file threshold (1 MiB) up would use the (disabled) chunk API.
    sizes = {"big.bin": 100 * MiB + 7, "中文 目录/数据 文件.bin": 2 * MiB + 1, "a/b/c.bin": CS + 1}
    # Smaller ones use the simple upload, which still works: over HTTP if sent before the run
    # switched, over SFTP after. Either is fine; the output must say which was used.
    small = {"small.txt": 1000, "empty.txt": 0}
    for i, (rel, size) in enumerate({**sizes, **small}.items()):
        write_random(src / rel, size, seed=i)
    result = run_cli(["--json", "sync", str(src), "private:/x"], sftp_env)
    summary = summary_of(result)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary["files_sent"] == 5
    done = {e["path"]: e["transport"] for e in json_lines(result.stdout) if e.get("event") == "done"}
    assert {done[rel] for rel in sizes} == {"sftp"}
    assert {done[rel] for rel in small} <= {"http", "sftp"}
    assert summary["transports"] == sorted(set(done.values()))
    infos = [e for e in json_lines(result.stdout) if e.get("event") == "info"]
    assert any("switching to sftp for 600s" in e.get("message", "") for e in infos), infos
    for rel in small:
        assert md5_of(emu_sftp.private_path(f"x/{rel}")) == md5_of(src / rel), rel
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
    part = emu_sftp.private_path("x/" + part_name("big.bin", tmp_path / "state"))
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
    rel_part = "x/" + part_name("big.bin", tmp_path / "state")
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
    part = emu_sftp.private_path("deep/er/" + part_name("f.bin", tmp_path))

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


async def test_a_refused_login_is_remembered_for_one_run_only(emu_sftp: EmulatorThread, tmp_path: Path) -> None:
    """A daemon keeps one SftpDestination for weeks: a refusal must not outlive the run that met it."""
    emu_sftp.sftp_refuse_logins = True
    src = write_random(tmp_path / "src" / "a.bin", MiB)
    local = stat_file(src, "a.bin")
    item = SendItem(local, RemoteTarget(Space.PRIVATE, "r", "a.bin"))
    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS)
        engine = Engine(journal, dest, chunk_size=CS)
        try:
            scope = RunScope()
            with pytest.raises(AuthFailed):
                await engine.run([item], scope=scope)
            fetched = _calls(emu_sftp, "/queryUserInfo")
            digest = hash_file(local)
            record = await journal.begin(local, "again", md5=digest.md5, chunk_size=CS, transport="sftp")
            with pytest.raises(AuthFailed):  # the same run: refused at once, the platform not asked again
                await dest.send(local, digest, item.target, ResumeState(journal, record, digest.md5, CS),
                                lambda n, c: None, scope=scope)
            assert _calls(emu_sftp, "/queryUserInfo") == fetched
            emu_sftp.sftp_refuse_logins = False  # the operator fixed the account
            summary = await engine.run([item])  # the next run tries again
            assert summary.files_sent == 1
        finally:
            await dest.close()
            await journal.close()
    assert md5_of(emu_sftp.private_path("r/a.bin")) == md5_of(src)


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


# -- stale part files ---------------------------------------------------------------------------

DAY = 86400.0


class _Interrupted(Exception):
    pass


async def _interrupted_send(dest: SftpDestination, journal: Journal, src: Path, target: RemoteTarget,
                            key: str, stop_after: int) -> FileRecord:
    """Send until `stop_after` bytes went by, as a crashed run would; returns the journal's record."""
    local = stat_file(src, src.name)
    digest = hash_file(local)
    record = await journal.begin(local, key, md5=digest.md5, chunk_size=CS, transport="sftp")
    done = 0

    def stop(n: int, crossed: bool) -> None:
        nonlocal done
        done += n
        if done > stop_after:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        await dest.send(local, digest, target, ResumeState(journal, record, digest.md5, CS), stop)
    record = await journal.get(str(src), key)
    assert record is not None and record.resume["offset"] >= CS
    return record


def _age(path: Path, days: float) -> None:
    old = time.time() - days * DAY
    os.utime(path, (old, old))


@pytest.mark.parametrize("stale", [False, True])
async def test_a_stale_part_is_started_again_not_resumed(emu_sftp: EmulatorThread, tmp_path: Path,
                                                         stale: bool) -> None:
    size = 3 * CS + 11
    src = write_random(tmp_path / "s.bin", size, seed=5)
    target = RemoteTarget(Space.PRIVATE, "st", "s.bin")
    part = emu_sftp.private_path("st/" + part_name("s.bin", tmp_path))
    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS, stale_part_age=7 * DAY)
        try:
            record = await _interrupted_send(dest, journal, src, target, "k", stop_after=CS + CS // 2)
            offset = record.resume["offset"]
            _age(part, 8 if stale else 6)
            local = stat_file(src, src.name)
            sent = 0

            def count(n: int, crossed: bool) -> None:
                nonlocal sent
                sent += n if crossed else 0

            await dest.send(local, hash_file(local), target, ResumeState(journal, record, record.md5 or "", CS), count)
        finally:
            await dest.close()
            await journal.close()
    assert sent == (size if stale else size - offset)
    assert md5_of(emu_sftp.private_path("st/s.bin")) == md5_of(src) and not part.exists()


async def test_only_stale_parts_the_journal_names_as_ours_are_removed(emu_sftp: EmulatorThread,
                                                                      tmp_path: Path) -> None:
    def at(name: str) -> Path:
        return emu_sftp.private_path("p/" + part_name(name, tmp_path))

    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS, stale_part_age=7 * DAY)
        try:
            records = {}
            for name, key in [("old.bin", "ns1 private:/p/old.bin"), ("fresh.bin", "ns1 private:/p/fresh.bin"),
                              ("gone.bin", "ns1 private:/p/gone.bin"), ("other.bin", "ns2 private:/p/other.bin")]:
                src = write_random(tmp_path / name, 2 * CS + 1, seed=len(records))
                target = RemoteTarget(Space.PRIVATE, "p", name)
                records[name] = await _interrupted_send(dest, journal, src, target, key, stop_after=CS + 1)
            await journal.update(records["old.bin"].id, state="failed", last_error="x")
            for name in ("old.bin", "other.bin"):
                _age(at(name), 8)
            _age(at("fresh.bin"), 6)
            at("gone.bin").unlink()
            foreign = at("foreign.bin")  # same naming, old, but no record of this agent names it
            foreign.write_bytes(b"someone else's")
            _age(foreign, 30)

            removed = await dest.remove_stale_parts(journal, "ns1 ")

            assert removed == ["private:/p/" + part_name("old.bin", tmp_path)]
            assert not at("old.bin").exists()
            assert at("fresh.bin").exists() and at("other.bin").exists() and foreign.exists()
            after = {name: await journal.get(str(tmp_path / name), r.remote) for name, r in records.items()}
            assert after["old.bin"] is not None and after["old.bin"].resume.get("part") == ""
            assert after["gone.bin"] is not None and after["gone.bin"].resume.get("part") == ""
            assert after["fresh.bin"] is not None and after["fresh.bin"].resume.get("part") == "p/" + part_name("fresh.bin", tmp_path)
            assert await dest.remove_stale_parts(journal, "ns1 ") == []  # nothing named is left to remove
        finally:
            await dest.close()
            await journal.close()


# -- md5 through checkFileExist -------------------------------------------------------------------

async def test_confirm_reports_md5_held_where_the_platform_indexes_sftp_uploads(emu_sftp: EmulatorThread,
                                                                                tmp_path: Path) -> None:
    src = write_random(tmp_path / "m.bin", 2 * CS + 3, seed=8)
    target = RemoteTarget(Space.PRIVATE, "m", "m.bin")
    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS, confirm_concurrency=1)
        try:
            await _send_one(dest, journal, src, target)
            size, md5 = src.stat().st_size, md5_of(src)
            assert (await dest.confirm([ConfirmItem(target, size, md5)]))[0].error is None
            assert (dest.md5_confirmed, dest.md5_not_held) == (1, 0)
            # Content the platform does not hold (here: an md5 it never saw) is not a failure:
            # "not held" proves nothing. After MD5_PROBES such answers the run stops asking.
            before = _calls(emu_sftp, "/checkFileExist")
            others = [ConfirmItem(target, size, f"{i:032x}") for i in range(MD5_PROBES + 4)]
            run = RunScope()  # a new run: the "held" the first one saw is not carried over
            assert [c.error for c in await dest.confirm(others, scope=run)] == [None] * len(others)
            assert dest.md5_not_held == MD5_PROBES
            assert _calls(emu_sftp, "/checkFileExist") - before == MD5_PROBES
            # The size is still checked.
            wrong = await dest.confirm([ConfirmItem(target, size + 1, md5)], scope=run)
            assert wrong[0].error == f"holds {size} bytes over SFTP, expected {size + 1}"
            # The run's decision to stop asking ends with the run: a daemon's next batch asks again.
            before = _calls(emu_sftp, "/checkFileExist")
            assert (await dest.confirm(others[:1], scope=RunScope()))[0].error is None
            assert _calls(emu_sftp, "/checkFileExist") - before == 1
        finally:
            await dest.close()
            await journal.close()


async def test_confirm_falls_back_to_the_size_when_checkfileexist_is_off(emu_sftp: EmulatorThread,
                                                                         tmp_path: Path) -> None:
    src = write_random(tmp_path / "n.bin", CS + 9, seed=4)
    targets = [RemoteTarget(Space.PRIVATE, "n", f"n{i}.bin") for i in range(3)]
    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS, confirm_concurrency=1)
        try:
            for target in targets:
                await _send_one(dest, journal, src, target)
            emu_sftp.faults.chunk_api_off = True
            before = _calls(emu_sftp, "/checkFileExist")
            items = [ConfirmItem(t, src.stat().st_size, md5_of(src)) for t in targets]
            assert [c.error for c in await dest.confirm(items)] == [None, None, None]
            assert dest.md5_confirmed == 0
            assert _calls(emu_sftp, "/checkFileExist") - before == 1  # one 404, then no more asking
        finally:
            await dest.close()
            await journal.close()


async def test_a_small_file_is_four_round_trips_and_a_folder_is_made_once_per_run(
        emu_sftp: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At a 20 ms round trip, the requests in a row are what a small file costs: open (truncating a
    part file nothing was known written to), write, close with the part's size asked meanwhile, and
    the rename. Each folder is made once per run, and made again if it went away meanwhile."""
    requests: Counter[int | bytes] = Counter()
    real = asyncssh.sftp.SFTPClientHandler._make_request

    async def spy(self: asyncssh.sftp.SFTPClientHandler, pkttype: int | bytes, *args: object) -> object:
        requests[pkttype] += 1
        return await real(self, pkttype, *args)

    monkeypatch.setattr(asyncssh.sftp.SFTPClientHandler, "_make_request", spy)
    rels = ["a/b/1.bin", "a/b/2.bin", "a/b/3.bin", "a/c/4.bin", "a/c/5.bin"]
    for i, rel in enumerate(rels):
        write_random(tmp_path / "src" / rel, 4096 + i, seed=i)
    scope = RunScope()
    async with PlatformClient(emu_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS)

        async def send(rel: str) -> None:
            local = stat_file(tmp_path / "src" / rel, rel)
            digest = hash_file(local)
            record = await journal.begin(local, rel, md5=digest.md5, chunk_size=CS, transport="sftp")
            folder, _, name = rel.rpartition("/")
            await dest.send(local, digest, RemoteTarget(Space.PRIVATE, folder, name),
                            ResumeState(journal, record, digest.md5, CS), lambda n, crossed: None, scope=scope)

        try:
            await asyncio.gather(*(send(rel) for rel in rels))
            assert requests == {asyncssh.FXP_MKDIR: 3, asyncssh.FXP_OPEN: 5, asyncssh.FXP_WRITE: 5,
                                asyncssh.FXP_CLOSE: 5, asyncssh.FXP_STAT: 5, b"posix-rename@openssh.com": 5,
                                b"limits@openssh.com": 1}  # once per session
            shutil.rmtree(emu_sftp.private_path("a/c"))  # someone removes a folder the run made
            write_random(tmp_path / "src" / "a/c/6.bin", 100, seed=9)
            await send("a/c/6.bin")
        finally:
            await dest.close()
            await journal.close()
    for rel in [*rels[:3], "a/c/6.bin"]:  # 4 and 5 went with the folder
        assert md5_of(emu_sftp.private_path(rel)) == md5_of(tmp_path / "src" / rel), rel
    assert not list(emu_sftp.private_path("a").rglob("*" + remotepath.PART_SUFFIX))
