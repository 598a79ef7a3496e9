"""Fixtures for the emulator's own tests: a running emulator and a thin raw-HTTP caller.

The caller is written here on purpose, with plain aiohttp: the emulator is tested against the
wire format of protocol.md, never through the hubsync client.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from emulator.testing import EmulatorThread

KEY = "0123456789abcdef"
ALICE = ("alice", "Test@123")
BOB = ("bob", "Bob#pass-2026")
F = "/api/file/file/"


def encrypt(password: str, key: str = KEY) -> str:
    """The house login cipher, computed independently of the emulator."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(password.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode("utf-8")), modes.CBC(bytes(16))).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex().upper()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def snapshot(root: Path) -> set[str]:
    """Every path inside the spaces and the chunk store (to prove nothing was written).

    Space roots themselves are left out: the platform provisions them on first use.
    """
    paths = {p.relative_to(root).as_posix() for d in ("spaces", "chunks") for p in (root / d).rglob("*")}
    return {p for p in paths if not p.startswith("spaces/") or p.count("/") >= 3}


class Api:
    """Raw calls against the emulator; every method returns (HTTP status, parsed body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.token = ""
        self.user_id = "5"

    async def login(self, user: tuple[str, str] = ALICE, *, cipher: str | None = None) -> tuple[int, Any]:
        body = {"username": user[0], "password": encrypt(user[1]) if cipher is None else cipher}
        status, answer = await self.post("/prod-api/login", body, auth=False)
        if answer.get("code") == 200:
            self.token = answer["token"]
            self.user_id = jwt_payload(self.token)["userId"]
        return status, answer

    def headers(self, auth: bool = True) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if auth else {}

    async def post(self, path: str, body: Any, *, auth: bool = True) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body, headers=self.headers(auth)) as r:
            return r.status, await _body(r)

    async def put(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.put(self.url + path, json=body, headers=self.headers()) as r:
            return r.status, await _body(r)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path, headers=self.headers()) as r:
            return r.status, await _body(r)

    async def form(self, path: str, form: aiohttp.FormData) -> tuple[int, Any]:
        async with self.session.post(self.url + path, data=form, headers=self.headers()) as r:
            return r.status, await _body(r)

    # -- file calls ----------------------------------------------------------------------------

    async def add_folder(self, name: str, parent: str = "", public: bool = False) -> tuple[int, Any]:
        body = {
            "folderName": name,
            "parentPath": parent,
            "userId": self.user_id,
            "publicUserId": self.user_id,
        }
        return await self.post(F + ("addPublicFolder" if public else "addFolder"), body)

    async def list(
        self, path: str = "", begin: Any = 1, count: Any = 100, public: bool = False
    ) -> tuple[int, Any]:
        body = {
            "fileName": "",
            "path": path,
            "requestBegin": begin,
            "requestFileAccount": count,
            "userId": None if public else self.user_id,
        }
        return await self.post(F + "getFolderInfo", body)

    async def names(self, path: str = "", public: bool = False) -> list[str]:
        status, body = await self.list(path, public=public)
        assert status == 200 and body["success"], body
        return [e["fileName"] for e in body["result"]]

    async def simple_upload(
        self, name: str, data: bytes, current: str = "", public: bool = False, quote: bool = False
    ) -> tuple[int, Any]:
        form = aiohttp.FormData(quote_fields=quote)
        if public:
            form.add_field("publicUserId", self.user_id)
        form.add_field("currentPath", current)
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        return await self.form(F + ("uploadPublicFolder" if public else "uploadFolder"), form)

    async def delete(self, paths: list[str], public: bool = False) -> tuple[int, Any]:
        body = {"sPath": paths, "userId": self.user_id, "publicUserId": self.user_id}
        return await self.post(F + ("deletePublicFileOrDictory" if public else "deleteFileOrDictory"), body)

    async def check(self, name: str, data: bytes, current: str = "", public: bool = False) -> tuple[int, Any]:
        body = {
            "userId": self.user_id,
            "isPublic": public,
            "fileName": name,
            "fileMd5": md5(data),
            "fileSize": len(data),
            "currentPath": current,
        }
        return await self.post(F + "checkFileExist", body)

    async def chunk(
        self,
        name: str,
        file_md5: str,
        piece: bytes,
        index: int,
        total: int,
        current: str = "",
        public: bool = False,
        **override: str,
    ) -> tuple[int, Any]:
        fields = {
            "userId": self.user_id,
            "isPublic": "true" if public else "false",
            "currentPath": current,
            "fileName": name,
            "fileMd5": file_md5,
            "chunkSize": str(len(piece)),
            "chunkMd5": md5(piece),
            "index": str(index),
            "total": str(total),
        }
        fields.update(override)
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("chunk", piece, filename="blob", content_type="application/octet-stream")
        return await self.form(F + "uploadFile", form)

    async def merge(
        self, name: str, data: bytes, total: int, current: str = "", public: bool = False, **override: Any
    ) -> tuple[int, Any]:
        body = {
            "userId": self.user_id,
            "isPublic": public,
            "currentPath": current,
            "fileName": name,
            "fileMd5": md5(data),
            "fileSize": len(data),
            "total": total,
        }
        body.update(override)
        return await self.post(F + "mergeFile", body)

    async def upload(
        self, name: str, data: bytes, chunk_size: int, current: str = "", public: bool = False
    ) -> None:
        """The whole chunk protocol, asserting each step succeeds."""
        pieces = split(data, chunk_size)
        for i, piece in enumerate(pieces):
            status, body = await self.chunk(name, md5(data), piece, i, len(pieces), current, public)
            assert status == 200 and body["success"], body
        status, body = await self.merge(name, data, len(pieces), current, public)
        assert status == 200 and body["success"], body


def raw_multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body built by hand: (name, data, filename taken verbatim) per part.

    For what aiohttp's FormData refuses to send, such as control characters in a filename.
    """
    boundary = "emulator-test-boundary"
    out = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _body(r: aiohttp.ClientResponse) -> Any:
    text = await r.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


def ok(answer: tuple[int, Any]) -> Any:
    """Assert a file-family success and return its result."""
    status, body = answer
    assert status == 200 and body["success"] is True and body["errorCode"] == 200, answer
    return body["result"]


def refused(answer: tuple[int, Any], code: int = 400) -> str:
    """Assert a file-family envelope failure (HTTP 200) and return its message."""
    status, body = answer
    assert status == 200 and body["success"] is False and body["errorCode"] == code, answer
    assert body["result"] is None
    return body["message"]


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path / "platform") as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api(emu: EmulatorThread, session: aiohttp.ClientSession) -> Api:
    """A caller logged in as alice."""
    caller = Api(session, emu.url)
    status, body = await caller.login()
    assert status == 200 and body["code"] == 200, body
    return caller


FQ = "/api/file/user/queryUserInfo"


@pytest.fixture
async def sftp(emu: EmulatorThread, api: Api) -> AsyncIterator[asyncssh.SFTPClient]:
    """A plain asyncssh SFTP client logged in with the private account (needs an `emu` with sftp=True)."""
    account = ok(await api.post(FQ, {"userId": api.user_id, "svcType": "sftp", "isPublic": False}))
    async with asyncssh.connect(
        "127.0.0.1", int(account["port"]), username=account["username"], password=account["password"],
        known_hosts=None, client_keys=None, agent_path=None, config=None,
    ) as conn, conn.start_sftp_client() as client:
        yield client
