"""The authenticated client against the emulator on loopback: login, re-login, retries, listing."""

from __future__ import annotations

import hashlib

import pytest

from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.envelope import PlatformRefused
from transfer.errors import AuthFailed, Fatal
from transfer.folders import RemoteFolders
from transfer.models import Space
from transfer.pacer import Pacer

from .clocks import FakeClock
from .conftest import ALICE, KEY


def client_for(emu: EmulatorThread, password: str = ALICE[1], key: str = KEY, sleep=None) -> PlatformClient:
    pacer = Pacer(give_up_after=60, base_delay=0.001, max_delay=0.01, clock=sleep or FakeClock())
    return PlatformClient(emu.url, username=ALICE[0], password=password, password_key=key, pacer=pacer)


async def test_login_and_user(emu: EmulatorThread) -> None:
    async with client_for(emu) as client:
        user = await client.user()
        assert (user.user_id, user.user_name, user.tenant_id) == ("5", "alice", "101")
        assert await client.token_expiry() is not None
        assert client.token_claims()["userId"] == "5"


@pytest.mark.parametrize("password,key", [("wrong-password", KEY), (ALICE[1], "fedcba9876543210")])
async def test_wrong_password_or_key_is_auth_failure(emu: EmulatorThread, password: str, key: str) -> None:
    async with client_for(emu, password=password, key=key) as client:
        with pytest.raises(AuthFailed, match="login refused"):
            await client.user()


@pytest.mark.parametrize("form", ["http", "body"])
async def test_expired_token_relogs_in_once(emu: EmulatorThread, form: str) -> None:
    emu.faults.auth_error_form = form
    async with client_for(emu) as client:
        await client.list_folder(Space.PRIVATE, "")
        assert client.tokens.logins == 1
        emu.expire_tokens()
        await client.list_folder(Space.PRIVATE, "")
        assert client.tokens.logins == 2
    refused = [e for e in emu.log_entries() if e["status"] == 401 or (e["status"] == 200 and e.get("ok") is False)]
    assert refused, "the emulator never refused the stale token"


async def test_retries_through_500s_and_resets(emu: EmulatorThread, tmp_path) -> None:
    emu.faults.seed = 3
    emu.faults.chunk_error_rate = 0.5
    emu.faults.reset_rate = 0.5
    sleep = FakeClock()
    async with client_for(emu, sleep=sleep) as client:
        await RemoteFolders(client).ensure(Space.PRIVATE, "r")
        for i in range(3):
            data = bytes([i]) * 300_000
            md5 = hashlib.md5(data).hexdigest()
            check = await client.check_file(Space.PRIVATE, "r", "f.bin", md5, len(data))
            assert not check.held
            await client.upload_chunk(Space.PRIVATE, "r", "f.bin", file_md5=md5, index=0, total=1, data=data,
                                      chunk_md5=md5)
            await client.merge(Space.PRIVATE, "r", "f.bin", file_md5=md5, size=len(data), total=1)
    assert sleep.sleeps, "no fault was injected"
    assert emu.private_path("r/f.bin").read_bytes() == data
    faults = {e.get("fault") for e in emu.log_entries()}
    assert faults & {"reset", "chunk_error"} or len(faults) > 1


async def test_no_retry_on_400(emu: EmulatorThread) -> None:
    sleep = FakeClock()
    async with client_for(emu, sleep=sleep) as client:
        with pytest.raises(PlatformRefused):
            await client.add_folder(Space.PRIVATE, "does/not/exist", "x")
    assert sleep.sleeps == []
    assert len([e for e in emu.log_entries() if e["path"].endswith("/addFolder")]) == 1


async def test_retry_after_is_honoured(emu: EmulatorThread) -> None:
    emu.faults.seed = 1
    emu.faults.busy_rate = 1.0
    emu.faults.retry_after = 9
    emu.faults.max_consecutive_errors = 2
    sleep = FakeClock()
    async with client_for(emu, sleep=sleep) as client:
        await client.list_folder(Space.PRIVATE, "")
    assert sleep.sleeps.count(9) >= 2  # each 503 waited what the platform asked


