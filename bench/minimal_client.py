"""The baseline: a minimal straight-line client of the platform's md5 chunk protocol (aiohttp).

It does only what the protocol needs and nothing hubsync adds on top (no journal, no progress,
no retries, no confirmation listing), and shares no code with `transfer/`:

- log in (the house cipher, protocol.md §2) and read the userId (getInfo);
- create each target folder once, one level at a time (addFolder);
- a file under `small_threshold` (1 MiB, hubsync's default) goes in one simple upload
  (uploadFolder); a larger one: md5 of the whole file (1 MiB reads, in a thread), then
  checkFileExist, then uploadFile for every missing chunk with `chunks_per_file` in flight (each
  chunk read and md5-hashed in a thread while the others are sent), then mergeFile;
- `transfers` files in flight.

Run: `python -m bench.minimal_client --url URL SRC FOLDER` prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MiB = 1 << 20
BASE = "/api/file/file/"


def cipher(password: str, key: str) -> str:
    """AES-CBC, zero IV, PKCS#7, key = UTF-8 of `key`, uppercase hex (protocol.md §2)."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(password.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key.encode()), modes.CBC(bytes(16))).encryptor()
    return (enc.update(data) + enc.finalize()).hex().upper()


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    buf = bytearray(MiB)  # one reused buffer: a fresh 1 MiB bytes per read costs page faults
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def read_chunk(path: Path, offset: int, length: int) -> tuple[bytes, str]:
    with open(path, "rb", buffering=0) as f:
        data = os.pread(f.fileno(), length, offset)
    return data, hashlib.md5(data).hexdigest()


@dataclass
class Summary:
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    hash_seconds: float = 0.0  # whole-file md5 before the first request (summed over files)
    upload_seconds: float = 0.0  # checkFileExist + chunks (summed over chunked files)
    merge_seconds: float = 0.0  # mergeFile (summed)


