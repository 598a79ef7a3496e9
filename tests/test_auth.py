"""The password cipher, JWT reading and single-flight token refresh."""

import asyncio
import base64
import json

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from transfer.auth import Token, TokenSource, encrypt_password, jwt_claims
from transfer.errors import AuthFailed


def reference_cipher(password: str, key: bytes) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(password.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return (enc.update(data) + enc.finalize()).hex().upper()


def test_house_vector_matches_cryptography() -> None:
    assert encrypt_password("Test@123", "0123456789abcdef") == reference_cipher("Test@123", b"0123456789abcdef")


@pytest.mark.parametrize("password", ["exactly16bytes!!", "a much longer password than one block 密码", ""])
def test_long_and_unicode_passwords(password: str) -> None:
    cipher = encrypt_password(password, "0123456789abcdef0123456789abcdef")
    assert cipher == reference_cipher(password, b"0123456789abcdef0123456789abcdef")
    assert cipher == cipher.upper() and len(cipher) % 32 == 0


def test_bad_key_length_refused() -> None:
    with pytest.raises(AuthFailed, match="16, 24 or 32"):
        encrypt_password("x", "short")


def _jwt(payload: dict) -> str:
    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'HS256'})}.{enc(payload)}.sig"


def test_jwt_claims_and_refresh_point() -> None:
    token = _jwt({"userId": "5", "exp": 1000})
    assert jwt_claims(token)["userId"] == "5"
    assert jwt_claims("not-a-jwt") == {}
    parsed = Token.parse(token, now=0.0)
    assert parsed.expires_at == 1000
    assert parsed.fresh(900.0) and not parsed.fresh(950.0)
    short = Token.parse(_jwt({"exp": 10}), now=7.0)  # 3 s token: refresh in the last fifth
    assert short.fresh(9.0) and not short.fresh(9.5)
    assert "ey" not in repr(parsed)


async def test_single_flight_refresh() -> None:
    now = [0.0]
    logins = []

    async def login() -> str:
        logins.append(1)
        await asyncio.sleep(0)
        return _jwt({"exp": now[0] + 3600, "n": len(logins)})

    source = TokenSource(login, clock=lambda: now[0])
    first = await source.get()
    results = await asyncio.gather(*(source.refresh(first) for _ in range(20)))
    assert len(set(results)) == 1 and results[0] != first
    assert source.logins == 2
    now[0] = 3590.0  # past the refresh point: get() logs in again by itself
    assert await source.get() != results[0]
    assert source.logins == 3


async def test_static_token_without_password() -> None:
    source = TokenSource(None, static_token=_jwt({"exp": 10}), clock=lambda: 100.0)
    assert await source.get()  # expired by its claims, but it is all we have: the platform decides
    with pytest.raises(AuthFailed):
        await source.refresh(None)
