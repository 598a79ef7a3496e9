"""The daemon's parts on their own: scheduler (fake clock), watcher (real watchdog), limits, timetable."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from agent.daemon.events import FsEvent
from agent.daemon.metrics import JobView, render
from agent.daemon.scheduler import JobCounts, Scheduler, SchedulerSettings
from agent.daemon.stats import JobStats
from agent.daemon.timetable import UNLIMITED, Timetable, limit_at
from agent.daemon.watcher import Inbox, OverflowAlarm, Watcher, WatchMode, choose_mode, count_dirs
from agent.scanner import Excludes
from transfer.bandwidth import TokenBucket
from transfer.engine import SendItem
from transfer.errors import AuthFailed
from transfer.models import LocalFile, RemoteTarget, Space

from .conftest import wait_for


def item(rel: str, size: int) -> SendItem:
    local = LocalFile(f"/src/{rel}", rel, size, 0, 0, 0)
    return SendItem(local, RemoteTarget(Space.PRIVATE, "d", rel))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _no_send(job: str, items: list[SendItem]) -> dict[str, str]:
    return {}


# -- scheduler ---------------------------------------------------------------------------------
@pytest.mark.parametrize("order,expected", [
    ("smallest", ["b", "c", "a"]), ("largest", ["a", "c", "b"]), ("oldest", ["a", "b", "c"]),
])
async def test_queue_order(order: str, expected: list[str]) -> None:
    s = Scheduler(SchedulerSettings(order=order), _no_send, Clock())
    for rel, size in (("a", 500), ("b", 1), ("c", 30)):
        s.submit("job", item(rel, size))
    taken = s._take()
    assert taken is not None and [e.rel for e in taken[1]] == expected


async def test_a_file_submitted_many_times_is_queued_once_and_batches_keep_to_one_job() -> None:
    s = Scheduler(SchedulerSettings(batch_files=3), _no_send, Clock())
    for _ in range(5):
        s.submit("one", item("same", 10))
    for i in range(4):
        s.submit("two", item(f"t{i}", i))
    assert s.depth == 5 and s.counts("one").queued == 1
    first = s._take()
    assert first is not None and first[0] == "two" and len(first[1]) == 3  # the smallest first, one job per batch


async def test_a_failing_file_backs_off_exponentially_and_never_blocks_the_others() -> None:
    clock = Clock()

    async def send(job: str, items: list[SendItem]) -> dict[str, str]:
        return {i.local.rel: "platform said no" for i in items if i.local.rel == "bad"}

    s = Scheduler(SchedulerSettings(retry_seconds=2, retry_max_seconds=10), send, clock)
    s.submit("j", item("bad", 1))
    s.submit("j", item("good", 2))
    waits = []
    batch = s._take()
    assert batch is not None
    await s._run(*batch)
    for _ in range(5):
        entry = s._entries[("j", "bad")]
        waits.append(entry.not_before - clock.now)
        assert s._take() is None  # nothing else to do meanwhile
        s.submit("j", item(f"new{_}", 5))  # ...but new files go straight through
        other = s._take()
        assert other is not None and [e.rel for e in other[1]] == [f"new{_}"]
        await s._run(*other)
        clock.now = entry.not_before
        batch = s._take()
        assert batch is not None and [e.rel for e in batch[1]] == ["bad"]
        await s._run(*batch)
    assert waits == [2, 4, 8, 10, 10]
    counts = s.counts("j")
    assert (counts.failing, counts.retries, counts.done) == (1, 5, 6)
    assert s.failing("j")[0].last_error == "platform said no" and s.failing("j")[0].attempts == 6
    s.submit("j", item("bad", 1))  # the file changed (an event): tried again at once
    retry = s._take()
    assert retry is not None and [e.rel for e in retry[1]] == ["bad"]


async def test_lanes_send_everything_and_a_file_changed_while_sent_goes_again() -> None:
    sent: list[str] = []
    gate = asyncio.Event()
    progress = asyncio.Event()

    async def send(job: str, items: list[SendItem]) -> dict[str, str]:
        if any(i.local.rel == "slow" for i in items):
            await gate.wait()
        sent.extend(i.local.rel for i in items)
        progress.set()
        return {}

    async def until(condition) -> None:  # type: ignore[no-untyped-def]
        while not condition():
            progress.clear()
            await progress.wait()

    s = Scheduler(SchedulerSettings(lanes=2, batch_files=1), send)
    s.start()
    s.submit("j", item("slow", 1))
    for i in range(10):
        s.submit("j", item(f"f{i}", 10 + i))
    await asyncio.wait_for(until(lambda: len(sent) == 10), 10)  # one lane stuck, the other carries on
    s.submit("j", item("slow", 2))  # changed while being sent
    gate.set()
    await asyncio.wait_for(until(lambda: sent.count("slow") == 2), 10)
    assert await s.drain(1.0)


async def test_a_refused_login_pauses_the_queue_without_counting_a_file_failure() -> None:
    refused: list[AuthFailed] = []
    calls = 0

    async def send(job: str, items: list[SendItem]) -> dict[str, str]:
        nonlocal calls
        calls += 1
        raise AuthFailed("login refused", endpoint="/prod-api/login")

    s = Scheduler(SchedulerSettings(), send, Clock(), on_auth_failed=refused.append)
    s.submit("j", item("a", 1))
    s.submit("j", item("b", 2))
    batch = s._take()
    assert batch is not None
    await s._run(*batch)
    assert s.paused and len(refused) == 1 and calls == 1
    counts = s.counts("j")
    assert (counts.queued, counts.failing, counts.failed) == (2, 0, 0)  # queued as they were, no attempt
    assert all(e.attempts == 0 for e in s._entries.values())
    s.start()
    await asyncio.sleep(0)  # the lanes run once: paused, they take nothing
    assert calls == 1
    sent = asyncio.Event()

    async def works(job: str, items: list[SendItem]) -> dict[str, str]:
        sent.set()
        return {}

    s._send = works
    s.resume()
    await asyncio.wait_for(sent.wait(), 10)
    assert await s.drain(1.0) and s.counts("j").done == 2


async def test_a_bug_or_a_state_dir_error_is_no_file_failure_and_the_bug_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = [KeyError("oops"), sqlite3.OperationalError("database or disk is full")]

    async def send(job: str, items: list[SendItem]) -> dict[str, str]:
        raise errors.pop(0)

    clock = Clock()
    s = Scheduler(SchedulerSettings(retry_seconds=2), send, clock)
    s.submit("j", item("a", 1))
    with caplog.at_level(logging.ERROR, logger="hubsync.daemon"):
        for expected in ("internal error (KeyError)", "database or disk is full"):
            batch = s._take()
            assert batch is not None
            await s._run(*batch)
            entry = s._entries[("j", "a")]
            assert expected in (entry.last_error or "") and s.counts("j").failed == 0
            clock.now = entry.not_before  # backed off like a failing file
    bug, disk = caplog.records
    assert bug.exc_info is not None and bug.exc_info[0] is KeyError  # the traceback goes to the log
    assert disk.exc_info is None and "disk is full" in disk.getMessage()



# -- watcher -----------------------------------------------------------------------------------
def _collect(inbox: Inbox, into: list[FsEvent]) -> None:
    into.extend(inbox.drain())


@pytest.mark.parametrize("polling", [False, True])
def test_the_watcher_translates_os_events(tmp_path: Path, polling: bool) -> None:
    wakes = threading.Event()
    inbox = Inbox(wakes.set)
    watcher = Watcher(tmp_path, inbox, WatchMode(polling, 0.1))
    watcher.start()
    events: list[FsEvent] = []
    try:
        assert watcher.healthy()
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.txt").write_bytes(b"x")

        def seen(kind: str, path: Path, dest: Path | None = None) -> bool:
            _collect(inbox, events)
            return any(e.kind == kind and e.path == str(path) and (dest is None or e.dest == str(dest))
                       for e in events)

        wait_for(lambda: seen("changed", tmp_path / "sub" / "a.txt"), timeout=10)
        assert wakes.is_set()
        os.rename(tmp_path / "sub" / "a.txt", tmp_path / "b.txt")
        wait_for(lambda: seen("moved", tmp_path / "sub" / "a.txt", tmp_path / "b.txt")
                 or (seen("deleted", tmp_path / "sub" / "a.txt") and seen("changed", tmp_path / "b.txt")), timeout=10)
        (tmp_path / "b.txt").unlink()
        wait_for(lambda: seen("deleted", tmp_path / "b.txt"), timeout=10)
        assert not [e for e in events if e.is_dir and e.kind == "changed" and e.path == str(tmp_path)]
    finally:
        watcher.stop()
    assert not watcher.healthy()


def test_overflow_full_inbox_and_watchdog_overflow_become_one_rescan(tmp_path: Path) -> None:
    inbox = Inbox(lambda: None, capacity=3)
    for i in range(10):
        inbox.put(FsEvent("changed", f"/x/{i}"))
    assert inbox.drain() == [FsEvent("overflow")] and inbox.drain() == []
    alarm = OverflowAlarm()
    alarm.attach()
    try:
        alarm.register(inbox)
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
        assert inbox.drain() == [FsEvent("overflow")]
    finally:
        alarm.detach()


def test_too_few_inotify_watches_means_polling_and_says_how_to_fix_it(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"d{i}" / "deeper").mkdir(parents=True)
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    dirs = count_dirs(tmp_path, Excludes([".git/"]))
    assert dirs == 11  # the root, 5 folders and their 5 subfolders; .git excluded
    assert choose_mode(tmp_path, dirs, 8192, 0, force_poll=False, settle=5).polling is False
    assert choose_mode(tmp_path, dirs, None, 0, force_poll=False, settle=5).polling is False  # no inotify here
    short = choose_mode(tmp_path, dirs, 15, 6, force_poll=False, settle=5)
    assert short.polling and short.interval >= 10
    assert "sysctl fs.inotify.max_user_watches=524288" in short.warning and str(tmp_path) in short.warning
    assert choose_mode(tmp_path, dirs, 8192, 0, force_poll=True, settle=0.5) == WatchMode(True, 1.0)


# -- timetable and metrics -------------------------------------------------------------------------
def test_bandwidth_timetable() -> None:
    table = [(8 * 60, 2 << 20), (19 * 60, 0)]
    assert limit_at(table, 7 * 60) == 0  # before the first entry: the last one, from the day before
    assert limit_at(table, 8 * 60) == 2 << 20 and limit_at(table, 18 * 60 + 59) == 2 << 20
    assert limit_at(table, 23 * 60) == 0
    now = [time.struct_time((2026, 1, 1, 9, 30, 0, 3, 1, 0))]
    bucket = TokenBucket(UNLIMITED, burst=UNLIMITED)
    tt = Timetable(["08:00,2MiB/s", "19:00,off"], bucket, 0, 8 << 20, localtime=lambda: now[0])
    assert tt.apply() == 2 << 20 and bucket.rate == 2 << 20 and bucket.burst == 8 << 20
    assert tt.apply() is None
    now[0] = time.struct_time((2026, 1, 1, 20, 0, 0, 3, 1, 0))
    assert tt.apply() == 0 and bucket.rate == UNLIMITED


def test_metrics_text_format() -> None:
    stats = JobStats('we"ird\\job', "/s", "private:/r", files_sent=3, bytes_sent=3 << 30)
    stats.durations.observe(0.3)
    stats.durations.observe(42.0)
    text = render([JobView(stats, JobCounts(queued=2, retries=1, failed=1))])
    job = 'job="we\\"ird\\\\job"'
    assert f"hubsync_bytes_sent_total{{{job}}} 3221225472" in text
    assert f"hubsync_queue_depth{{{job}}} 2" in text and f"hubsync_retries_total{{{job}}} 1" in text
    assert f'hubsync_transfer_seconds_bucket{{{job},le="0.5"}} 1' in text
    assert f'hubsync_transfer_seconds_bucket{{{job},le="60"}} 2' in text
    assert f"hubsync_transfer_seconds_count{{{job}}} 2" in text
    assert "# TYPE hubsync_transfer_seconds histogram" in text and text.endswith("\n")


async def test_no_delete_while_the_source_is_missing_or_another_file_system(tmp_path: Path) -> None:
    from agent.daemon.reconcile import delete_pass

    # The checks come before any remote call: no target or engine is needed to prove it.
    for root, device in ((tmp_path, os.stat(tmp_path).st_dev + 1), (tmp_path / "unmounted", 0)):
        outcome = await delete_pass([("gone.txt", False)], root=root, device=device, target=None,  # type: ignore[arg-type]
                                    engine=None, excludes=Excludes([]), max_delete=1000, job="j")  # type: ignore[arg-type]
        assert outcome.deleted == [] and ("missing" in outcome.refused or "another file system" in outcome.refused)


def test_deletions_are_taken_as_one_pass_once_they_stop() -> None:
    from agent.daemon.reconcile import DeleteQueue

    q = DeleteQueue(delay=10.0)
    for t, rel in ((0.0, "a"), (6.0, "b"), (12.0, "dir")):  # a slow rm -rf: never 10 s apart
        q.add(rel, rel == "dir", t)
        assert q.due(t + 9.9) == []
    assert q.due(22.0) == [("a", False), ("b", False), ("dir", True)] and len(q) == 0
    for t in range(0, 200, 5):  # a steady trickle still passes, after 10 delays
        q.add(f"f{t}", False, float(t))
        if q.due(float(t)):
            assert t == 100
            break
    else:
        raise AssertionError("a trickle of deletions never passed")


def test_status_text_for_people() -> None:
    from agent.daemon.status import render_snapshot

    snapshot = {"pid": 42, "started": time.time() - 3725, "stopping": False, "jobs": [{
        "job": "incoming", "source": "/data/in", "remote": "private:/in", "watch": "inotify", "queued": 7,
        "active": 1, "done": 120, "failed": 1, "settling": 2, "files_sent": 118, "bytes_sent": 5 << 30,
        "files_hashed": 118, "files_deleted": 0,
        "transfers": [{"path": "big.bin", "remote": "private:/in/big.bin", "bytes": 3 << 20, "size": 12 << 20,
                       "rate": 2 << 20}],
        "errors": [{"path": "locked.bin", "error": "unreadable: Permission denied", "attempts": 3}]}]}
    text = "\n".join(render_snapshot(snapshot))
    assert "daemon: running (pid 42, up 1h02m)" in text
    assert "[incoming] /data/in -> private:/in (inotify)" in text
    assert "7 queued, 1 active, 120 done, 1 failed" in text
    assert "sending big.bin: 3145728 of 12582912 bytes (25%), 2.0 MiB/s" in text
    assert "error locked.bin: unreadable: Permission denied (attempt 3)" in text


@pytest.mark.parametrize("toml,key", [
    ('[daemon]\nmetrics = "0.0.0.0:9464"\n', "daemon.metrics"),
    ('[daemon]\nmetrics = "127.0.0.1"\n', "daemon.metrics"),
    ('[daemon]\ntimetable = ["25:00,1MiB/s"]\n', "daemon.timetable"),
    ('[daemon]\norder = "random"\n', "daemon.order"),
    ('[daemon]\ndelete_delay = -1\n', "daemon.delete_delay"),
    ('[[watch]]\nsource = "/d"\nremote = "private:/x"\npoll = "sometimes"\n', "watch.0.poll"),
])
def test_invalid_daemon_settings_are_named(tmp_path: Path, toml: str, key: str) -> None:
    from agent.config import load_config
    from transfer.errors import ConfigError

    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    assert key in str(err.value)


def test_the_json_log_holds_warnings_and_tracebacks_as_json_lines() -> None:
    import io
    import json
    import warnings

    from agent.daemon.logs import setup_json_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_json_logging(stream=stream)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("coroutine was never awaited", RuntimeWarning, stacklevel=1)
        try:
            {}["missing"]  # noqa: B018 - a real exception with a real traceback
        except KeyError:
            logging.getLogger("hubsync.daemon").error("internal error", exc_info=True)
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line is one JSON object
    warning, error = lines
    assert warning["logger"] == "py.warnings" and "RuntimeWarning: coroutine was never awaited" in warning["message"]
    assert error["error"] == "KeyError: 'missing'" and error["traceback"].startswith("Traceback")
