"""Processes the bench measures: the emulator in its own process, and measured child commands.

Every measured command runs as a child process reaped with `os.wait4`, so its CPU time and
peak RSS (VmHWM, see _PeakRss) are its own; the emulator's CPU time is read from /proc before and after.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
_TICKS = os.sysconf("SC_CLK_TCK")
_LISTENING = re.compile(r"listening on (http://\S+)")
_SFTP = re.compile(r"sftp on \S+:(\d+)")
_PROXY = re.compile(r"delayproxy on 127\.0\.0\.1:(\d+)")

USER, PASSWORD, KEY = "alice", "Test@123", "0123456789abcdef"


def process_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Measured:
    """One finished child: wall time, exit code, its own CPU and peak RSS, timestamped output."""

    argv: list[str]
    wall: float
    returncode: int
    user: float
    system: float
    maxrss_mib: float
    emulator_cpu: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, stdout line)
    stderr: str = ""
    killed: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def emulator_share(self) -> float:
        """Emulator CPU seconds per wall second (1.0 = one full core)."""
        return self.emulator_cpu / self.wall if self.wall > 0 else 0.0

    def check(self, *, kill_expected: bool = False) -> Measured:
        """Raise unless the child exited 0 (or was SIGKILLed, when that was the plan)."""
        if self.returncode != 0 and not (kill_expected and self.killed):
            tail = "\n".join(line for _, line in self.lines[-5:])
            raise RuntimeError(
                f"{' '.join(self.argv[:4])} ... exited {self.returncode}\n{tail}\n{self.stderr[-3000:]}"
            )
        return self


class _PeakRss(threading.Thread):
    """The child's own peak RSS: its VmHWM in /proc, read every 20 ms until it is reaped.

    wait4's ru_maxrss is no good here: Linux carries the high-water mark of the memory the child
    was forked (or vforked) from into it at exec, so every child of a bench process holding
    150 MiB reported at least 150 MiB. VmHWM belongs to the memory map exec made, and only grows;
    readings are taken once /proc no longer shows the bench's own command line there (the child
    has made its exec; a script shows its interpreter's). A peak in the last 20 ms before exit
    can be missed; a child gone before its first reading falls back to ru_maxrss (an upper bound).
    """

    def __init__(self, pid: int, finished: threading.Event) -> None:
        super().__init__(daemon=True)
        self.pid, self.finished = pid, finished
        with open("/proc/self/cmdline", "rb") as f:
            self.parent = f.read()  # what a vforked child shows until its exec
        self.kib = 0

    def run(self) -> None:
        status, cmdline = f"/proc/{self.pid}/status", f"/proc/{self.pid}/cmdline"
        own = False
        while not self.finished.wait(0.02):
            try:
                if not own:
                    with open(cmdline, "rb") as f:
                        own = f.read() not in (self.parent, b"")
                    if not own:
                        continue
                with open(status) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.kib = max(self.kib, int(line.split()[1]))
                            break
            except (OSError, ValueError):
                continue  # not started yet, or gone (a zombie has no VmHWM): the wait ends it

    def mib(self, ru_maxrss_kib: int) -> float:
        return (self.kib or ru_maxrss_kib) / 1024


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    emulator: EmulatorProcess | None = None,
    watch: Callable[[int, threading.Event], None] | None = None,
    timeout: float = 1800.0,
    keep_lines: int | None = None,
) -> Measured:
    """Run `argv` to completion (`keep_lines`: only the last so many stdout lines are kept).

    `watch(pid, finished)` (if given) runs in a thread while the child runs and may SIGKILL it;
    `finished` is set once the child has been reaped (stop watching then).
    """
    emu_before = emulator.cpu() if emulator else 0.0
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    lines: deque[tuple[float, str]] = deque(maxlen=keep_lines)
    errors: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))

    def read_err() -> None:
        assert proc.stderr is not None
        errors.append(proc.stderr.read())

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()
    finished = threading.Event()
    peak = _PeakRss(proc.pid, finished)
    peak.start()
    watcher = threading.Thread(target=watch, args=(proc.pid, finished), daemon=True) if watch else None
    if watcher is not None:
        watcher.start()
    timer = threading.Timer(timeout, lambda: _kill(proc.pid))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        finished.set()
    wall = time.perf_counter() - started
    peak.join(timeout=30)
    if watcher is not None:
        watcher.join(timeout=30)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(timeout=30)
    emu_after = emulator.cpu() if emulator else 0.0
    return Measured(
        argv=list(argv),
        wall=wall,
        returncode=proc.returncode,
        user=usage.ru_utime,
        system=usage.ru_stime,
        maxrss_mib=peak.mib(usage.ru_maxrss),
        emulator_cpu=emu_after - emu_before,
        lines=list(lines),
        stderr="".join(errors)[-20000:],
        killed=proc.returncode == -signal.SIGKILL,
    )


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def terminate(proc: subprocess.Popen[str] | None) -> None:
    """SIGTERM a child we started and reap it (SIGKILL if it takes more than 30 s)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EmulatorProcess:
    """`python -m emulator` on a free loopback port (plus SFTP), in its own process and root."""

    def __init__(self, root: Path, *, sftp: bool = True, reported_sftp_port: int | None = None,
                 users: list[str] | None = None) -> None:
        self.root = root
        self.sftp = sftp and reported_sftp_port is None
        self.reported_sftp_port = reported_sftp_port  # queryUserInfo's port, served by another (sshd)
        self.users = users or []  # --user NAME:PASSWORD:USERID:TENANTID (default: alice and bob)
        self.url = ""
        self.sftp_port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> EmulatorProcess:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        argv = [PYTHON, "-m", "emulator", "--port", "0", "--root", str(self.root)]
        if self.sftp:
            argv += ["--sftp-port", "0"]
        if self.reported_sftp_port is not None:
            argv += ["--sftp-reported-port", str(self.reported_sftp_port)]
        for user in self.users:
            argv += ["--user", user]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while not self.url or (self.sftp and not self.sftp_port):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"emulator exited before listening (code {self.proc.poll()})")
            if m := _LISTENING.search(line):
                self.url = m.group(1)
            if m := _SFTP.search(line):
                self.sftp_port = int(m.group(1))
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start within 60 s")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return process_cpu(self.pid)

    @property
    def log_path(self) -> Path:
        return self.root / "requests.jsonl"

    def private_path(self, rel: str = "") -> Path:
        """Disk path of `rel` in alice's private space (userId 5)."""
        return self.root / "spaces" / "private" / "5" / rel

    def stop(self, *, remove: bool = True) -> None:
        terminate(self.proc)
        self.proc = None
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ProxyProcess:
    """`python -m bench.delayproxy` in its own process: loopback `port` -> `target`, `delay` each way."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ProxyProcess:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.delayproxy", "--target", f"127.0.0.1:{self.target_port}", "--delay",
             repr(self.delay)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not (m := _PROXY.search(line)):
            raise RuntimeError(f"the delay proxy did not start (code {self.proc.poll()}): {line!r}")
        self.port = int(m.group(1))
        return self

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        assert self.proc is not None
        return process_cpu(self.proc.pid)

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def hubsync_env(emulator: EmulatorProcess, state_dir: Path, *, url: str | None = None,
                user: str = USER) -> dict[str, str]:
    """The environment a user sets to run `hubsync` with no config file (`url`: e.g. a delay proxy's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSYNC_", "RCLONE_"))}
    env.update(
        HUBSYNC_URL=url or emulator.url,
        HUBSYNC_USERNAME=user,
        HUBSYNC_PASSWORD=PASSWORD,
        HUBSYNC_PASSWORD_KEY=KEY,
        HUBSYNC_STATE_DIR=str(state_dir),
    )
    return env


def hubsync_argv() -> list[str]:
    """The installed console script, as `make` puts it in .venv/bin."""
    script = Path(PYTHON).with_name("hubsync")
    return [str(script)] if script.exists() else [PYTHON, "-m", "agent.cli"]
