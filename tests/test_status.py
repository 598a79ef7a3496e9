"""`hubsync status` tells the truth (issue 14): files that failed before their journal record
existed are failed, files deleted remotely are forgotten, and each remote's last run is shown."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from emulator.testing import EmulatorThread

from .conftest import REPO, hubsync_cmd, json_lines, obeying_permissions, run_cli, write_random


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
