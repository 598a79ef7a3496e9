"""Path checks of the emulator, HTTP and SFTP: strict by default, and the `lenient_paths` fault.

Lenient mode stands for a lax real platform (`\\` kept as a character, `..` resolved inside the
space): with it the client's own refusal is what the client tests see. Raw callers only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from emulator.testing import EmulatorThread

from .conftest import Api, F, ok, refused, snapshot


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path / "platform", sftp=True) as server:
        yield server


async def _put(sftp: asyncssh.SFTPClient, path: str | bytes, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


async def test_json_text_that_is_not_utf8_is_refused(emu: EmulatorThread, api: Api) -> None:
    before = snapshot(emu.root)
    refused(await api.add_folder("\udcff"))  # a JSON "\udcff" escape: a lone surrogate
    refused(await api.add_folder("n", "a\udcffb"))
    refused(await api.check("\udcfe.bin", b"x"))
    assert snapshot(emu.root) == before


async def test_lenient_http_keeps_backslashes_and_resolves_dots_inside_the_space(emu: EmulatorThread,
                                                                                 api: Api) -> None:
    ok(await api.add_folder("projects"))
    ok(await api.add_folder("incoming", "projects"))
    refused(await api.simple_upload("a\\b", b"x", "projects"))  # strict by default
    refused(await api.simple_upload("f", b"x", "projects/incoming/.."))
    emu.faults.lenient_paths = True
    ok(await api.simple_upload("a\\b", b"literal", "projects"))
    assert emu.private_path("projects/a\\b").read_bytes() == b"literal"
    ok(await api.simple_upload("important.db", b"overwritten", "projects/incoming/.."))
    assert emu.private_path("projects/important.db").read_bytes() == b"overwritten"
    ok(await api.simple_upload("top", b"t", "../../.."))  # never above the space's root
    assert emu.private_path("top").read_bytes() == b"t"
    refused(await api.simple_upload("f", b"x", "a\nb"))  # control characters stay refused
    refused(await api.add_folder(".."))  # a single name is still never '.' or '..'
    emu.faults.lenient_paths = False
    refused(await api.simple_upload("c\\d", b"x", "projects"))
    assert not emu.private_path("projects/c\\d").exists()


@pytest.mark.parametrize("bad", ["../x", "a/../x", "./x", "a/./x", "a\\x", "a\nx", "x\x7f", b"\xff\xfe.bin"])
async def test_sftp_refuses_what_http_refuses(emu: EmulatorThread, sftp: asyncssh.SFTPClient, bad: str | bytes) -> None:
    await sftp.mkdir("a")
    before = snapshot(emu.root)
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await _put(sftp, bad, b"x")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.mkdir(bad)
    await _put(sftp, "a/ok", b"k")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.rename("a/ok", bad)
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.stat(bad)
    assert snapshot(emu.root) == before | {"spaces/private/5/a/ok"}
    assert await sftp.listdir(".")  # the bare home folder is fine


async def test_lenient_sftp_resolves_dots_inside_the_space(emu: EmulatorThread, sftp: asyncssh.SFTPClient) -> None:
    await sftp.makedirs("projects/incoming")
    emu.faults.lenient_paths = True
    await _put(sftp, "projects/incoming/../important.db", b"overwritten")
    assert emu.private_path("projects/important.db").read_bytes() == b"overwritten"
    await _put(sftp, "projects/a\\b", b"literal")
    assert emu.private_path("projects/a\\b").read_bytes() == b"literal"
    await _put(sftp, "../../escape", b"e")
    assert emu.private_path("escape").read_bytes() == b"e"  # confined to the space
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await _put(sftp, "a\nb", b"x")
    assert not list(emu.root.glob("spaces/private/*/../escape*"))
    assert not (emu.root / "spaces" / "escape").exists() and not (emu.root / "escape").exists()


async def test_lenient_is_a_runtime_fault_switch(emu: EmulatorThread, api: Api) -> None:
    status, answer = await api.get("/__emulator__/faults")
    assert answer["lenient_paths"] is False
    async with api.session.post(emu.url + "/__emulator__/faults", json={"lenient_paths": True}) as r:
        assert r.status == 200
    assert emu.faults.lenient_paths is True
    assert F  # the file API prefix the other calls use
