"""Every fault switch, observed on the wire and in the request log."""

from __future__ import annotations

import time

import aiohttp
import pytest

from emulator.faults import Faults
from emulator.testing import EmulatorThread

from .conftest import Api, F, jwt_payload, md5, ok, refused, split

DATA = bytes(range(256)) * 10
CHUNK = 1024


async def _check_statuses(api: Api, n: int) -> list[int]:
    return [(await api.check("f", DATA))[0] for _ in range(n)]


async def test_chunk_errors_are_seeded_and_bounded(emu: EmulatorThread, api: Api) -> None:
    emu.faults.chunk_error_rate = 0.5
    emu.faults.seed = 42
    first = await _check_statuses(api, 30)
    emu.faults.seed = 42  # re-seeding replays the same decisions
    assert await _check_statuses(api, 30) == first
    assert {200, 500} == set(first)
    status, body = await api.check("f", DATA)
    while status != 500:
        status, body = await api.check("f", DATA)
    assert body == {"success": False, "errorCode": 500, "message": body["message"], "result": None}
    assert [e["fault"] for e in emu.log_entries() if e["status"] == 500] == ["chunk_error"] * (
        first.count(500) * 2 + 1
    )
    ok(await api.list())  # only chunk-protocol calls and simple uploads are affected


async def test_max_consecutive_errors(emu: EmulatorThread, api: Api) -> None:
    emu.faults.chunk_error_rate = 1.0
    assert await _check_statuses(api, 8) == [500, 500, 500, 200, 500, 500, 500, 200]
    emu.faults.max_consecutive_errors = 1
    assert await _check_statuses(api, 4) == [500, 200, 500, 200]


async def test_chunk_errors_hit_uploads_and_merges(emu: EmulatorThread, api: Api) -> None:
    emu.faults.chunk_error_rate = 1.0
    emu.faults.max_consecutive_errors = 100
    assert (await api.chunk("f", md5(DATA), DATA[:CHUNK], 0, 3))[0] == 500
    assert (await api.merge("f", DATA, 3))[0] == 500
    assert (await api.simple_upload("s", b"x"))[0] == 500
    assert (await api.simple_upload("s", b"x", public=True))[0] == 500
    emu.faults.chunk_error_rate = 0.0
    assert ok(await api.check("f", DATA))["chunks"] == []  # the refused chunk was not kept
    assert not emu.private_path("s").exists()


async def test_reset_aborts_upload_without_answer(emu: EmulatorThread, api: Api) -> None:
    emu.faults.reset_rate = 1.0
    emu.faults.seed = 3
    with pytest.raises(aiohttp.ClientConnectionError):  # ClientOSError or ServerDisconnectedError
        await api.chunk("f", md5(DATA), DATA[:CHUNK], 0, 3)
    entry = emu.log_entries()[-1]
    assert entry["fault"] == "reset" and entry["status"] is None and entry["ok"] is False
    emu.faults.reset_rate = 0.0
    assert ok(await api.check("f", DATA))["chunks"] == []
    ok(await api.chunk("f", md5(DATA), DATA[:CHUNK], 0, 3))  # the client can carry on
    assert list((emu.root / "tmp").iterdir()) == []


async def test_reset_with_large_chunk(emu: EmulatorThread, api: Api) -> None:
    emu.faults.reset_rate = 1.0
    data = bytes(4 * 1024 * 1024)
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.chunk("big", md5(data), data, 0, 1)


@pytest.mark.parametrize("busy_status", [503, 429])
async def test_busy_with_retry_after(emu: EmulatorThread, api: Api, busy_status: int) -> None:
    emu.faults.busy_rate = 1.0
    emu.faults.busy_status = busy_status
    emu.faults.retry_after = 7
    async with api.session.post(emu.url + "/prod-api/login", json={}) as r:
        assert r.status == busy_status and r.headers["Retry-After"] == "7"
        assert (await r.json())["code"] == busy_status
    async with api.session.post(emu.url + F + "getFolderInfo", json={}, headers=api.headers()) as r:
        assert r.status == busy_status and r.headers["Retry-After"] == "7"
        body = await r.json()
        assert body["success"] is False and body["errorCode"] == busy_status
    assert emu.log_entries()[-1]["fault"] == "busy"


