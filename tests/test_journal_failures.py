"""The journal's bad days (issue 12): corrupt, full disk, read-only, newer schema, two processes at once.

Each case uses a real journal file (or a real small tmpfs as the state dir, where the test runs
as root), runs the CLI as a subprocess with a deadline and asserts one clear line, no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread
from transfer.destinations.chunked import ChunkedDestination
from transfer.engine import Engine, SendItem
from transfer.errors import JournalError, JournalUnusable
from transfer.journal import MIGRATIONS, Journal, JournalView
from transfer.models import Digest, LocalFile, RemoteTarget, Space

from .conftest import REPO, hubsync_cmd, md5_of, run_cli, tree_md5s, user_env, write_random

ROOT = os.geteuid() == 0


def make_tree(root: Path, n: int, size: int = 700) -> None:
    for i in range(n):
        write_random(root / f"d{i % 7}" / f"f{i:04d}.bin", size + i, seed=i)


def journal_of(state: Path) -> Path:
    return state / "journal.sqlite3"


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# -- corrupt -----------------------------------------------------------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _truncated(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _bad_middle_page(path: Path) -> None:
    page = 4096
    pages = path.stat().st_size // page
    assert pages >= 6, pages  # a journal of some size: the middle page holds rows, not the schema
    with open(path, "r+b") as f:
        f.seek((pages // 2) * page)
        f.write(os.urandom(page))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _bad_middle_page], ids=["garbage", "truncated", "bad-page"])
def test_a_corrupt_journal_is_moved_aside_and_the_sync_carries_on(emu: EmulatorThread, tmp_path: Path, damage) -> None:
    src = tmp_path / "src"
    make_tree(src, 80)
    env = user_env(emu, tmp_path)
    state = tmp_path / "state"
    first = run_cli(["--json", "sync", str(src), "private:/c"], env, timeout=120)
    assert first.returncode == 0, first.stderr
    journal = journal_of(state)
    assert not Path(f"{journal}-wal").exists()  # closed cleanly: everything is in the file
    damage(journal)

    status = run_cli(["status"], env, timeout=60)
    assert_clean(status)
    assert status.returncode == 1 and "journal is corrupt" in status.stdout, (status.stdout, status.stderr)

    started = time.monotonic()
    again = run_cli(["sync", str(src), "private:/c"], env, timeout=120)
    assert time.monotonic() - started < 60
    assert_clean(again)
    assert again.returncode == 0, again.stderr
    warnings = [line for line in again.stderr.splitlines() if "corrupt" in line]
    assert len(warnings) == 1 and "moved it aside" in warnings[0], again.stderr
    aside = list(state.glob("journal.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].name[len("journal.sqlite3.corrupt-"):].endswith("Z")
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM files WHERE state='done'").fetchone()[0] == 80
    assert tree_md5s(emu.private_path("c")) == tree_md5s(src)

    status = run_cli(["status"], env, timeout=60)
    assert_clean(status)
    assert status.returncode == 0 and f"moved aside to {aside[0]}" in status.stdout, status.stdout


# -- full disk ---------------------------------------------------------------------------------
def _fill(directory: Path, leave: int) -> Path:
    """Fill the file system of `directory` to the last block, then free `leave` bytes."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        block = b"\0" * (64 << 10)
        with contextlib.suppress(OSError):
            while True:
                f.write(block)
                f.flush()
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size - leave))
    return filler


