"""SFTP accounts: one per private space (per user) and one per public space (per tenant).

The platform generates the passwords; the emulator keeps them in `<root>/sftp_accounts.json`
(mode 0600) so they survive restarts. The SFTP server authenticates against the same store.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
from dataclasses import dataclass
from pathlib import Path

from .storage import Space

_ALPHABET = string.ascii_letters + string.digits
_PASSWORD_LENGTH = 12


@dataclass(frozen=True)
class SftpAccount:
    """Login name and password of the SFTP account whose home is `space`'s root."""

    username: str
    password: str
    space: Space


def account_username(space: Space, platform_username: str) -> str:
    """SFTP login name: the platform user's own name, or `public-<tenantId>` for a public space."""
    return platform_username if space.kind == "private" else f"public-{space.owner_id}"


class SftpAccounts:
    """The persistent account store (thread-safe; re-read on each call so processes can share it)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "sftp_accounts.json"
        self._lock = threading.Lock()

    def get(self, space: Space, username: str) -> SftpAccount:
        """The account of `space`, created with a fresh password on first use."""
        with self._lock:
            accounts = self._load()
            entry = accounts.get(username)
            if entry is None or _space_of(entry) != space:
                entry = self._new_entry(space)
                accounts[username] = entry
                self._save(accounts)
            return SftpAccount(username, entry["password"], space)

    def reset(self, space: Space, username: str) -> SftpAccount:
        """Give the account of `space` a new generated password (for every user of it)."""
        with self._lock:
            accounts = self._load()
            accounts[username] = self._new_entry(space)
            self._save(accounts)
            return SftpAccount(username, accounts[username]["password"], space)

    def authenticate(self, username: str, password: str) -> Space | None:
        """The space whose account matches (username, password), else None."""
        with self._lock:
            entry = self._load().get(username)
        if entry is None or not secrets.compare_digest(entry["password"].encode(), password.encode()):
            return None
        return _space_of(entry)

    @staticmethod
    def _new_entry(space: Space) -> dict[str, str]:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(_PASSWORD_LENGTH))
        return {"password": password, "space": f"{space.kind}/{space.owner_id}"}

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, accounts: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(accounts, f, indent=1)
        os.replace(tmp, self.path)


def _space_of(entry: dict[str, str]) -> Space:
    kind, owner = entry["space"].split("/")
    if kind not in ("private", "public"):
        raise ValueError(f"bad space in SFTP account store: {entry['space']!r}")
    return Space("private" if kind == "private" else "public", int(owner))
