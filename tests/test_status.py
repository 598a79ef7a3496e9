"""`hubsync status` tells the truth (issue 14): files that failed before their journal record
existed are failed, files deleted remotely are forgotten, and each remote's last run is shown."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from emulator.testing import EmulatorThread

from .conftest import REPO, hubsync_cmd, json_lines, obeying_permissions, run_cli, wait_for, write_random


def status(env: dict[str, str]) -> dict[str, Any]:
    result = run_cli(["--json", "status"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    (obj,) = [o for o in json_lines(result.stdout) if o.get("event") == "status"]
    return obj


def remote_row(env: dict[str, str], remote: str) -> dict[str, Any]:
    rows = {r["remote"]: r for r in status(env)["remotes"]}
    assert remote in rows, rows
    return rows[remote]


def counts(row: dict[str, Any]) -> tuple[int, int, int]:
    return row["done"], row["failed"], row["queued"] + row["active"] + row["interrupted"]


def test_files_that_failed_before_their_record_are_failed_and_deleted_ones_are_forgotten(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src / "ok.txt", 10)
    write_random(src / "gone-soon.txt", 20, seed=1)
    locked = write_random(src / "locked.bin", 300_000, seed=2)  # stat works, reading does not: fails at hashing
    locked_dir = src / "locked_dir"
    write_random(locked_dir / "inner.txt", 10, seed=3)  # the walk cannot read the folder
    os.mkfifo(src / "pipe")  # a special file: the walk reports it
    locked.chmod(0)
    locked_dir.chmod(0)
    try:
        first = subprocess.run(obeying_permissions(hubsync_cmd("sync", str(src), "private:/u")), env=hub_env,
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o644)
        locked_dir.chmod(0o755)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "2 sent, 0 unchanged, 3 failed of 5 files" in first.stdout, first.stdout
    row = remote_row(hub_env, "private:/u")
    assert counts(row) == (2, 3, 0), row
    errors = {e["path"]: e["error"] for e in status(hub_env)["errors"]}
    assert set(errors) == {str(src / "locked.bin"), str(src / "locked_dir"), str(src / "pipe")}, errors
    assert "unreadable" in errors[str(src / "locked.bin")] and "special file" in errors[str(src / "pipe")]
    text = run_cli(["status"], hub_env).stdout
    assert "private:/u: 2 done, 0 active, 0 queued, 3 failed" in text, text
    assert f"{src / 'pipe'} -> private:/u/pipe: special file" in text, text

    # Fixed (readable, the pipe gone): the next run's walk drops the old failures.
    (src / "pipe").unlink()
    second = run_cli(["sync", str(src), "private:/u"], hub_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert counts(remote_row(hub_env, "private:/u")) == (4, 0, 0)
    assert status(hub_env)["errors"] == []

    # Deleted remotely by --delete: forgotten, not counted as done.
    (src / "gone-soon.txt").unlink()
    third = run_cli(["--json", "sync", str(src), "private:/u", "--delete"], hub_env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert [e["remote"] for e in json_lines(third.stdout) if e["event"] == "deleted"] == ["private:/u/gone-soon.txt"]
    row = remote_row(hub_env, "private:/u")
    assert counts(row) == (3, 0, 0), row
    assert row["bytes_total"] == 10 + 300_000 + 10
    # The same name coming back is sent again (the journal no longer calls it done).
    write_random(src / "gone-soon.txt", 20, seed=1)
    back = run_cli(["sync", str(src), "private:/u"], hub_env)
    assert "1 sent, 3 unchanged" in back.stdout and emu.private_path("u/gone-soon.txt").exists()


def test_status_after_a_one_shot_sync_shows_its_remote_and_last_run(emu: EmulatorThread, hub_env: dict,
                                                                    tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 1_500_000)
    write_random(src / "sub" / "b.txt", 100, seed=1)
    assert run_cli(["-q", "sync", str(src), "private:/one/two/"], hub_env).returncode == 0
    obj = status(hub_env)
    (row,) = obj["remotes"]
    assert (row["job"], row["remote"], counts(row), row["bytes_done"]) == ("", "private:/one/two", (2, 0, 0), 1_500_100)
    last = row["last_run"]
    assert (last["result"], last["files_total"], last["files_sent"], last["bytes_sent"]) == ("ok", 2, 2, 1_500_100)
    assert last["ended_at"] >= last["started_at"] and "prefix" not in last
    assert obj["runs"] == [last]
    text = run_cli(["status"], hub_env).stdout
    assert "private:/one/two: 2 done, 0 active, 0 queued, 0 failed; 1.4 MiB of 1.4 MiB\n  last run: " in text, text
    assert " ok, 2 sent, 0 unchanged, 0 failed of 2 files, 1.4 MiB sent" in text, text


def test_a_datahub_remote_is_one_row_by_name_whatever_its_subfolders(emu: EmulatorThread, hub_env: dict,
                                                                    tmp_path: Path) -> None:
    asset_id, (master,) = emu.datahub_create_asset("model", "gpt2", ("master",))
    src = tmp_path / "src"
    for i, rel in enumerate(["w.bin", "a/x.bin", "a/b/y.bin", "c/z.bin"]):
        write_random(src / rel, 1000 + i, seed=i)
    write_random(src / "c" / "bad\\name.bin", 5, seed=9)
    assert run_cli(["-q", "sync", str(src), "model:gpt2@master"], hub_env).returncode == 1
    obj = status(hub_env)
    (row,) = obj["remotes"]
    assert (row["remote"], counts(row)) == ("model:gpt2@master", (4, 1, 0)), obj["remotes"]
    assert row["last_run"]["result"] == "failed" and row["last_run"]["files_sent"] == 4
    assert [e["remote"] for e in obj["errors"]] == ["model:gpt2@master:/c/bad\\name.bin"]
    text = run_cli(["status"], hub_env).stdout
    assert "model:gpt2@master: 4 done, 0 active, 0 queued, 1 failed;" in text, text
    assert "-> model:gpt2@master:/c/bad\\name.bin: " in text, text
    for shown in (text, str(obj)):
        assert asset_id not in shown and master not in shown


def test_status_after_daemon_passes_shows_each_job_and_forgets_what_it_deleted(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    from .daemon_support import DaemonProcess, arrived, daemon_config

    docs, odd = tmp_path / "docs", tmp_path / "odd"
    write_random(docs / "a.txt", 10)
    write_random(docs / "b.txt", 20, seed=1)
    write_random(odd / "c.txt", 30, seed=2)
    os.mkfifo(odd / "pipe")  # the daemon's walk cannot take it: failed in status
    cfg = tmp_path / "hubsync.toml"
    cfg.write_text(daemon_config(tmp_path / "state", [
        {"name": "docs", "source": str(docs), "remote": "private:/d", "settle_seconds": 0.3, "delete": True},
        {"name": "odd", "source": str(odd), "remote": "private:/o", "settle_seconds": 0.3},
    ], {"delete_delay": 0.3, "max_delete": 10}))
    env = {**hub_env, "HUBSYNC_CONFIG": str(cfg)}

    def rows() -> dict[str, dict[str, Any]]:
        return {r["job"]: r for r in status(env)["remotes"]}

    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        assert wait_for(lambda: arrived(emu.private_path("d/b.txt"), (docs / "b.txt").read_bytes())
                        and arrived(emu.private_path("o/c.txt"), (odd / "c.txt").read_bytes()))
        wait_for(lambda: counts(rows().get("docs", {"done": 0, "failed": 0, "queued": 0, "active": 0,
                                                      "interrupted": 0})) == (2, 0, 0), timeout=30)
        wait_for(lambda: (rows().get("odd") or {}).get("failed") == 1, timeout=30)
        by_job = rows()
        assert by_job["docs"]["remote"] == "private:/d" and by_job["odd"]["remote"] == "private:/o"
        assert counts(by_job["odd"]) == (1, 1, 0)
        last = by_job["docs"]["last_run"]
        assert last is not None and last["result"] == "ok" and last["ended_at"] is not None
        assert sum(r["last_run"]["files_sent"] for r in by_job.values()) >= 1
        (docs / "b.txt").unlink()
        daemon.wait_event("deleted", lambda e: e.get("path") == "b.txt")
        # Deleted remotely by the daemon's delete pass: forgotten, not counted as done.
        assert wait_for(lambda: counts(rows()["docs"]) == (1, 0, 0), timeout=30)
        assert rows()["docs"]["bytes_total"] == 10
        assert daemon.stop() == 0
    text = run_cli(["status"], env).stdout
    assert "[docs] private:/d: 1 done, 0 active, 0 queued, 0 failed; 10 B of 10 B\n  last run: " in text, text
    assert "[odd] private:/o: 1 done, 0 active, 0 queued, 1 failed" in text, text
    assert f"{odd / 'pipe'} -> private:/o/pipe: special file" in text, text


async def test_the_journal_keeps_the_newest_runs_of_each_remote(tmp_path: Path) -> None:
    from transfer.journal import RUNS_KEPT, Journal, JournalView

    journal = await Journal(tmp_path / "journal.sqlite3").open()
    try:
        for i in range(RUNS_KEPT + 5):  # a daemon records one run per batch, for weeks
            run = await journal.run_started("docs", "private:/d", "h#5 private:/d/", "private:/d/")
            await journal.run_ended(run, "ok", {"files_total": i})
        other = await journal.run_started("", "private:/e")
        await journal.run_ended(other, "failed", {})
    finally:
        await journal.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.sqlite3")) as conn:
        kept = conn.execute("SELECT job, COUNT(*), MAX(files_total) FROM runs GROUP BY job ORDER BY job").fetchall()
    assert kept == [("", 1, 0), ("docs", RUNS_KEPT, RUNS_KEPT + 4)]
    view = JournalView(tmp_path / "journal.sqlite3")
    assert [(r["remote"], r["files_total"]) for r in view.last_runs()] == [("private:/e", 0),
                                                                           ("private:/d", RUNS_KEPT + 4)]
