"""SSH host key trust: a configured known_hosts file, or pinning on first use (protocol.md §4).

The platform does not document its SFTP host key, so without a configured file hubsync
trusts the first key it sees for a host and port, records it in OpenSSH known_hosts format
(`[host]:port` for ports other than 22), and refuses any other key afterwards.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from .errors import Fatal


def host_pattern(host: str, port: int) -> str:
    """The known_hosts name of host:port, as OpenSSH writes it."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


@dataclass
class HostKeyCheck:
    """What one connection attempt saw: the key offered, and whether it is new or refused."""

    host: str
    port: int
    offered: asyncssh.SSHKey | None = None
    trusted: list[asyncssh.SSHKey] | None = None
    new: bool = False

    @property
    def refused(self) -> bool:
        return self.offered is not None and not self.new and bool(self.trusted) and self.offered not in (self.trusted or [])


class HostKeyPolicy:
    """Decides whether a server's host key is trusted; records keys seen first in `pin_file`."""

    def __init__(self, pin_file: Path, known_hosts: Path | None = None) -> None:
        self.pin_file = Path(pin_file)
        self.known_hosts = Path(known_hosts) if known_hosts else None
        self._lock = threading.Lock()

    @property
    def source(self) -> Path:
        return self.known_hosts or self.pin_file

    def trusted_keys(self, host: str, addr: str, port: int) -> list[asyncssh.SSHKey]:
        """The keys the file holds for host:port (blocking: reads the file)."""
        try:
            known = asyncssh.read_known_hosts(str(self.source))
        except FileNotFoundError:
            if self.known_hosts is not None:
                raise Fatal(f"[sftp] known_hosts file {self.known_hosts} does not exist") from None
            return []
        except (OSError, ValueError) as exc:
            raise Fatal(f"cannot read host keys from {self.source}: {exc}") from exc
        return list(known.match(host, addr, port)[0])

    def accept(self, check: HostKeyCheck, key: asyncssh.SSHKey) -> bool:
        """asyncssh's validate_host_public_key: trust the pinned key, or the first one seen."""
        check.offered = key
        if check.trusted is None:
            check.trusted = []
        if key in check.trusted:
            return True
        if not check.trusted and self.known_hosts is None:
            check.new = True  # trust on first use; pinned once the connection is made
            return True
        return False

    def pin(self, check: HostKeyCheck) -> None:
        """Record a key seen first (blocking); a key pinned meanwhile by another process wins."""
        if not check.new or check.offered is None:
            return
        with self._lock:
            if self.trusted_keys(check.host, check.host, check.port):
                return
            self.pin_file.parent.mkdir(parents=True, exist_ok=True)
            line = f"{host_pattern(check.host, check.port)} {check.offered.export_public_key('openssh').decode().strip()}\n"
            fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as f:
                f.write(line)

    def refusal(self, check: HostKeyCheck) -> Fatal:
        """The error for a host key that differs from the one trusted (or is unknown)."""
        name = host_pattern(check.host, check.port)
        offered = fingerprint(check.offered) if check.offered else "(none)"
        if not check.trusted:
            return Fatal(
                f"SFTP host {name} is not in {self.source} (its key is {offered}); add it there, or"
                " leave [sftp] known_hosts empty to pin the key on first use. Nothing was sent."
            )
        expected = ", ".join(fingerprint(k) for k in check.trusted)
        fix = (
            f"if the server's key was legitimately changed, remove the line for {name} from {self.source}"
            + (" and run again to pin the new key" if self.known_hosts is None else " and add the new key")
        )
        return Fatal(
            f"SFTP host key of {name} has CHANGED: expected {expected}, the server offered {offered}."
            f" This may be an attack; nothing was sent. {fix}."
        )
