"""Configuration of the platform emulator: where it keeps its data, who may log in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .faults import Faults

#: The largest chunk the emulator accepts in one uploadFile call (8 MiB is normal).
MAX_CHUNK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class EmulatorUser:
    """A platform account: login name, clear password, and its ids."""

    username: str
    password: str
    user_id: int
    tenant_id: int


def default_users() -> list[EmulatorUser]:
    """Two users of one tenant, so that they share the tenant's public space."""
    return [
        EmulatorUser("alice", "Test@123", 5, 101),
        EmulatorUser("bob", "Bob#pass-2026", 6, 101),
    ]


@dataclass
class EmulatorConfig:
    """Everything `build_app` needs; `faults` stays mutable while the emulator runs."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    users: list[EmulatorUser] = field(default_factory=default_users)
    password_key: str = "0123456789abcdef"
    # Random per run: tokens of an earlier run are invalid, as after a platform restart.
    jwt_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    token_lifetime: float = 3600.0
    faults: Faults = field(default_factory=Faults)
    log_path: Path | None = None
    sftp_port: int | None = None
    max_chunk_bytes: int = MAX_CHUNK_BYTES

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.log_path is None:
            self.log_path = self.root / "requests.jsonl"
        else:
            self.log_path = Path(self.log_path)
        if len(self.password_key.encode("utf-8")) not in (16, 24, 32):
            raise ValueError("password_key must be 16, 24 or 32 bytes of UTF-8 (an AES key)")
        names = [u.username for u in self.users]
        ids = [u.user_id for u in self.users]
        if len(set(names)) != len(names) or len(set(ids)) != len(ids):
            raise ValueError("emulator users need distinct names and distinct user ids")

    def user_by_name(self, username: str) -> EmulatorUser | None:
        """The account called `username`, if any."""
        return next((u for u in self.users if u.username == username), None)

    def user_by_id(self, user_id: int) -> EmulatorUser | None:
        """The account whose userId is `user_id`, if any."""
        return next((u for u in self.users if u.user_id == user_id), None)

    def effective_token_lifetime(self) -> float:
        """Token lifetime in seconds; a runtime override on `faults` wins."""
        override = self.faults.token_lifetime
        return self.token_lifetime if override is None else override
