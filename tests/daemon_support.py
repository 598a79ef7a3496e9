"""`hubsync daemon` as a real subprocess, for the daemon tests and the soak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.testing import EmulatorThread

from .conftest import REPO, hubsync_cmd, wait_for

SEND_PATHS = ("/uploadFolder", "/uploadPublicFolder", "/mergeFile")


def daemon_config(state: Path, jobs: list[dict[str, Any]], daemon: dict[str, Any] | None = None,
                  transfer: dict[str, Any] | None = None) -> str:
    """A config file's text: [transfer], [daemon] and one [[watch]] per job (credentials come from the env)."""

    def value(v: Any) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"[state]\ndir = {value(str(state))}"]
    if transfer:
        lines.append("[transfer]\n" + "\n".join(f"{k} = {value(v)}" for k, v in transfer.items()))
    if daemon:
        lines.append("[daemon]\n" + "\n".join(f"{k} = {value(v)}" for k, v in daemon.items()))
    for job in jobs:
        lines.append("[[watch]]\n" + "\n".join(f"{k} = {value(v)}" for k, v in job.items()))
    return "\n\n".join(lines) + "\n"


class DaemonProcess:
    """One daemon run: stderr (JSON lines) goes to a file the test reads while it runs."""

    def __init__(self, config: Path, env: dict[str, str], log: Path, extra_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = {**env, **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, ready: bool = True) -> DaemonProcess:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(hubsync_cmd("--config", str(self.config), "daemon"), env=self.env, cwd=REPO,
                                         stdout=subprocess.DEVNULL, stderr=err)
        if ready:
            self.wait_event("started", timeout=30)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """This run's log lines (parsed), optionally only those with event == name."""
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            text = f.read().decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if name is None or obj.get("event") == name:
                    out.append(obj)
        return out

    def wait_event(self, name: str, where: Callable[[dict[str, Any]], bool] = lambda e: True,
                   timeout: float = 30) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.tail()}")
            return next((e for e in self.events(name) if where(e)), None)

        try:
            return wait_for(found, timeout=timeout)  # type: ignore[return-value]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; no {name!r} event. log:\n{self.tail()}") from None

    def tail(self, n: int = 40) -> str:
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in self.events()[-n:]) or self.log.read_text()[-4000:]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def sends(emu: EmulatorThread, name: str | None = None) -> list[dict[str, Any]]:
    """Successful commits of a file (simple uploads and merges), optionally of one file name."""
    return [e for e in emu.log_entries() if e["path"].endswith(SEND_PATHS) and e.get("ok")
            and (name is None or e.get("fileName") == name)]


def sends_logged(emu: EmulatorThread, name: str | None, at_least: int) -> list[dict[str, Any]]:
    """sends() once at least `at_least` are logged: the emulator logs a request after its
    response, so a file can be on its disk a moment before its upload shows in the log."""
    wait_for(lambda: len(sends(emu, name)) >= at_least, timeout=10)
    return sends(emu, name)


def arrived(path: Path, expected: bytes | str) -> bool:
    """True once the remote copy holds exactly `expected` (bytes, or an md5 hex)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if isinstance(expected, str):
        import hashlib

        return hashlib.md5(data).hexdigest() == expected
    return data == expected


def write_slowly(path: Path, pieces: list[bytes], pause: float) -> None:
    """The workload of a slow writer (not a wait): one piece, a pause, the next..."""
    with open(path, "wb") as f:
        for i, piece in enumerate(pieces):
            f.write(piece)
            f.flush()
            os.fsync(f.fileno())
            if i < len(pieces) - 1:
                time.sleep(pause)