async def test_listing_pages_and_folder_creation(emu: EmulatorThread) -> None:
    async with client_for(emu) as client:
        folders = RemoteFolders(client)
        await folders.ensure(Space.PUBLIC, "deep/er/still")
        await folders.ensure(Space.PUBLIC, "deep/er/still")  # known: no second call
        for i in range(230):
            await client.add_folder(Space.PRIVATE, "", f"d{i:03}")
        names = [e.name for e in await client.list_folder(Space.PRIVATE, "")]
        assert sorted(names) == [f"d{i:03}" for i in range(230)]
        assert len(names) == 230
        assert [e.name for e in await client.list_folder(Space.PUBLIC, "deep/er")] == ["still"]
        # "already exists" is confirmed by a listing, not assumed
        await RemoteFolders(client).ensure(Space.PUBLIC, "deep/er/still")
    adds = [e for e in emu.log_entries() if e["path"].endswith("/addPublicFolder")]
    assert len(adds) == 6  # 3 new levels, then 3 refused-and-confirmed by a new run
    pages = [e for e in emu.log_entries() if e["path"].endswith("/getFolderInfo")]
    assert len(pages) >= 3


@pytest.mark.parametrize("cap", [0, 100, 150])
async def test_a_listing_asks_big_pages_and_survives_a_platform_that_caps_them(emu: EmulatorThread,
                                                                                cap: int) -> None:
    """Each getFolderInfo request lists the folder again on the platform: 1,000 rows a page make a
    folder of 1,234 files 3 requests (1,000, 234, an empty one). A platform that caps the pages at
    100 or 150 rows still gives every name (13 or 9 requests)."""
    emu.config.faults.list_page_cap = cap
    async with client_for(emu) as client:
        for i in range(1234):
            emu.private_path(f"big/f{i:04}.bin").parent.mkdir(parents=True, exist_ok=True)
            emu.private_path(f"big/f{i:04}.bin").write_bytes(b"x" * (i % 7))
        before = len(emu.log_entries())
        entries = await client.list_folder(Space.PRIVATE, "big")
        assert sorted(e.name for e in entries) == [f"f{i:04}.bin" for i in range(1234)]
        assert {e.name: e.size for e in entries}["f0013.bin"] == 13 % 7
        pages = [e for e in emu.log_entries()[before:] if e["path"].endswith("/getFolderInfo")]
        assert len(pages) == {0: 3, 100: 13, 150: 9}[cap]
        assert all(int(p["requestFileAccount"]) == 1000 for p in pages)


@pytest.mark.parametrize("cap", [0, 100])
async def test_a_listing_for_some_names_stops_once_it_has_shown_them(emu: EmulatorThread, cap: int) -> None:
    """A no-op's check and a confirmation look for names: a folder of 500 files whose page of 500
    shows them all needs no second, empty request; a name not on the first page keeps it going,
    and a platform capping pages at 100 is paged until the names are found."""
    emu.config.faults.list_page_cap = cap
    async with client_for(emu) as client:
        for i in range(500):
            emu.private_path(f"half/f{i:03}.bin").parent.mkdir(parents=True, exist_ok=True)
            emu.private_path(f"half/f{i:03}.bin").write_bytes(b"y" * (i % 5))

        async def requests(until: set[str] | None) -> tuple[int, dict[str, int]]:
            before = len(emu.log_entries())
            entries = await client.list_folder(Space.PRIVATE, "half", until)
            pages = [e for e in emu.log_entries()[before:] if e["path"].endswith("/getFolderInfo")]
            return len(pages), {e.name: e.size for e in entries}

        whole, names = await requests(None)
        assert whole == {0: 2, 100: 6}[cap] and len(names) == 500  # a full page of 500: one more asks for the rest
        found, names = await requests({"f007.bin", "f499.bin"})
        assert found == {0: 1, 100: 5}[cap] and names["f007.bin"] == 7 % 5 and names["f499.bin"] == 499 % 5
        early, names = await requests({"f042.bin"})
        assert early == 1 and names["f042.bin"] == 42 % 5  # on the first page, whatever the cap
        missing, names = await requests({"f042.bin", "gone.bin"})
        assert missing == whole and "gone.bin" not in names and len(names) == 500


