"""The request log, the background-thread harness and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from emulator.cli import _user, _users
from emulator.testing import EmulatorThread

from .conftest import ALICE, Api, encrypt, md5, ok, split

REPO = Path(__file__).resolve().parents[2]
DATA = bytes(range(256)) * 9


async def test_request_log_fields(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("d"))
    ok(await api.simple_upload("s.txt", b"12345", "d"))
    ok(await api.check("f", DATA, "d"))
    pieces = split(DATA, 1024)
    for i, p in enumerate(pieces):
        ok(await api.chunk("f", md5(DATA), p, i, len(pieces), "d"))
    ok(await api.merge("f", DATA, len(pieces), "d"))
    log = emu.log_entries()
    login, add, simple, check, *chunks, merge = log
    for entry in log:
        assert {"ts", "method", "path", "status", "ok", "user_id", "fault"} <= set(entry)
        assert entry["ok"] is True and entry["status"] == 200 and entry["fault"] is None
    assert login["path"] == "/prod-api/login" and login["user_id"] is None and login["username"] == "alice"
    assert add["user_id"] == 5 and add["method"] == "POST"
    assert {k: simple[k] for k in ("fileName", "currentPath", "bytes")} == {
        "fileName": "s.txt",
        "currentPath": "d",
        "bytes": 5,
    }
    assert check["fileStatus"] == 2 and check["fileSize"] == len(DATA) and check["fileMd5"] == md5(DATA)
    assert [c["index"] for c in chunks] == [0, 1, 2]
    assert chunks[2] | {"ts": 0} == chunks[2] | {
        "ts": 0, "fileName": "f", "currentPath": "d", "fileMd5": md5(DATA), "index": 2, "total": 3,
        "isPublic": False, "chunk_bytes": len(pieces[2]),
    }  # fmt: skip
    assert {k: merge[k] for k in ("fileName", "currentPath", "fileMd5", "fileSize")} == {
        "fileName": "f",
        "currentPath": "d",
        "fileMd5": md5(DATA),
        "fileSize": len(DATA),
    }
    emu.clear_log()
    assert emu.log_entries() == []
    ok(await api.list())
    assert len(emu.log_entries()) == 1


async def test_request_log_holds_no_secret(
    emu: EmulatorThread, api: Api, session: aiohttp.ClientSession
) -> None:
    failing = Api(session, emu.url)
    await failing.login(("alice", "Wrong-Pass-1"))
    ok(await api.list())
    account = ok(await api.post("/api/file/user/queryUserInfo", {"userId": "5", "svcType": "sftp"}))
    renewed = ok(
        await api.post("/api/file/user/updateUserInfo", {"isPublic": False, "password": "reset-me-flag"})
    )
    emu.faults.auth_error_form = "body"
    emu.expire_tokens()
    await api.list()
    text = emu.config.log_path.read_text(encoding="utf-8")
    assert text.count("\n") == 6
    for secret in (ALICE[1], encrypt(ALICE[1]), "Wrong-Pass-1", encrypt("Wrong-Pass-1"), api.token,
                   api.token.split(".")[2], account["password"], renewed["password"], "reset-me-flag"):  # fmt: skip
        assert secret not in text
    assert "Bearer" not in text and "Authorization" not in text


async def test_thread_stops_cleanly(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    emu = EmulatorThread(tmp_path / "p").start()
    assert emu.url == f"http://127.0.0.1:{emu.port}" and emu.root == tmp_path / "p"
    caller = Api(session, emu.url)
    await caller.login()
    threads_before = set(threading.enumerate())
    server_thread = emu._thread
    assert server_thread is not None and server_thread in threads_before
    # A request still in flight when the emulator stops is cancelled, not waited for.
    emu.faults.latency = 30
    pending = asyncio.ensure_future(caller.list())
    deadline = time.monotonic() + 5
    while _requests_started(emu) < 2:  # login, then the pending listing
        assert time.monotonic() < deadline, "the listing never reached the server"
        await asyncio.sleep(0.01)
    started = time.monotonic()
    emu.stop()  # blocks this loop on purpose: the server runs in its own thread
    assert time.monotonic() - started < 5
    with pytest.raises(aiohttp.ClientError):
        await pending
    assert not server_thread.is_alive()
    assert set(threading.enumerate()) == threads_before - {server_thread}
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", emu.port)) != 0  # the port is closed
    assert emu.log_entries()[-1]["status"] is None  # the cancelled request, logged without answer
    emu.stop()  # idempotent


def _requests_started(emu: EmulatorThread) -> int:
    runner = emu._runner
    return runner.server.requests_count if runner and runner.server else 0


def test_cli_user_specs() -> None:
    assert _user("carol:pa:ss") == ("carol", "pa:ss", None, None)
    assert _user("carol:secret:7") == ("carol", "secret", 7, None)
    assert _user("carol:secret:7:202") == ("carol", "secret", 7, 202)
    users = _users([_user("a:x"), _user("b:y:5"), _user("c:z")])
    assert [(u.username, u.user_id, u.tenant_id) for u in users] == [
        ("a", 6, 101),
        ("b", 5, 101),
        ("c", 7, 101),
    ]


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "emulator", "--port", "0", "--root", str(tmp_path / "root"),
            "--user", "carol:Secret:9:7", "--seed", "1"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_line(proc, deadline=time.monotonic() + 20)
        assert line.startswith("hubsync emulator listening on http://127.0.0.1:") and "root=" in line
        url = line.split()[4]
        token = _post(url + "/prod-api/login", {"username": "carol", "password": encrypt("Secret")})["token"]
        account = _post(url + "/api/file/user/queryUserInfo", {"userId": 9, "svcType": "sftp"}, token)
        assert account["result"]["port"] == "2222" and account["result"]["username"] == "carol"
        assert _post(url + "/__emulator__/faults", {"latency": 0.01})["latency"] == 0.01
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert (tmp_path / "root" / "requests.jsonl").read_text().count("\n") == 2


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            raise AssertionError("the emulator printed nothing in time")
    return proc.stdout.readline().strip()


def _post(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


async def test_listing_is_logged_under_its_route(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("d"))
    ok(await api.list("d"))
    entry = emu.log_entries()[-1]
    assert entry["path"] == "/api/file/file/getFolderInfo" and entry["folder"] == "/d"
