"""The login password cipher and HS256 tokens, as the platform (RuoYi) makes them.

House reading (protocol.md §2): the password travels as AES-CBC(key = UTF-8 of the deployment's
password_key, IV = 16 zero bytes, PKCS#7) in uppercase hex. Tokens are HS256 JWTs built here
by hand (no JWT library), with `userId` as a string claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .config import EmulatorUser

_UPPER_HEX_BLOCKS = re.compile(r"(?:[0-9A-F]{32})+")
_JWT_HEADER = {"alg": "HS256", "typ": "JWT"}


def decrypt_password(cipher_hex: str, key: str) -> str | None:
    """The clear password inside the house cipher, or None when it is not a valid cipher."""
    if not _UPPER_HEX_BLOCKS.fullmatch(cipher_hex):
        return None  # lowercase hex, odd lengths and partial blocks are all refused
    decryptor = Cipher(algorithms.AES(key.encode("utf-8")), modes.CBC(bytes(16))).decryptor()
    padded = decryptor.update(bytes.fromhex(cipher_hex)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        clear = unpadder.update(padded) + unpadder.finalize()
        return clear.decode("utf-8")
    except ValueError:  # bad padding (wrong key) or not UTF-8
        return None


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says about its bearer."""

    user_id: int
    username: str
    tenant_id: int
    expires: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Signs and verifies tokens; `rotate()` invalidates every token issued so far."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def rotate(self) -> None:
        """Switch to a new secret, as a platform restart would: all old tokens fail."""
        self._secret = secrets.token_bytes(32)

    def issue(self, user: EmulatorUser, lifetime: float, now: float | None = None) -> str:
        """A signed token for `user` valid for `lifetime` seconds (exp is whole seconds)."""
        now = time.time() if now is None else now
        payload: dict[str, Any] = {
            "iss": "ruoyi",
            "userId": str(user.user_id),
            "userName": user.username,
            "tenantId": user.tenant_id,
            "iat": int(now),
            "exp": int(now + lifetime),
            "login_user_key": str(uuid.uuid4()),
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
            for part in (_JWT_HEADER, payload)
        )
        return f"{signing_input}.{_b64url(self._sign(signing_input))}"

    def verify(self, token: str, now: float | None = None) -> TokenClaims | None:
        """The claims of a well-signed, unexpired token; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _b64url_decode(parts[2])
            header = json.loads(_b64url_decode(parts[0]))
            payload = json.loads(_b64url_decode(parts[1]))
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(payload, dict):
            return None
        now = time.time() if now is None else now
        try:
            claims = TokenClaims(
                user_id=int(payload["userId"]),
                username=str(payload["userName"]),
                tenant_id=int(payload["tenantId"]),
                expires=int(payload["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if payload.get("iss") != "ruoyi" or now >= claims.expires:
            return None
        return claims

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest()