class MinimalClient:
    """One aiohttp session, one token, the private space of the logged-in user."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.headers: dict[str, str] = {}
        self.user_id = ""
        self._folders: dict[str, asyncio.Future[None]] = {}

    async def _post(self, path: str, **kwargs: Any) -> Any:
        async with self.session.post(self.url + path, headers=self.headers, **kwargs) as resp:
            body = await resp.json(content_type=None)
        if resp.status != 200 or not (body.get("success") or body.get("code") == 200):
            raise RuntimeError(f"{path}: HTTP {resp.status} {body}")
        return body

    async def login(self, username: str, password: str, key: str) -> None:
        body = await self._post("/prod-api/login", json={"username": username, "password": cipher(password, key)})
        self.headers = {"Authorization": f"Bearer {body['token']}"}
        async with self.session.get(self.url + "/prod-api/getInfo", headers=self.headers) as resp:
            self.user_id = str((await resp.json(content_type=None))["user"]["userId"])

    async def sftp_account(self) -> dict[str, str]:
        """queryUserInfo: the private space's SFTP account (for the rclone baseline)."""
        body = await self._post(
            "/api/file/user/queryUserInfo", json={"userId": self.user_id, "svcType": "sftp", "isPublic": False}
        )
        return dict(body["result"])

    async def ensure_folder(self, folder: str) -> None:
        """Create `folder` and its parents once (concurrent callers share the calls)."""
        parent = ""
        for name in [p for p in folder.split("/") if p]:
            path = f"{parent}/{name}"
            pending = self._folders.get(path)
            if pending is None:
                pending = self._folders[path] = asyncio.ensure_future(self._add_folder(parent or "/", name))
            await pending
            parent = path

    async def _add_folder(self, parent: str, name: str) -> None:
        body = {"folderName": name, "parentPath": parent, "userId": self.user_id, "publicUserId": self.user_id}
        await self._post(BASE + "addFolder", json=body)

    async def upload_small(self, path: Path, folder: str, name: str) -> None:
        data = await asyncio.to_thread(path.read_bytes)
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        form.add_field("currentPath", folder)
        await self._post(BASE + "uploadFolder", data=form)

    async def upload_chunked(
        self, path: Path, folder: str, name: str, size: int, chunk_size: int, parallel: int, summary: Summary
    ) -> None:
        t0 = time.perf_counter()
        md5 = await asyncio.to_thread(file_md5, path)
        t1 = time.perf_counter()
        total = -(-size // chunk_size)
        common = {"userId": self.user_id, "isPublic": False, "currentPath": folder, "fileName": name, "fileMd5": md5}
        check = await self._post(BASE + "checkFileExist", json={**common, "fileSize": size})
        result = check.get("result") or {}
        if result.get("fileStatus") != 1:
            held = {int(c["index"]): c["md5"] for c in result.get("chunks") or []}
            limit = asyncio.Semaphore(parallel)

            async def chunk(index: int) -> None:
                async with limit:
                    offset = index * chunk_size
                    data, chunk_md5 = await asyncio.to_thread(read_chunk, path, offset, min(chunk_size, size - offset))
                    if held.get(index) == chunk_md5:
                        return
                    form = aiohttp.FormData(quote_fields=False)
                    for key, value in (("userId", self.user_id), ("isPublic", "false"), ("currentPath", folder),
                                       ("fileName", name), ("fileMd5", md5), ("chunkSize", str(len(data))),
                                       ("chunkMd5", chunk_md5), ("index", str(index)), ("total", str(total))):
                        form.add_field(key, value)
                    form.add_field("chunk", data, filename=name, content_type="application/octet-stream")
                    await self._post(BASE + "uploadFile", data=form)

            await asyncio.gather(*(chunk(i) for i in range(total)))
        t2 = time.perf_counter()
        await self._post(BASE + "mergeFile", json={**common, "fileSize": size, "total": total})
        t3 = time.perf_counter()
        summary.hash_seconds += t1 - t0
        summary.upload_seconds += t2 - t1
        summary.merge_seconds += t3 - t2


def walk(source: Path) -> list[tuple[Path, str, int]]:
    """(path, folder relative to the source, size) of every regular file below `source`."""
    if source.is_file():
        return [(source, "", source.stat().st_size)]
    found = []
    for dirpath, _, names in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        for name in names:
            p = Path(dirpath, name)
            found.append((p, "" if rel == "." else rel, p.stat().st_size))
    return found


async def sync(
    url: str, source: Path, remote_folder: str, *, username: str, password: str, key: str,
    transfers: int = 4, chunk_size: int = 8 * MiB, chunks_per_file: int = 4, small_threshold: int = MiB,
) -> Summary:
    """Upload every file under `source` into the private space below `remote_folder`."""
    started = time.perf_counter()
    summary = Summary()
    connector = aiohttp.TCPConnector(limit=max(16, transfers * chunks_per_file * 2))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = MinimalClient(url, session)
        await client.login(username, password, key)
        files = await asyncio.to_thread(walk, source)
        queue: asyncio.Queue[tuple[Path, str, int]] = asyncio.Queue()
        for item in files:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                path, rel, size = queue.get_nowait()
                folder = "/" + "/".join(p for p in (remote_folder.strip("/"), rel) if p)
                await client.ensure_folder(folder)
                if size < small_threshold:
                    await client.upload_small(path, folder, path.name)
                else:
                    await client.upload_chunked(path, folder, path.name, size, chunk_size, chunks_per_file, summary)
                summary.files += 1
                summary.bytes += size

        await asyncio.gather(*(worker() for _ in range(transfers)))
    summary.seconds = time.perf_counter() - started
    return summary


async def query_sftp_account(url: str, *, username: str, password: str, key: str) -> dict[str, str]:
    """The private space's SFTP account, as queryUserInfo hands it out."""
    async with aiohttp.ClientSession() as session:
        client = MinimalClient(url, session)
        await client.login(username, password, key)
        return await client.sftp_account()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.minimal_client", description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("folder", help="target folder in the private space, e.g. /bench/run1")
    p.add_argument("--url", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default=os.environ.get("MINIMAL_PASSWORD", "Test@123"))
    p.add_argument("--key", default="0123456789abcdef")
    p.add_argument("--transfers", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=8 * MiB)
    p.add_argument("--chunks-per-file", type=int, default=4)
    p.add_argument("--small-threshold", type=int, default=MiB)
    a = p.parse_args(argv)
    summary = asyncio.run(sync(
        a.url, a.source, a.folder, username=a.user, password=a.password, key=a.key, transfers=a.transfers,
        chunk_size=a.chunk_size, chunks_per_file=a.chunks_per_file, small_threshold=a.small_threshold,
    ))
    print(json.dumps({"event": "summary", **asdict(summary)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
