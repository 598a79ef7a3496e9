"""rclone, the SFTP baseline: found or installed from Debian's packages, configured by environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

from .harness import KEY, PASSWORD, USER, EmulatorProcess
from .minimal_client import query_sftp_account

# Against asyncssh's SFTP server rclone needs --sftp-disable-concurrent-writes (issue 7). The
# server runs no shell, so hash checks and shell probing are off (that only spares rclone work).
FLAGS = ["--sftp-disable-concurrent-writes", "--sftp-disable-hashcheck", "--sftp-shell-type", "none"]
# Against OpenSSH rclone is at its best: concurrent writes on (64 requests in flight per file,
# its default) and packets of 255 KiB, which OpenSSH takes (rclone's docs: "setting it larger
# will increase transfer speed dramatically on high latency links"). The account has no shell.
OPENSSH_FLAGS = ["--sftp-chunk-size", "255Ki", "--sftp-disable-hashcheck", "--sftp-shell-type", "none"]


def ensure_rclone() -> tuple[str | None, str]:
    """rclone's path and a note saying where it came from; (None, reason) if it is unavailable."""
    found = shutil.which("rclone")
    if found:
        return found, f"rclone: {version(found)} ({found})"
    print("bench: rclone is missing; installing it with `apt-get install -y rclone`", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    attempts = [[*sudo, "apt-get", "install", "-y", "rclone"],
                [*sudo, "apt-get", "update"], [*sudo, "apt-get", "install", "-y", "rclone"]]
    errors = ""
    for argv in attempts:
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors = str(exc)
            continue
        lines = done.stderr.strip().splitlines()
        errors = lines[-1] if lines else ""
        if argv[-1] == "rclone" and done.returncode == 0 and (found := shutil.which("rclone")):
            print(f"bench: installed {version(found)}", flush=True)
            return found, f"rclone was missing and was installed by the bench (apt-get install -y rclone): {version(found)}"
    return None, f"rclone is not installed and `apt-get install -y rclone` failed ({errors or 'no detail'})"


def version(rclone: str) -> str:
    out = subprocess.run([rclone, "version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "rclone (unknown version)"


def rclone_env(rclone: str, emulator: EmulatorProcess) -> dict[str, str]:
    """Environment defining the remote `emu:` as the private space's SFTP account."""
    account = asyncio.run(query_sftp_account(emulator.url, username=USER, password=PASSWORD, key=KEY))
    return sftp_env(rclone, emulator.sftp_port, account["username"], account["password"])


def sftp_env(rclone: str, port: int, username: str, password: str) -> dict[str, str]:
    """Environment defining the remote `emu:` as 127.0.0.1:port, logged in with a password."""
    obscured = subprocess.run([rclone, "obscure", password], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "HUBSYNC_"))}
    env.update(
        RCLONE_CONFIG_EMU_TYPE="sftp",
        RCLONE_CONFIG_EMU_HOST="127.0.0.1",
        RCLONE_CONFIG_EMU_PORT=str(port),
        RCLONE_CONFIG_EMU_USER=username,
        RCLONE_CONFIG_EMU_PASS=obscured,
    )
    return env


def rclone_argv(rclone: str, config: Path, verb: str, source: Path, dest: str, *extra: str,
                flags: list[str] = FLAGS) -> list[str]:
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.touch()  # an empty config: the remote comes from the environment only
    return [rclone, "--config", str(config), verb, str(source), f"emu:{dest}", *flags, *extra]
