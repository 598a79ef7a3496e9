"""Files written over the emulator's SFTP service are held content for checkFileExist and mergeFile.

Talks to the SFTP server with a plain asyncssh client and to the HTTP API with the raw caller:
never through the hubsync client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncssh
import pytest

from emulator.testing import EmulatorThread

from .conftest import FQ, Api, md5, ok


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path / "platform", sftp=True) as server:
        yield server


async def _put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


async def _status(api: Api, name: str, data: bytes, current: str = "") -> int:
    return int(ok(await api.check(name, data, current))["fileStatus"])


async def test_written_then_renamed_file_is_held(emu: EmulatorThread, api: Api, sftp: asyncssh.SFTPClient) -> None:
    data = os.urandom(300_000)
    assert await _status(api, "f.bin", data, "/d") == 2
    await sftp.mkdir("d")
    await _put(sftp, "d/.f.bin.part", data)
    await sftp.posix_rename("d/.f.bin.part", "d/f.bin")
    assert await _status(api, "f.bin", data, "/d") == 1
    assert await _status(api, "f.bin", data[:-1] + b"\0", "/d") == 2  # other content, same size
    # Held for real: an instant merge elsewhere places the same bytes without any chunk.
    ok(await api.merge("copy.bin", data, total=1))
    assert emu.private_path("copy.bin").read_bytes() == data
    assert not list((emu.root / "chunks").rglob("*"))


async def test_rewritten_file_holds_only_its_new_content(api: Api, sftp: asyncssh.SFTPClient) -> None:
    old, new = os.urandom(200_000), os.urandom(200_000)
    await _put(sftp, "g.bin", old)
    assert await _status(api, "g.bin", old) == 1
    async with sftp.open("g.bin", "r+b") as f:  # in place, same size, no new handle on a new inode
        await f.write(new, 0)
    assert await _status(api, "g.bin", old) == 2
    assert await _status(api, "g.bin", new) == 1


async def test_a_partial_write_is_indexed_as_what_it_holds(emu: EmulatorThread, api: Api,
                                                           sftp: asyncssh.SFTPClient) -> None:
    whole = os.urandom(500_000)
    await _put(sftp, "h.bin", whole[:100_000])
    assert await _status(api, "h.bin", whole) == 2
    async with sftp.open("h.bin", "r+b") as f:  # a resumed write appends the rest
        await f.write(whole[100_000:], 100_000)
    assert md5(emu.private_path("h.bin").read_bytes()) == md5(whole)
    assert await _status(api, "h.bin", whole) == 1


async def test_empty_files_are_not_indexed(emu: EmulatorThread, api: Api, sftp: asyncssh.SFTPClient) -> None:
    await _put(sftp, "empty.bin", b"")
    assert emu.private_path("empty.bin").stat().st_size == 0
    assert not [p for p in (emu.root / "objects").iterdir() if not p.name.endswith(".meta")]


async def test_the_public_account_indexes_too(emu: EmulatorThread, api: Api,
                                              session: aiohttp.ClientSession) -> None:
    account = ok(await api.post(FQ, {"userId": api.user_id, "svcType": "sftp", "isPublic": True}))
    data = os.urandom(70_000)
    async with asyncssh.connect(
        "127.0.0.1", int(account["port"]), username=account["username"], password=account["password"],
        known_hosts=None, client_keys=None, agent_path=None, config=None,
    ) as conn, conn.start_sftp_client() as client:
        await _put(client, "p.bin", data)
    assert emu.public_path("p.bin").read_bytes() == data
    assert int(ok(await api.check("p.bin", data, public=True))["fileStatus"]) == 1
