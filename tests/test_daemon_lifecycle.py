"""The daemon's life: restarts, SIGKILL, SIGTERM, SIGHUP, systemd notifications, status, metrics."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread

from .conftest import md5_of, run_cli, wait_for, write_random
from .daemon_support import DaemonProcess, arrived, daemon_config, sends

MiB = 1 << 20


def _config(tmp_path: Path, jobs: list[dict], daemon: dict | None = None, transfer: dict | None = None) -> Path:
    cfg = tmp_path / "hubsync.toml"
    cfg.write_text(daemon_config(tmp_path / "state", jobs, daemon, transfer))
    return cfg


def _chunk_calls(emu: EmulatorThread, name: str, since: int = 0) -> list[dict]:
    return [e for e in emu.log_entries()[since:] if e["path"].endswith("/uploadFile") and e.get("fileName") == name]


def test_files_created_while_stopped_are_sent_at_start_and_unchanged_ones_not_hashed(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(5):
        write_random(src / f"old{i}.bin", 1000 + i, seed=i)
    cfg = _config(tmp_path, [{"source": str(src), "remote": "private:/r", "settle_seconds": 0.3}])
    log = tmp_path / "daemon.log"
    with DaemonProcess(cfg, hub_env, log) as first:
        wait_for(lambda: len(sends(emu)) == 5)
        status = wait_for(lambda: _daemon_status(hub_env, lambda j: j["done"] == 5))
        assert status["source"] == str(src.resolve()) and status["remote"] == "private:/r"
        assert status["files_hashed"] == 5 and status["watch"] == "inotify"
        other = run_cli(["--config", str(cfg), "daemon"], hub_env, timeout=60)
        assert other.returncode == 2 and "another hubsync daemon" in other.stderr
        assert first.stop() == 0
    assert _daemon_status(hub_env) is None, "status shows a daemon that has stopped"

    write_random(src / "new0.bin", 2000, seed=10)
    write_random(src / "sub" / "new1.bin", 3000, seed=11)
    with open(src / "old3.bin", "r+b") as f:
        f.write(b"changed")
    emu.clear_log()
    with DaemonProcess(cfg, hub_env, log) as second:
        for rel in ("new0.bin", "sub/new1.bin", "old3.bin"):
            wait_for(lambda rel=rel: arrived(emu.private_path(f"r/{rel}"), md5_of(src / rel)))
        walk = second.wait_event("walk", lambda e: e["path"] == ".")
        assert (walk["files"], walk["queued"], walk["unchanged"]) == (7, 3, 4)
        job = wait_for(lambda: _daemon_status(hub_env, lambda j: j["done"] == 3))
        assert job["files_hashed"] == 3, "an unchanged file was hashed again"
        assert {e["fileName"] for e in sends(emu)} == {"new0.bin", "new1.bin", "old3.bin"}
        assert second.stop() == 0


def _daemon_status(env: dict, ready=lambda job: True) -> dict | None:  # type: ignore[no-untyped-def]
    """The first job of `hubsync --json status`'s daemon section, once `ready` holds (else None)."""
    result = run_cli(["--json", "status"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    daemon = json.loads(result.stdout.splitlines()[-1]).get("daemon")
    if not daemon:
        return None
    job = daemon["jobs"][0]
    return job if ready(job) else None


def test_sigkill_mid_transfer_then_restart_resends_no_acknowledged_chunk(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    big = write_random(src / "big.bin", 40 * MiB + 5, seed=7)
    cfg = _config(tmp_path, [{"source": str(src), "remote": "private:/k", "settle_seconds": 0.2}],
                  transfer={"chunk_size": "1MiB"})
    emu.faults.latency = 0.2  # slow enough to kill it half-way
    log = tmp_path / "daemon.log"
    with DaemonProcess(cfg, hub_env, log) as first:
        wait_for(lambda: len([e for e in _chunk_calls(emu, "big.bin") if e.get("ok")]) >= 10, timeout=60)
        first.kill()
    journal = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")
    acked = {row[0] for row in journal.execute(
        "SELECT idx FROM chunks JOIN files ON files.id = chunks.file_id WHERE files.local_path = ?",
        (str(big.resolve()),))}
    journal.close()
    assert len(acked) >= 5 and not emu.private_path("k/big.bin").exists()
    mark = len(emu.log_entries())
    emu.faults.latency = 0.0
    with DaemonProcess(cfg, hub_env, log) as second:
        wait_for(lambda: arrived(emu.private_path("k/big.bin"), md5_of(big)), timeout=60)
        again = {e["index"] for e in _chunk_calls(emu, "big.bin", since=mark)}
        assert not again & acked, f"acknowledged chunks sent again: {sorted(again & acked)}"
        assert len(again) <= 41 - len(acked)
        assert second.stop() == 0


def test_sigterm_exits_zero_within_the_grace_period_with_the_journal_consistent(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src / "slow.bin", 40 * MiB, seed=1)
    cfg = _config(tmp_path, [{"source": str(src), "remote": "private:/t", "settle_seconds": 0.2}],
                  daemon={"grace_seconds": 1.0}, transfer={"chunk_size": "1MiB"})
    emu.faults.latency = 0.5  # the file needs ~5 s: it cannot finish within the grace period
    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        wait_for(lambda: _chunk_calls(emu, "slow.bin"), timeout=60)
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
        assert code == 0 and elapsed < 1.0 + 3.0, (code, elapsed)
        assert daemon.events("stopping") and daemon.events("grace_over") and daemon.events("stopped")
    journal = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")
    assert journal.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    state, = journal.execute("SELECT state FROM files WHERE local_path LIKE '%slow.bin'").fetchone()
    journal.close()
    assert state == "sending"  # resumable from its acknowledged chunks


def test_sighup_with_a_broken_config_keeps_the_old_one_and_a_good_one_is_taken(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    job_a = {"source": str(a), "remote": "private:/a", "settle_seconds": 0.2}
    cfg = _config(tmp_path, [job_a])
    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        cfg.write_text(daemon_config(tmp_path / "state", [{**job_a, "remote": "nowhere:/x"}]))
        daemon.signal(signal.SIGHUP)
        refused = daemon.wait_event("reload_refused")
        assert "watch.0.remote" in refused["error"] and refused["level"] == "error"
        (a / "still.txt").write_bytes(b"the old config runs")
        wait_for(lambda: arrived(emu.private_path("a/still.txt"), b"the old config runs"))

        cfg.write_text(daemon_config(tmp_path / "state", [job_a, {"source": str(b), "remote": "public:/b",
                                                                    "settle_seconds": 0.2}]))
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("reloaded", lambda e: len(e["jobs"]) == 2)
        (b / "new-job.txt").write_bytes(b"picked up")
        wait_for(lambda: arrived(emu.public_path("b/new-job.txt"), b"picked up"))
        assert daemon.stop() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_systemd_notify_and_metrics(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "m.bin", 3 * MiB, seed=2)
    port = _free_port()
    cfg = _config(tmp_path, [{"source": str(src), "remote": "private:/m", "settle_seconds": 0.2, "name": "metered"}],
                  daemon={"metrics": f"127.0.0.1:{port}"}, transfer={"chunk_size": "1MiB"})
    sock_path = tmp_path / "notify.sock"
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(0.1)
        done = threading.Event()

        def listen() -> None:  # as systemd does: read every datagram as it comes
            while not done.is_set():
                try:
                    messages.extend(sock.recv(4096).decode().splitlines())
                except TimeoutError:
                    continue

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
        with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log", extra_env=env) as daemon:
            wait_for(lambda: "READY=1" in messages, timeout=10)
            wait_for(lambda: messages.count("WATCHDOG=1") >= 3, timeout=10)  # every 0.2 s: half of WATCHDOG_USEC
            wait_for(lambda: emu.private_path("m/m.bin").exists())

            def scrape() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    return response.read().decode()

            def sent_one() -> str | None:
                text = scrape()
                wanted = ('hubsync_files_sent_total{job="metered"} 1', 'hubsync_bytes_sent_total{job="metered"} 3145728')
                return text if all(line in text for line in wanted) else None

            text = wait_for(sent_one)
            for line in ('hubsync_files_hashed_total{job="metered"} 1', 'hubsync_queue_depth{job="metered"} 0',
                         'hubsync_failures_total{job="metered"} 0', 'hubsync_transfer_seconds_count{job="metered"} 1',
                         'hubsync_retries_total{job="metered"} 0'):
                assert line in str(text), line
            assert daemon.stop() == 0
            assert not [e for e in daemon.events("log") if "notify" in e.get("message", "")], daemon.tail()
        wait_for(lambda: "STOPPING=1" in messages, timeout=10)
        done.set()
        listener.join()
    assert messages.index("READY=1") < messages.index("STOPPING=1")


@pytest.mark.parametrize("job,message", [
    ({"remote": "dataset:cifar@v3"}, "no dataset named 'cifar'"),
    ({"source": "/nonexistent/folder"}, "not a folder"),
    (None, "no [[watch]] job"),
])
def test_a_bad_job_is_refused_at_start_with_exit_2(tmp_path: Path, hub_env: dict, job: dict | None,
                                                   message: str) -> None:
    jobs = [] if job is None else [{"source": str(tmp_path), "remote": "private:/x", **job}]
    cfg = _config(tmp_path, jobs)
    result = run_cli(["--config", str(cfg), "daemon"], hub_env, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert all(json.loads(line)["level"] for line in result.stderr.splitlines()), "not only JSON lines"
