"""Login: the platform's password cipher, token lifetime and single-flight refresh."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import AuthFailed

# Log in again this long before the token's exp, so no call races the expiry.
REFRESH_MARGIN_S = 60.0


def encrypt_password(password: str, key: str) -> str:
    """The house cipher: AES-CBC, zero IV, PKCS#7, key = UTF-8 of `key`, uppercase hex."""
    key_bytes = key.encode("utf-8")
    if len(key_bytes) not in (16, 24, 32):
        raise AuthFailed(f"password_key must be 16, 24 or 32 bytes of UTF-8, not {len(key_bytes)}")
    padder = padding.PKCS7(128).padder()
    data = padder.update(password.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key_bytes), modes.CBC(bytes(16))).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex().upper()


def jwt_claims(token: str) -> dict[str, object]:
    """The JWT payload, read without verifying the signature (only the platform can)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class Token:
    """A bearer token, when it expires and when to replace it (epoch seconds, None = unknown)."""

    value: str
    expires_at: float | None
    refresh_at: float | None

    @classmethod
    def parse(cls, value: str, now: float) -> Token:
        exp = jwt_claims(value).get("exp")
        if not isinstance(exp, int | float):
            return cls(value, None, None)
        # Refresh a minute early, or a fifth of the lifetime early for short-lived tokens.
        margin = min(REFRESH_MARGIN_S, max(0.0, (float(exp) - now) * 0.2))
        return cls(value, float(exp), float(exp) - margin)

    def fresh(self, now: float) -> bool:
        """True until the refresh point."""
        return self.refresh_at is None or now < self.refresh_at

    def __repr__(self) -> str:  # never let a token reach a log through repr()
        return f"Token(expires_at={self.expires_at})"


class TokenSource:
    """Hands out a valid token; logs in at most once at a time however many calls need one."""

    def __init__(
        self,
        login: Callable[[], Awaitable[str]] | None,
        *,
        static_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._login = login
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: Token | None = Token.parse(static_token, clock()) if static_token else None
        self.logins = 0

    @property
    def can_login(self) -> bool:
        return self._login is not None

    def current(self) -> Token | None:
        return self._token

    async def get(self) -> str:
        """A token that is not about to expire."""
        token = self._token
        if token is not None and (token.fresh(self._clock()) or not self.can_login):
            return token.value
        return await self.refresh(token.value if token else None)

    async def refresh(self, stale: str | None) -> str:
        """Log in again unless another caller already replaced `stale` (single flight)."""
        async with self._lock:
            current = self._token
            if current is not None and current.value != stale and current.fresh(self._clock()):
                return current.value
            if self._login is None:
                raise AuthFailed("the configured token was refused and no password is configured")
            value = await self._login()
            self.logins += 1
            self._token = Token.parse(value, self._clock())
            return value
