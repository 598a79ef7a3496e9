"""The README takes a newcomer from a fresh clone to a first sync and a configured daemon.

Every shell block fenced as ```sh test``` is run, in order, in one bash script with `set -e`, by a
user whose home is empty (no config, no state, nothing installed): `make install`, the emulator,
the first syncs, the daemon. The only change made to the text is the emulator's port (8700 in the
README), replaced by a free one so that parallel runs do not collide.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from .conftest import REPO

FENCE = re.compile(r"^```sh test\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_script() -> str:
    blocks = FENCE.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "the README lost its tested blocks"
    return "\n".join(blocks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    script = readme_script()
    assert "8700" in script
    script = "set -euo pipefail\n" + script.replace("8700", str(_free_port()))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HUBSYNC_", "XDG_", "PYTHON", "VIRTUAL_ENV", "PIP_USER"))}
    env["HOME"] = str(home)
    proc = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the script left running (on failure)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out[-4000:]
    assert (home / ".local" / "bin" / "hubsync").exists()
    summaries = re.findall(r"^2 sent, 0 unchanged, 0 failed of 2 files;", out, re.MULTILINE)
    assert len(summaries) == 2, out[-3000:]  # private:/ and the datahub version
    platform = home / "platform" / "spaces" / "private" / "5"
    assert (platform / "incoming" / "hello.txt").read_text() == "new data\n"
    assert (platform / "datasets" / "cifar" / "train" / "a.jpg").read_text() == "a picture\n"
    daemon_log = (home / "daemon.log").read_text()
    assert all(line.startswith("{") for line in daemon_log.splitlines()), daemon_log[-2000:]
