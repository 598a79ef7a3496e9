"""The platform is the truth (#11): files the journal calls done are checked against the remote."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.destinations.chunked import ChunkedDestination
from transfer.drift import drift
from transfer.engine import Engine, SendItem
from transfer.folders import RemoteFolders
from transfer.hashing import stat_file
from transfer.journal import Journal
from transfer.models import RemoteEntry, RemoteTarget, Space

from .conftest import ALICE, KEY, json_lines, md5_of, run_cli, summary_of, write_random


def _entry(size: int, mtime_ms: int | None = None, is_dir: bool = False) -> RemoteEntry:
    return RemoteEntry("f", "d/f", is_dir, size, mtime_ms)


def test_drift_rules() -> None:
    seen = 1_000_000_000  # the platform's time for the file when it was confirmed (its clock, ms)
    assert drift(10, seen, None) == "missing on the remote"
    assert "bytes on the remote" in (drift(10, seen, _entry(11)) or "")
    assert drift(10, seen, _entry(0, is_dir=True)) is not None
    assert drift(10, seen, _entry(10, seen)) is None  # as confirmed
    assert drift(10, seen, _entry(10, seen + 999)) is None  # SFTP's whole seconds against a listing's ms
    assert drift(10, seen, _entry(10, seen + 60_000)) == "changed on the remote since it was sent"
    assert drift(10, seen, _entry(10, seen - 60_000)) is not None  # replaced by a file with an older time
    assert drift(10, seen, _entry(10, None)) is None  # no time in the listing: size decides
    assert drift(10, None, _entry(10, seen + 60_000)) is None  # none recorded (an older journal): size decides


def _sync(src: Path, env: dict, *extra: str) -> dict:
    result = run_cli(["--json", "sync", str(src), "private:/d", *extra], env)
    assert result.returncode == 0, result.stderr
    return summary_of(result)


def test_sync_repairs_remote_drift(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(4):
        write_random(src / f"sub/f{i}.bin", 3000 + i, seed=i)
    write_random(src / "top.bin", 5000, seed=9)
    assert _sync(src, hub_env)["files_sent"] == 5
    # Someone else touches the remote: one file deleted, one replaced with other bytes (other
    # size), one replaced with the same size (seen by its update time), a whole folder removed.
    emu.private_path("d/sub/f0.bin").unlink()
    emu.private_path("d/sub/f1.bin").write_bytes(b"not what was sent")
    same = emu.private_path("d/sub/f2.bin")
    same.write_bytes(bytes(3002))
    later = time.time() + 60
    os.utime(same, (later, later))
    # --trust-journal is the stat-only fast path: it sees nothing (old behaviour, kept on request).
    trusted = _sync(src, hub_env, "--trust-journal")
    assert trusted["files_sent"] == 0 and trusted["files_skipped"] == 5
    # The default run lists the remote and repairs the three, md5-exact.
    summary = _sync(src, hub_env)
    assert summary["files_repaired"] == 3 and summary["files_sent"] == 3 and summary["files_skipped"] == 2
    for i in range(4):
        assert md5_of(emu.private_path(f"d/sub/f{i}.bin")) == md5_of(src / f"sub/f{i}.bin")
    # A folder deleted on the remote: its files are sent again (the folder made anew).
    shutil.rmtree(emu.private_path("d/sub"))
    again = _sync(src, hub_env)
    assert again["files_repaired"] == 4
    assert md5_of(emu.private_path("d/sub/f3.bin")) == md5_of(src / "sub/f3.bin")
    # And once all is well, nothing is sent.
    quiet = _sync(src, hub_env)
    assert quiet["files_sent"] == 0 and quiet["files_repaired"] == 0 and quiet["files_skipped"] == 5


def test_text_summary_says_repaired(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 100, seed=1)
    assert run_cli(["sync", str(src), "private:/t"], hub_env).returncode == 0
    emu.private_path("t/a.bin").unlink()
    result = run_cli(["sync", str(src), "private:/t"], hub_env)
    assert result.returncode == 0, result.stderr
    assert "1 sent (1 repaired" in result.stdout, result.stdout
    assert md5_of(emu.private_path("t/a.bin")) == md5_of(src / "a.bin")


def test_check_reports_drift_then_nothing(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 300, seed=1)
    write_random(src / "b.bin", 400, seed=2)
    assert run_cli(["sync", str(src), "private:/c"], hub_env).returncode == 0
    assert run_cli(["check", str(src), "private:/c"], hub_env).returncode == 0
    emu.private_path("c/a.bin").unlink()
    emu.private_path("c/b.bin").write_bytes(b"other")
    emu.private_path("c/extra.txt").write_bytes(b"x")
    before = run_cli(["check", str(src), "private:/c"], hub_env)
    assert before.returncode == 1, before.stderr
    lines = before.stdout.splitlines()
    assert any(line.startswith("missing") and "a.bin" in line for line in lines)
    assert any(line.startswith("size") and "b.bin" in line for line in lines)
    assert any(line.startswith("only_remote") and "extra.txt" in line for line in lines)
    assert run_cli(["sync", str(src), "private:/c", "--delete"], hub_env).returncode == 0
    after = run_cli(["-q", "check", str(src), "private:/c"], hub_env)
    assert after.returncode == 0 and after.stdout == "", after.stdout


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
def test_a_skewed_platform_clock_neither_fakes_nor_hides_a_change(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path, offset: float,
) -> None:
    # The platform's clock an hour ahead of ours (every file would look changed there after it
    # was confirmed) or behind it (a replacement would look older than the confirmation).
    emu.faults.clock_offset = offset
    src = tmp_path / "src"
    for i in range(3):
        write_random(src / f"f{i}.bin", 2000, seed=i)
    assert _sync(src, hub_env)["files_sent"] == 3
    noop = _sync(src, hub_env)
    assert noop["files_repaired"] == 0 and noop["files_sent"] == 0 and noop["files_skipped"] == 3
    # Replaced there by other bytes of the same size, a little later on the platform's clock.
    replaced = emu.private_path("d/f1.bin")
    before = replaced.stat().st_mtime
    replaced.write_bytes(bytes(2000))
    os.utime(replaced, (before + 30, before + 30))
    summary = _sync(src, hub_env)
    assert summary["files_repaired"] == 1 and summary["files_sent"] == 1, summary
    assert md5_of(replaced) == md5_of(src / "f1.bin")
    assert _sync(src, hub_env)["files_repaired"] == 0


def test_over_sftp_the_servers_mtime_is_the_baseline(emu_sftp: EmulatorThread, sftp_env: dict, tmp_path: Path) -> None:
    emu_sftp.faults.clock_offset = 3600.0
    src = tmp_path / "src"
    write_random(src / "a.bin", 3000, seed=1)
    first = _sync(src, sftp_env, "--transport", "sftp")
    assert first["files_sent"] == 1 and first["transports"] == ["sftp"], first
    assert _sync(src, sftp_env, "--transport", "sftp")["files_repaired"] == 0  # its whole seconds match the listing
    remote = emu_sftp.private_path("d/a.bin")
    before = remote.stat().st_mtime
    remote.write_bytes(bytes(3000))
    os.utime(remote, (before + 30, before + 30))
    assert _sync(src, sftp_env, "--transport", "sftp")["files_repaired"] == 1
    assert md5_of(remote) == md5_of(src / "a.bin")


def test_a_journal_from_before_remote_times_takes_the_listings_time_as_its_baseline(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 2000, seed=1)
    assert _sync(src, hub_env)["files_sent"] == 1
    journal = tmp_path / "state" / "journal.sqlite3"
    with sqlite3.connect(journal) as conn:  # as a journal of schema 3 holds it after the upgrade
        conn.execute("UPDATE files SET remote_mtime_ms=NULL")
    remote = emu.private_path("d/a.bin")
    later = remote.stat().st_mtime + 30
    os.utime(remote, (later, later))
    # No time recorded: size decides (no false repair), and the time shown now is kept...
    assert _sync(src, hub_env)["files_repaired"] == 0
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT remote_mtime_ms FROM files").fetchone()[0] == int(later * 1000)
    # ...so a later replacement of the same size is seen.
    remote.write_bytes(bytes(2000))
    os.utime(remote, (later + 30, later + 30))
    assert _sync(src, hub_env)["files_repaired"] == 1
    assert md5_of(remote) == md5_of(src / "a.bin")


async def test_a_write_into_a_folder_deleted_since_it_was_made_makes_it_again(emu: EmulatorThread, tmp_path: Path) -> None:
    """One engine kept for days (as the daemon's): its cache of folders made goes stale when the
    folder is deleted there; the refused write makes it again and goes, with no listing first."""
    src = tmp_path / "src"
    small, big = write_random(src / "small.bin", 500, seed=1), write_random(src / "big.bin", 3 << 16, seed=2)
    cs = 1 << 16
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        try:
            engine = Engine(journal, ChunkedDestination(api, RemoteFolders(api), chunk_size=cs,
                                                        small_file_threshold=cs), chunk_size=cs)

            def items() -> list[SendItem]:
                return [SendItem(stat_file(p, p.name), RemoteTarget(Space.PRIVATE, "w/x/y", p.name))
                        for p in (small, big)]

            assert (await engine.run(items())).files_sent == 2
            shutil.rmtree(emu.private_path("w/x"))
            write_random(small, 600, seed=3)
            write_random(big, 3 << 16, seed=4)
            emu.clear_log()
            summary = await engine.run(items())
        finally:
            await journal.close()
    assert (summary.files_sent, summary.files_failed) == (2, 0), summary.failures
    assert md5_of(emu.private_path("w/x/y/small.bin")) == md5_of(small)
    assert md5_of(emu.private_path("w/x/y/big.bin")) == md5_of(big)
    made = [e for e in emu.log_entries() if e["path"].endswith("/addFolder") and e.get("ok")]
    assert len(made) == 2, made  # x and y, once each (w was still there)


def test_dry_run_lists_the_remote_and_shows_what_it_would_repair(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    for i in range(3):
        write_random(src / f"f{i}.bin", 1000 + i, seed=i)
    assert _sync(src, hub_env)["files_sent"] == 3
    emu.private_path("d/f0.bin").unlink()
    emu.private_path("d/f1.bin").write_bytes(b"other")
    write_random(src / "new.bin", 10, seed=9)
    journal = tmp_path / "state" / "journal.sqlite3"
    with sqlite3.connect(journal) as conn:
        before = conn.execute("SELECT local_path, state, done_at, remote_mtime_ms FROM files ORDER BY 1").fetchall()
    dry = run_cli(["--json", "sync", str(src), "private:/d", "--dry-run"], hub_env)
    assert dry.returncode == 0, dry.stderr
    events = json_lines(dry.stdout)
    repairs = {e["path"]: e["reason"] for e in events if e.get("event") == "would_repair"}
    assert repairs == {"f0.bin": "missing on the remote", "f1.bin": "5 bytes on the remote, 1001 here"}
    assert [e["path"] for e in events if e.get("event") == "would_send"] == ["new.bin"]
    summary = events[-1]
    assert (summary["files_to_send"], summary["files_to_repair"], summary["files_unchanged"]) == (3, 2, 1), summary
    assert summary["bytes_to_send"] == 1000 + 1001 + 10
    text = run_cli(["sync", str(src), "private:/d", "--dry-run"], hub_env)
    assert "would repair f0.bin -> private:/d/f0.bin (missing on the remote)" in text.stdout, text.stdout
    assert "dry run: 3 to send (2 repairs), 1 unchanged" in text.stdout + text.stderr
    # Nothing was sent or recorded; --trust-journal plans from the journal alone.
    assert not emu.private_path("d/f0.bin").exists() and emu.private_path("d/f1.bin").read_bytes() == b"other"
    with sqlite3.connect(journal) as conn:
        after = conn.execute("SELECT local_path, state, done_at, remote_mtime_ms FROM files ORDER BY 1").fetchall()
    assert after == before
    trusted = json_lines(run_cli(["--json", "sync", str(src), "private:/d", "--dry-run", "--trust-journal"],
                                 hub_env).stdout)[-1]
    assert (trusted["files_to_send"], trusted["files_to_repair"], trusted["files_unchanged"]) == (1, 0, 3)
    # The real run repairs what the dry run showed.
    assert _sync(src, hub_env)["files_repaired"] == 2