@pytest.mark.skipif(not ROOT, reason="mounting a small tmpfs as the state dir needs root")
def test_a_full_state_dir_stops_the_sync_within_seconds(emu: EmulatorThread, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 400, size=200)
    env = user_env(emu, tmp_path)
    emu.faults.latency = 0.01  # files go one after another for a while: the disk fills mid-run
    with tmpfs(tmp_path / "state", "16m") as state:
        filler = _fill(state, leave=160 << 10)
        started = time.monotonic()
        proc = subprocess.Popen(hubsync_cmd("sync", "--transfers", "2", str(src), "private:/full"), env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=60)  # today: never returns (workers dead, feeder blocked)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        elapsed = time.monotonic() - started
        assert "Traceback" not in err + out, err
        assert proc.returncode == 1, err
        assert err.strip().splitlines()[-1] == f"hubsync: no space left on device: {state} (state dir)", err
        assert elapsed < 30, elapsed
        landed = tree_md5s(emu.private_path("full"))
        assert 0 < len(landed) < 400, len(landed)  # it stopped mid-run, not at the start
        # Nothing half-written: the journal is sound and every remote file is whole.
        with contextlib.closing(sqlite3.connect(journal_of(state))) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for rel, md5 in landed.items():
            assert md5 == md5_of(src / rel), rel
        filler.unlink()
        again = run_cli(["sync", str(src), "private:/full"], env, timeout=120)
        assert again.returncode == 0, again.stderr
    assert tree_md5s(emu.private_path("full")) == tree_md5s(src)


class _Buggy(ChunkedDestination):
    """The real destination with a bug after a few files (what escapes a worker)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    async def send(self, local: LocalFile, digest: Digest, target: RemoteTarget, resume, on_bytes,
                   *, scope=None) -> None:
        self.calls += 1
        if self.calls > 3:
            raise RuntimeError("a bug in a destination")
        await super().send(local, digest, target, resume, on_bytes, scope=scope)


async def test_a_worker_that_dies_ends_the_run_instead_of_blocking_its_feeders(emu: EmulatorThread,
                                                                               tmp_path: Path) -> None:
    from agent.scanner import Excludes, scan
    from transfer.api import PlatformClient
    from transfer.folders import RemoteFolders

    from .conftest import ALICE, KEY

    src = tmp_path / "src"
    make_tree(src, 60)
    items = [SendItem(f, RemoteTarget(Space.PRIVATE, "w/" + f.rel.rsplit("/", 1)[0], f.rel.rsplit("/", 1)[1]))
             for f in scan(src, Excludes([])).files]
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        try:
            engine = Engine(journal, _Buggy(api, RemoteFolders(api)), transfers=2)
            with pytest.raises(RuntimeError, match="a bug"):
                await asyncio.wait_for(engine.run(items), timeout=30)
            assert engine.destination.calls == 4  # three files sent, then the bug: nothing else started
        finally:
            await journal.close()


# -- read-only, newer schema -------------------------------------------------------------------
@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """`directory` (holding what it holds) made read-only: a read-only tmpfs as root, else mode 0555."""
    if not ROOT:
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)
        return
    with tmpfs(directory.with_name(directory.name + "-ro"), "4m") as mount:
        for item in directory.iterdir():
            (mount / item.name).write_bytes(item.read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount


@pytest.mark.parametrize("with_journal", [True, False], ids=["journal", "empty"])
def test_a_read_only_state_dir_exits_2_naming_it(emu: EmulatorThread, tmp_path: Path, with_journal: bool) -> None:
    src = tmp_path / "src"
    make_tree(src, 3)
    env = user_env(emu, tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    if with_journal:
        assert run_cli(["sync", str(src), "private:/r"], env, timeout=60).returncode == 0
    with read_only(state) as directory:
        env["HUBSYNC_STATE_DIR"] = str(directory)
        result = run_cli(["sync", str(src), "private:/r"], env, timeout=60)
        assert_clean(result)
        assert result.returncode == 2, result.stderr
        assert f"state dir is not writable: {directory}" in result.stderr, result.stderr
        status = run_cli(["status"], env, timeout=60)
        assert_clean(status)
        assert status.returncode == 0, status.stderr
        if with_journal:
            assert "3 done" in status.stdout, status.stdout


def test_a_journal_from_a_newer_hubsync_exits_2(emu: EmulatorThread, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 2)
    env = user_env(emu, tmp_path)
    assert run_cli(["sync", str(src), "private:/n"], env, timeout=60).returncode == 0
    newer = len(MIGRATIONS) + 3
    with contextlib.closing(sqlite3.connect(journal_of(tmp_path / "state"))) as conn:
        conn.execute(f"PRAGMA user_version={newer}")
    expected = f"journal schema {newer} is newer than this hubsync ({len(MIGRATIONS)})"
    for args in (["sync", str(src), "private:/n"], ["status"]):
        result = run_cli(args, env, timeout=60)
        assert_clean(result)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr + result.stdout, (args, result.stdout, result.stderr)


async def test_the_journal_api_raises_typed_errors(tmp_path: Path) -> None:
    """What the CLI's exit codes rest on: JournalUnusable for a newer schema, JournalError for the rest."""
    path = tmp_path / "j.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(JournalUnusable, match="is newer than this hubsync"):
        await Journal(path).open()
    with pytest.raises(JournalUnusable, match="is newer than this hubsync"):
        JournalView(path).check()
    garbage = tmp_path / "g.sqlite3"
    garbage.write_bytes(b"not a database at all" * 500)
    with pytest.raises(JournalError, match="journal is corrupt"):
        JournalView(garbage).summary()


