"""Shared fixtures: the emulator on loopback, the CLI as a user runs it, data files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread

# pytest-xdist's workers set COLUMNS=80 and LINES=24 for their own report; every CLI a test starts
# inherits the environment, and rich would then draw for 80 columns whatever terminal the test gives
# it (pexpect's dimensions). A user's shell sets neither for a program it starts.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

KEY = "0123456789abcdef"
ALICE = ("alice", "Test@123")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path / "platform") as server:
        yield server


@pytest.fixture
def hub_env(emu: EmulatorThread, tmp_path: Path) -> dict[str, str]:
    return user_env(emu, tmp_path)


@pytest.fixture
def emu_sftp(tmp_path: Path) -> Iterator[EmulatorThread]:
    """The emulator with its SFTP service."""
    with EmulatorThread(tmp_path / "platform", sftp=True) as server:
        yield server


@pytest.fixture
def sftp_env(emu_sftp: EmulatorThread, tmp_path: Path) -> dict[str, str]:
    return user_env(emu_sftp, tmp_path)


def user_env(emu: EmulatorThread, tmp_path: Path) -> dict[str, str]:
    """The environment a user would set: no config file at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSYNC_")}
    env.update(
        HUBSYNC_URL=emu.url,
        HUBSYNC_USERNAME=ALICE[0],
        HUBSYNC_PASSWORD=ALICE[1],
        HUBSYNC_PASSWORD_KEY=KEY,
        HUBSYNC_STATE_DIR=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),  # never the machine's ~/.config/hubsync
        PYTHONPATH=str(REPO),
    )
    return env


def hubsync_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hubsync_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def obeying_permissions(cmd: list[str]) -> list[str]:
    """`cmd` run so that file permission bits apply to it, also when the tests run as root."""
    if os.geteuid() != 0:
        return cmd
    # root reads anything; without the DAC capabilities it obeys permission bits like a user
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop root's DAC override"
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def summary_of(result: subprocess.CompletedProcess[str]) -> dict:
    objs = [o for o in json_lines(result.stdout) if o.get("event") == "summary"]
    assert objs, f"no summary; rc={result.returncode}\nstdout={result.stdout[-2000:]}\nstderr={result.stderr[-2000:]}"
    return objs[-1]


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    """A file of `size` pseudo-random bytes, written in blocks (bounded memory)."""
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> object:
    """Poll `condition` until it is truthy or the deadline passes (no blind sleeps).

    The pause between polls starts at `interval` and grows to at most 0.25 s: a condition that
    runs `hubsync status` as a process would otherwise start fifty processes a second, and the
    suite runs on parallel workers sharing two cores."""
    deadline = time.monotonic() + timeout
    pause = interval
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(pause)
        pause = min(max(pause, interval) * 1.5, max(interval, 0.25))


def tree_md5s(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): md5_of(p) for p in root.rglob("*") if p.is_file()}


# The longest tests (seconds each on a quiet machine), started first: `make test` runs on parallel
# workers that steal work (pytest-xdist --dist worksteal), and a long test picked up last would keep
# one worker busy while the others sit idle. Listed by node id prefix; tests marked slow go first too.
LONG_TESTS = (
    "tests/test_readme.py::test_the_readme_runs_as_written",
    "tests/test_awkward_tree.py::",
    "tests/test_daemon_watch.py::test_two_thousand_files_dropped_at_once_all_arrive",
    "tests/test_daemon_watch.py::test_two_folders_into_private_and_public",
    "tests/test_datahub.py::test_rides_through_faults_and_expiring_tokens",
    "tests/test_datahub.py::test_sigkill_then_resume_sends_no_acknowledged_chunk_again",
    "tests/test_config_cli.py::test_exit_codes",
    "tests/test_sftp.py::test_kill_mid_upload_then_resume_sends_little_again",
    "tests/test_sync.py::test_sigkill_mid_transfer_then_resume",
    "tests/test_cli_face.py::test_status_",
    "tests/test_daemon_remote.py::",
    "tests/test_daemon_survives.py::",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def long(item: pytest.Item) -> bool:
        return item.get_closest_marker("slow") is not None or item.nodeid.startswith(LONG_TESTS)

    items.sort(key=lambda item: not long(item))  # stable: the rest keep their order
