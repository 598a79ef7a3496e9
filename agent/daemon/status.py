"""The daemon's status snapshot: a small JSON file in the state dir, replaced atomically.

The daemon writes it about once a second while something changes; `hubsync status` reads it
without touching the daemon (a reader sees the old file or the new one, never half of one).
A snapshot without a live daemon (it holds `daemon.lock`) is ignored. Imports nothing heavy: `status` stays quick.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from transfer.remotepath import display_values

from .authpause import render as render_auth

SNAPSHOT_NAME = "daemon-status.json"
LOCK_NAME = "daemon.lock"


def snapshot_path(state_dir: Path) -> Path:
    return state_dir / SNAPSHOT_NAME


def write_snapshot(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (temp file + rename). Blocking: run it in a thread."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(display_values(data), f, ensure_ascii=False, separators=(",", ":"))
    os.replace(tmp, path)


def remove_snapshot(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_snapshot(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's snapshot, or None (no daemon, or one that died without cleaning up)."""
    if not daemon_running(state_dir):
        return None
    try:
        data = json.loads(snapshot_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StateLock:
    """The daemon holds an exclusive lock on `daemon.lock` while it runs: one daemon per state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if taken; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


SYNC_LOCK_NAME = "sync.lock"


class SyncLock:
    """Each one-shot `sync` holds a shared lock on `sync.lock` while it runs (several may run at once):
    `status` tells a file in flight from one an interrupted run left `sending`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SYNC_LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> SyncLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return self  # an unwritable state dir fails the run later, with its own clear line
        fcntl.flock(fd, fcntl.LOCK_SH)  # shared: never waits unless `status` probes at this instant
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sync_running(state_dir: Path) -> bool:
    """True while some `sync` holds `sync.lock` of `state_dir` (a killed one holds nothing)."""
    return _held(state_dir / SYNC_LOCK_NAME, fcntl.LOCK_EX)


def _held(path: Path, mode: int) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def daemon_running(state_dir: Path) -> bool:
    """True while some process holds the daemon lock of `state_dir` (a crashed one holds nothing)."""
    return _held(state_dir / LOCK_NAME, fcntl.LOCK_SH)


def render_snapshot(data: dict[str, Any]) -> list[str]:
    """The daemon part of `hubsync status`, for people."""
    import time

    up = time.time() - float(data.get("started") or time.time())
    lines = [f"daemon: running (pid {data.get('pid')}, up {_duration(up)})"
             + (", stopping" if data.get("stopping") else "")]
    if data.get("auth"):
        lines.append("  " + render_auth(data["auth"]))
    for job in data.get("jobs", []):
        lines.append(f"  [{job['job']}] {job['source']} -> {job['remote']} ({job['watch']})")
        lines.append(f"    {job['queued']} queued, {job['active']} active, {job['done']} done, {job['failed']} failed;"
                     f" {job['files_sent']} sent ({job['bytes_sent']} bytes), {job['files_hashed']} hashed,"
                     f" {job['settling']} settling" + (f", {job['files_deleted']} deleted" if job['files_deleted'] else ""))
        check, due = job.get("remote_check"), job.get("remote_check_next")
        if check or due:
            last = (f"last {_clock(check['at'])}: {check['checked']} checked, {check['repaired']} repaired"
                    if check else "none yet")
            lines.append(f"    remote check: {last}" + (f"; next at {_clock(due)}" if due else "")
                         + (f"; {job['files_repaired']} repaired since start" if job.get("files_repaired") else ""))
        if job.get("switched"):
            sw = job["switched"]
            lines.append(f"    {sw['primary']} unavailable since {_clock(sw['since'])} ({sw['reason']}),"
                         f" using {sw['fallback']} until {_clock(sw['until'])}")
        for t in job.get("transfers", []):
            pct = f"{100 * t['bytes'] / t['size']:.0f}%" if t["size"] else "-"
            lines.append(f"    sending {t['path']}: {t['bytes']} of {t['size']} bytes ({pct}), {_rate(t['rate'])}")
        for e in job.get("errors", [])[-5:]:
            attempts = f" (attempt {e['attempts']})" if e.get("attempts") else ""
            lines.append(f"    error {e['path']}: {e['error']}{attempts}")
    return lines


def _clock(epoch: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _rate(bps: float) -> str:
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if bps < 1024:
            return f"{bps:.1f} {unit}"
        bps /= 1024
    return f"{bps:.1f} TiB/s"