# -- two processes at once -------------------------------------------------------------------
def test_concurrent_first_opens_of_a_fresh_journal_all_succeed(tmp_path: Path) -> None:
    """Threads with their own connections race on fresh state dirs (today: "table files already exists")."""
    errors: list[BaseException] = []

    def open_once(path: Path, barrier: threading.Barrier) -> None:
        async def go() -> None:
            barrier.wait()
            journal = await Journal(path).open()
            await journal.close()

        try:
            asyncio.run(go())
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    for trial in range(25):
        path = tmp_path / f"s{trial}" / "journal.sqlite3"
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=open_once, args=(path, barrier)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_two_syncs_on_a_fresh_state_dir_both_work(emu: EmulatorThread, tmp_path: Path) -> None:
    env = user_env(emu, tmp_path)
    procs = []
    for name in ("a", "b"):
        make_tree(tmp_path / name, 5)
        procs.append(subprocess.Popen(hubsync_cmd("sync", str(tmp_path / name), f"private:/{name}"), env=env,
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Traceback" not in err, err
    for name in ("a", "b"):
        assert tree_md5s(emu.private_path(name)) == tree_md5s(tmp_path / name)


def test_the_daemon_refuses_to_start_on_a_journal_from_a_newer_hubsync(emu: EmulatorThread, tmp_path: Path) -> None:
    import json

    from .daemon_support import daemon_config

    state = tmp_path / "state"
    state.mkdir()
    newer = len(MIGRATIONS) + 1
    with contextlib.closing(sqlite3.connect(journal_of(state))) as conn:
        conn.execute(f"PRAGMA user_version={newer}")
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(daemon_config(state, [{"source": str(tmp_path / "src"), "remote": "private:/d"}]))
    result = run_cli(["--config", str(cfg), "daemon"], user_env(emu, tmp_path), timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # JSON lines only, no traceback
    assert any(f"journal schema {newer} is newer than this hubsync" in e.get("message", "") for e in lines), lines


def test_a_corrupt_journal_moves_aside_with_its_wal_and_shm(tmp_path: Path, caplog) -> None:
    """A run killed mid-write leaves -wal and -shm beside the journal: they go with it, under its new name."""

    async def open_and_close(path: Path) -> None:
        journal = await Journal(path).open()
        await journal.close()

    path = tmp_path / "journal.sqlite3"
    asyncio.run(open_and_close(path))
    crashed = sqlite3.connect(path, isolation_level=None)  # holds the WAL open, as a killed process leaves it
    try:
        crashed.execute("PRAGMA wal_autocheckpoint=0")
        crashed.execute("INSERT INTO digests VALUES('/x',1,1,1,1,'f','m')")
        assert os.path.exists(f"{path}-wal") and os.path.exists(f"{path}-shm")
        path.write_bytes(os.urandom(path.stat().st_size))
        with caplog.at_level("WARNING", logger="hubsync.journal"):
            asyncio.run(open_and_close(path))
    finally:
        crashed.close()
    aside = JournalView(path).corrupt_copies()
    assert len(aside) == 1
    assert os.path.exists(f"{aside[0]}-wal") and os.path.exists(f"{aside[0]}-shm")
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()][0].endswith("started a new one")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("SELECT count(*) FROM digests").fetchone()[0] == 0
