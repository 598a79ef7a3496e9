"""Login, tokens and the two 401 forms (protocol.md §1, §2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import aiohttp
import pytest

from emulator.testing import EmulatorThread

from .conftest import ALICE, BOB, Api, F, encrypt, jwt_payload

LOGIN_FAILED = "用户不存在/密码错误"


async def test_login_issues_hs256_token_with_house_claims(emu: EmulatorThread, api: Api) -> None:
    header_b64, payload_b64, signature_b64 = api.token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    assert header == {"alg": "HS256", "typ": "JWT"}
    payload = jwt_payload(api.token)
    assert payload["userId"] == "5"  # a string in the token
    assert payload["userName"] == "alice" and payload["tenantId"] == 101 and payload["iss"] == "ruoyi"
    assert isinstance(payload["exp"], int) and isinstance(payload["iat"], int)
    assert payload["exp"] - payload["iat"] == 3600
    assert abs(payload["iat"] - time.time()) < 60
    expected = hmac.new(
        emu.config.jwt_secret, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256
    ).digest()
    assert base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4)) == expected


async def test_login_answer_is_ruoyi_envelope(emu: EmulatorThread, session: aiohttp.ClientSession) -> None:
    status, body = await Api(session, emu.url).login()
    assert status == 200
    assert set(body) == {"msg", "code", "token"} and body["msg"] == "操作成功" and body["code"] == 200


@pytest.mark.parametrize(
    "user, cipher",
    [
        (("alice", "wrong"), None),
        (("nobody", "Test@123"), None),
        (ALICE, encrypt("Test@123", "fedcba9876543210")),  # another deployment's key
        (ALICE, encrypt("Test@123").lower()),  # only uppercase hex is the house form
        (ALICE, "Test@123"),  # clear text
        (ALICE, encrypt("Test@123")[:-2]),  # truncated
        (BOB, encrypt("Test@123")),  # alice's password for bob
    ],
)
async def test_login_refused(
    emu: EmulatorThread, session: aiohttp.ClientSession, user: tuple[str, str], cipher: str | None
) -> None:
    status, body = await Api(session, emu.url).login(user, cipher=cipher)
    assert status == 200 and body == {"code": 500, "msg": LOGIN_FAILED}


async def test_token_lifetime_from_config(tmp_path, session: aiohttp.ClientSession) -> None:
    with EmulatorThread(tmp_path / "p", token_lifetime=120) as emu:
        caller = Api(session, emu.url)
        await caller.login(BOB)
        payload = jwt_payload(caller.token)
        assert payload["exp"] - payload["iat"] == 120
        assert payload["userId"] == "6" and payload["userName"] == "bob"


async def test_get_info(api: Api) -> None:
    status, body = await api.get("/prod-api/getInfo")
    assert status == 200 and body["code"] == 200 and body["msg"] == "操作成功"
    user = body["user"]
    assert user["userId"] == 5 and user["userName"] == "alice" and user["tenantId"] == 101
    assert isinstance(body["roles"], list) and isinstance(body["permissions"], list)
    assert "password" not in user


# One business call per route family.
FAMILY_CALLS = [
    ("GET", "/prod-api/getInfo", None, {"code": 401}),
    ("POST", F + "getFolderInfo", {"path": "", "requestBegin": 1, "requestFileAccount": 10, "userId": "5"},
     {"success": False, "errorCode": 401, "result": None}),
    ("POST", "/api/market/datahub/model/getModelList",
     {"current": 1, "size": 10, "author": "", "scope": 2, "taskTags": [], "title": ""},
     {"success": False, "code": 401, "data": None}),
]  # fmt: skip


async def _call(api: Api, method: str, path: str, body: object) -> tuple[int, dict]:
    return await (api.get(path) if method == "GET" else api.post(path, body))


@pytest.mark.parametrize("method, path, body, expected", FAMILY_CALLS)
@pytest.mark.parametrize("form", ["http", "body"])
async def test_expired_token_answers_401_in_both_forms(
    emu: EmulatorThread, api: Api, form: str, method: str, path: str, body: object, expected: dict
) -> None:
    emu.faults.auth_error_form = form
    emu.faults.token_lifetime = 0  # the next token is born expired
    await api.login()
    status, answer = await _call(api, method, path, body)
    assert status == (401 if form == "http" else 200)
    assert {k: answer[k] for k in expected} == expected
    assert "认证失败" in (answer.get("msg") or answer.get("message"))
    emu.faults.token_lifetime = None
    await api.login()
    status, answer = await _call(api, method, path, body)
    assert status == 200 and 401 not in (answer.get("code"), answer.get("errorCode"))


async def test_random_form_exercises_both(emu: EmulatorThread, api: Api) -> None:
    emu.faults.seed = 11
    emu.expire_tokens()  # every token issued so far is now invalid
    statuses = set()
    for _ in range(16):
        status, answer = await api.get("/prod-api/getInfo")
        assert answer["code"] == 401
        statuses.add(status)
    assert statuses == {200, 401}


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer abc.def.ghi", "Token {token}", "{token}"])
async def test_missing_or_malformed_authorization(emu: EmulatorThread, api: Api, header: str | None) -> None:
    emu.faults.auth_error_form = "http"
    headers = {} if header is None else {"Authorization": header.format(token=api.token)}
    async with api.session.get(emu.url + "/prod-api/getInfo", headers=headers) as r:
        assert r.status == 401
        assert (await r.json())["code"] == 401


async def test_tampered_token_refused(emu: EmulatorThread, api: Api) -> None:
    emu.faults.auth_error_form = "http"
    head, payload, sig = api.token.split(".")
    claims = jwt_payload(api.token) | {"userId": "6", "userName": "bob"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    api.token = f"{head}.{forged}.{sig}"
    status, _ = await api.get("/prod-api/getInfo")
    assert status == 401


async def test_login_body_strictness(emu: EmulatorThread, session: aiohttp.ClientSession) -> None:
    url = emu.url + "/prod-api/login"
    async with session.post(url, data={"username": "alice", "password": encrypt("Test@123")}) as r:
        assert r.status == 415 and (await r.json())["code"] == 415
    async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json())["code"] == 400
    async with session.post(url, json={"username": "alice"}) as r:
        body = await r.json()
        assert r.status == 200 and body["code"] == 400 and "password" in body["msg"]
