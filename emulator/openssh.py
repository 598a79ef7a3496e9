"""A real OpenSSH sshd on loopback as the platform's SFTP service (tests/test_openssh.py, the bench).

The platform's SFTP service is most likely OpenSSH. This runs Debian's sshd (`openssh-server`)
with its own config, host key and pid file, for a local account made for the purpose; the
account's password is the one the emulator's account store generated, so a client gets it the
honest way, from queryUserInfo (point the emulator's reported SFTP port at sshd's).

- Needs root (useradd, chpasswd, sshd) and /usr/sbin/sshd; `requirements()` says why not.
- No chroot: OpenSSH wants every component of a ChrootDirectory owned by root and not writable
  by others, which /tmp is not. The account's home is the login dir.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

SSHD = "/usr/sbin/sshd"


class SshdUnavailable(Exception):
    """sshd cannot run here; the message says why (a test's skip reason, a bench row's)."""


def run_tool(*args: str, stdin: str | None = None) -> None:
    """Run useradd/chpasswd/userdel. They lock /etc/passwd and give up at once when another one holds
    it (parallel test workers, a bench beside the suite): that is retried for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr.lower() or time.monotonic() > deadline:
            raise SshdUnavailable(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr.strip()}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd forks one per connection, and those fork again)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def requirements() -> None:
    """Raise SshdUnavailable (saying why) unless this machine can run sshd for a local account."""
    if sys.platform != "linux":
        raise SshdUnavailable(f"needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        raise SshdUnavailable("needs root: it creates a local account (useradd, chpasswd) and runs sshd")
    if not os.access(SSHD, os.X_OK):
        raise SshdUnavailable(f"{SSHD} is missing: install Debian's openssh-server (.ci/run does so as root)")
    missing = [tool for tool in ("useradd", "userdel", "chpasswd") if shutil.which(tool) is None]
    if missing:
        raise SshdUnavailable(f"{', '.join(missing)} not found")
    try:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    except OSError as exc:
        raise SshdUnavailable(f"cannot create /run/sshd: {exc}") from exc


def uid_of(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def gid_of(name: str) -> int:
    return pwd.getpwnam(name).pw_gid


class LocalAccount:
    """A local user `prefix<hex>` with its own home (0755, its own) and no shell, removed by remove()."""

    def __init__(self, prefix: str = "hst", *, home_parent: Path | None = None) -> None:
        self.name = f"{prefix}{secrets.token_hex(4)}"
        # Not below a root-only (0700) temp dir: the account must reach its home.
        self.home = Path(tempfile.mkdtemp(prefix="hubsync-openssh-home-", dir=home_parent))
        self.created = False

    def create(self) -> LocalAccount:
        run_tool("useradd", "--no-create-home", "--home-dir", str(self.home), "--shell", "/usr/sbin/nologin",
                 "--comment", "hubsync OpenSSH account", self.name)
        self.created = True
        os.chown(self.home, uid_of(self.name), gid_of(self.name))
        self.home.chmod(0o755)
        return self

    def set_password(self, password: str) -> None:
        run_tool("chpasswd", stdin=f"{self.name}:{password}\n")

    def remove(self) -> None:
        if self.created:
            subprocess.run(["userdel", "--force", self.name], capture_output=True, timeout=60)
            self.created = False
        shutil.rmtree(self.home, ignore_errors=True)


class Sshd:
    """One sshd -D on 127.0.0.1:port with its own config, host key and pid file, for one user."""

    def __init__(self, workdir: Path, user: str, port: int) -> None:
        self.dir = workdir
        self.user = user
        self.port = port
        self.log = workdir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = self.new_key()

    def new_key(self) -> asyncssh.SSHKey:
        """Generate a host key and use it from the next start()."""
        key = asyncssh.generate_private_key("ssh-ed25519")
        path = self.dir / "ssh_host_ed25519_key"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # sshd refuses a readable key
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        self.key = key
        return key

    def start(self) -> None:
        config = self.dir / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {self.dir / 'ssh_host_ed25519_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AllowUsers {self.user}\n"
            "PasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication no\n"
            "AuthorizedKeysFile none\n"
            "PermitRootLogin no\n"
            "UsePAM no\n"
            "X11Forwarding no\n"
            "AllowTcpForwarding no\n"
            "PrintMotd no\n"
            "LogLevel INFO\n"
            "Subsystem sftp internal-sftp\n",
            encoding="utf-8",
        )
        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise SshdUnavailable(f"sshd exited with {self.proc.returncode}: {self.log_text()[-1500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0-OpenSSH"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SshdUnavailable(f"sshd did not answer on 127.0.0.1:{self.port} within 15s: {self.log_text()[-1500:]}")
            time.sleep(0.02)  # the next poll of the port, not a wait for a guessed duration

    def stop(self) -> None:
        """Stop sshd and the per-connection processes it forked (each by its pid)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for pid in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