async def test_emulator_refuses_traversal_and_nothing_is_written(emu: EmulatorThread) -> None:
    async with client_for(emu) as client:
        for parent, name in [("..", "x"), ("a/../..", "x"), ("", ".."), ("", "a\\b"), ("", "nul\x00")]:
            with pytest.raises(Fatal):
                await client.add_folder(Space.PRIVATE, parent, name)
    assert not any(p.name == "x" for p in emu.root.rglob("x"))


async def test_a_streamed_chunk_whose_file_changed_is_not_sent(emu: EmulatorThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transfer.errors import LocalFileChanged
    from transfer.hashing import FileSpan, md5_of_span

    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 12288)  # 3 MiB
    mib = 1 << 20
    async with client_for(emu) as client:
        good = md5_of_span(path, 0, mib)
        await client.upload_chunk(Space.PRIVATE, "", "f.bin", file_md5="0" * 32, index=0, total=3,
                                  data=FileSpan(path, 0, mib, good), chunk_md5=good)
        assert hashlib.md5(path.read_bytes()[:mib]).hexdigest() == good
        emu.clear_log()
        # The span's md5 no longer matches what is on disk: as if the file changed after hashing.
        with pytest.raises(LocalFileChanged):
            await client.upload_chunk(Space.PRIVATE, "", "f.bin", file_md5="0" * 32, index=1, total=3,
                                      data=FileSpan(path, mib, mib, "f" * 32), chunk_md5="f" * 32)
    # not retried as a network error, and the platform stored nothing for it
    entries = [e for e in emu.log_entries() if e["path"].endswith("/uploadFile")]
    assert len(entries) <= 1 and not any(e["ok"] for e in entries)


async def test_an_unverified_span_goes_by_sendfile_and_arrives_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A chunk the platform checks itself goes from the page cache to the socket, as a part
    of a multipart form like uploadFile's, between the other parts' bytes."""
    import aiohttp
    from aiohttp import web

    from transfer.api import SpanPayload
    from transfer.hashing import FileSpan

    data = bytes(range(256)) * 40_000 + b"tail"  # ~10 MiB: several socket buffers' worth
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    received: dict[str, bytes] = {}

    async def upload(request: web.Request) -> web.Response:
        async for part in await request.multipart():
            received[part.name or ""] = await part.read()  # type: ignore[union-attr]
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/up", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        offset, length = 1000, len(data) - 2000
        payload = SpanPayload(FileSpan(path, offset, length, "", verify=False))
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("before", "1")
        form.add_field("chunk", payload, filename="f.bin", content_type="application/octet-stream")
        form.add_field("after", "2")
        async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}/up", data=form) as r:
            assert r.status == 200
    finally:
        await runner.cleanup()
    assert payload.zero_copy
    assert received == {"before": b"1", "chunk": data[offset : offset + length], "after": b"2"}


async def test_an_unverified_span_of_a_file_that_got_shorter_is_a_local_change(
    emu: EmulatorThread, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    from transfer.errors import LocalFileChanged
    from transfer.hashing import FileSpan

    path = tmp_path / "f.bin"
    path.write_bytes(bytes(3 << 20))
    mib = 1 << 20
    async with client_for(emu) as client:
        await client.user()
        emu.clear_log()
        with pytest.raises(LocalFileChanged):  # chunk 2 claims 2 MiB: the file holds 1 MiB from there
            await client.upload_chunk(Space.PRIVATE, "", "f.bin", file_md5="0" * 32, index=1, total=2,
                                      data=FileSpan(path, 2 * mib, 2 * mib, "f" * 32, verify=False),
                                      chunk_md5="f" * 32)
    entries = [e for e in emu.log_entries() if e["path"].endswith("/uploadFile")]
    assert not any(e["ok"] for e in entries)