async def test_chunk_api_off(emu: EmulatorThread, api: Api) -> None:
    emu.faults.chunk_api_off = True
    assert (await api.check("f", DATA))[0] == 404
    assert (await api.chunk("f", md5(DATA), DATA[:CHUNK], 0, 3))[0] == 404
    status, body = await api.merge("f", DATA, 3)
    assert status == 404 and body["status"] == 404 and body["path"] == F + "mergeFile"
    ok(await api.simple_upload("s", b"simple still works"))
    ok(await api.list())
    assert emu.log_entries()[-3]["fault"] == "chunk_api_off"
    emu.faults.chunk_api_off = False
    ok(await api.check("f", DATA))


async def test_wrong_chunk_md5_in_check(emu: EmulatorThread, api: Api) -> None:
    pieces = split(DATA, CHUNK)
    for i, p in enumerate(pieces):
        ok(await api.chunk("f", md5(DATA), p, i, len(pieces)))
    truth = [{"index": i, "md5": md5(p)} for i, p in enumerate(pieces)]
    emu.faults.wrong_chunk_md5_rate = 1.0
    reported = ok(await api.check("f", DATA))["chunks"]
    assert [c["index"] for c in reported] == [0, 1, 2]
    assert all(r["md5"] != t["md5"] and len(r["md5"]) == 32 for r, t in zip(reported, truth, strict=True))
    assert emu.log_entries()[-1]["fault"] == "wrong_chunk_md5"
    emu.faults.wrong_chunk_md5_rate = 0.0
    assert ok(await api.check("f", DATA))["chunks"] == truth
    ok(await api.merge("f", DATA, 3))  # the stored chunks were right all along


async def test_latency(emu: EmulatorThread, api: Api) -> None:
    emu.faults.latency = 0.2
    started = time.monotonic()
    ok(await api.list())
    assert time.monotonic() - started >= 0.2


async def test_token_lifetime_override(emu: EmulatorThread, api: Api) -> None:
    emu.faults.token_lifetime = 5
    await api.login()
    claims = jwt_payload(api.token)
    assert claims["exp"] - claims["iat"] == 5


async def test_control_endpoint(emu: EmulatorThread, api: Api) -> None:
    url = emu.url + "/__emulator__/faults"
    async with api.session.post(url, json={"busy_rate": 1, "retry_after": 4, "seed": 9}) as r:
        assert r.status == 200 and (await r.json())["busy_rate"] == 1.0
    assert emu.faults.busy_rate == 1.0 and emu.faults.seed == 9
    status, _ = await api.list()
    assert status == 503
    async with api.session.get(url) as r:
        current = await r.json()
        assert current["retry_after"] == 4 and current["chunk_api_off"] is False
        assert set(current) == set(Faults().public_fields())
    for bad in ({"nope": 1}, {"busy_rate": 2}, {"busy_status": 500}, {"chunk_api_off": "yes"}, [1]):
        async with api.session.post(url, json=bad) as r:
            assert r.status == 400
    async with api.session.post(url, json={"busy_rate": 0}) as r:
        assert r.status == 200
    ok(await api.list())
    async with api.session.post(emu.url + "/__emulator__/expire-tokens") as r:
        assert r.status == 200
    emu.faults.auth_error_form = "http"
    assert (await api.list())[0] == 401
    assert not any(e["path"].startswith("/__emulator__") for e in emu.log_entries())


def test_faults_validate_updates() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="latency"):
        faults.update({"latency": -1})
    with pytest.raises(ValueError, match="auth_error_form"):
        faults.update({"auth_error_form": "maybe"})
    faults.update({"token_lifetime": 1, "max_consecutive_errors": 0})
    assert faults.token_lifetime == 1.0 and faults.max_consecutive_errors == 0
    assert not faults.inject_error(1.0)  # zero allowed in a row: never


async def test_refusals_are_not_faults(emu: EmulatorThread, api: Api) -> None:
    refused(await api.add_folder("x", "missing"))
    entry = emu.log_entries()[-1]
    assert entry["fault"] is None and entry["ok"] is False and entry["status"] == 200
