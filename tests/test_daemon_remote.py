"""The daemon's remote check (#11): every remote_check_seconds it lists its remote and repairs."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from agent.daemon.reconcile import JITTER, PeriodicTimer, jittered
from emulator.testing import EmulatorThread

from .conftest import md5_of, run_cli, wait_for, write_random
from .daemon_support import SEND_PATHS, DaemonProcess, arrived, daemon_config, sends


def test_the_timers_intervals_stay_within_25_percent_and_use_the_range() -> None:
    rng = random.Random(7)
    draws = [jittered(100.0, rng) for _ in range(2000)]
    assert all(100.0 * (1 - JITTER) <= d <= 100.0 * (1 + JITTER) for d in draws) and JITTER == 0.25
    assert min(draws) < 77 and max(draws) > 123  # really spread, not a constant period
    # On a fake clock: due once per interval, each interval within the same bounds.
    timer = PeriodicTimer(100.0, now=0.0, rng=random.Random(3))
    times, t = [], 0.0
    while len(times) < 200:
        t += 0.5
        if timer.due(t):
            times.append(t)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(75.0 <= g <= 125.5 for g in gaps), (min(gaps), max(gaps))


def _status(env: dict) -> dict | None:
    result = run_cli(["--json", "status"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    daemon = json.loads(result.stdout.splitlines()[-1]).get("daemon")
    return daemon["jobs"][0] if daemon else None


def _start(tmp_path: Path, hub_env: dict, src: Path, remote: str) -> DaemonProcess:
    cfg = tmp_path / "hubsync.toml"
    # Files from 64 KiB go through the chunk protocol (checkFileExist, mergeFile), smaller ones by simple upload.
    cfg.write_text(daemon_config(tmp_path / "state", [{"source": str(src), "remote": remote, "settle_seconds": 0.2}],
                                 {"remote_check_seconds": 1.5},
                                 {"chunk_size": "64KiB", "small_file_threshold": "64KiB"}))
    return DaemonProcess(cfg, hub_env, tmp_path / "daemon.log")


def _tree(src: Path, sizes: dict[str, int]) -> dict[str, str]:
    """Random files of these sizes under `src`; returns rel -> md5."""
    return {rel: md5_of(write_random(src / rel, size, seed=i)) for i, (rel, size) in enumerate(sizes.items())}


def _all_arrived(emu: EmulatorThread, folder: str, md5s: dict[str, str]) -> None:
    for rel, md5 in md5s.items():
        wait_for(lambda rel=rel, md5=md5: arrived(emu.private_path(f"{folder}/{rel}"), md5), timeout=60)


def test_the_remote_check_restores_what_was_deleted_or_replaced_there(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    local = _tree(src, {"gone.bin": 3000, "other.bin": 200_000, "same.bin": 4000, "kept.bin": 5000})
    stamps = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    with _start(tmp_path, hub_env, src, "private:/R") as daemon:
        _all_arrived(emu, "R", local)
        daemon.wait_event("remote_check", lambda e: e["checked"] == 4 and e["repaired"] == 0)
        # Behind the daemon's back: one deleted, one replaced by other bytes (another size), one
        # replaced by bytes of the same size (later on the platform's clock).
        emu.private_path("R/gone.bin").unlink()
        emu.private_path("R/other.bin").write_bytes(b"someone else's")
        same = emu.private_path("R/same.bin")
        later = same.stat().st_mtime + 30
        same.write_bytes(bytes(4000))
        os.utime(same, (later, later))
        _all_arrived(emu, "R", local)
        checks = daemon.events("remote_check")
        assert sum(e["repaired"] for e in checks) == 3, checks
        assert {x["path"] for e in checks for x in e.get("examples", [])} == {"gone.bin", "other.bin", "same.bin"}
        assert len(sends(emu, "kept.bin")) == 1  # never sent again
        # All is well again: a later check repairs nothing; status shows the last one.
        n = len(checks)
        daemon.wait_event("remote_check", lambda e: e["repaired"] == 0 and len(daemon.events("remote_check")) > n)
        job = wait_for(lambda: _status(hub_env))
        assert job["files_repaired"] == 3 and job["remote_check"]["checked"] == 4 and job["remote_check_next"]
        text = run_cli(["status"], hub_env, timeout=60).stdout
        assert "remote check: last" in text and "4 checked" in text, text
        assert daemon.stop() == 0
    # Nothing changed here: no local file was touched to make the daemon send.
    assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == stamps


def test_a_remote_folder_deleted_behind_the_journals_back_is_made_again_with_all_it_held(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    local = _tree(src, {"top.bin": 1000, "sub/deeper/small.bin": 2000, "sub/deeper/chunked.bin": 150_000,
                        "sub/flat.bin": 3000})
    with _start(tmp_path, hub_env, src, "private:/F") as daemon:
        _all_arrived(emu, "F", local)
        daemon.wait_event("remote_check", lambda e: e["checked"] == 4)
        # The daemon made F/sub and F/sub/deeper and remembers them; someone deletes them there.
        emu.clear_log()
        shutil.rmtree(emu.private_path("F/sub"))
        _all_arrived(emu, "F", local)
        assert emu.private_path("F/sub/deeper").is_dir()
        assert sum(e["repaired"] for e in daemon.events("remote_check")) == 3
        # The listing that found the folders gone told the cache: no upload was refused first.
        refused = [e for e in emu.log_entries() if e["path"].endswith(SEND_PATHS) and not e.get("ok")]
        assert not refused, refused
        assert daemon.stop() == 0
