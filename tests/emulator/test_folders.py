"""Folders, listings, simple uploads, deletes and the strictness rules of protocol.md §6."""

from __future__ import annotations

import re

import aiohttp
import pytest

from emulator.testing import EmulatorThread

from .conftest import BOB, Api, F, md5, ok, raw_multipart, refused, snapshot


async def test_listing_pages_by_item_index(emu: EmulatorThread, api: Api) -> None:
    for name in ["d3", "d1", "d2"]:
        ok(await api.add_folder(name))
    for name in ["b.txt", "a.txt", "c.txt", "Z.txt"]:
        ok(await api.simple_upload(name, name.encode() * 10))
    collected = []
    for begin in (1, 3, 5, 7):  # item index, not page number: three pages of two, then an empty one
        page = ok(await api.list("", begin=begin, count=2))
        assert len(page) == (2 if begin < 7 else 1)
        collected += page
    assert ok(await api.list("", begin=8, count=2)) == []
    assert [e["fileName"] for e in collected] == ["d1", "d2", "d3", "Z.txt", "a.txt", "b.txt", "c.txt"]
    as_strings = ok(await api.list("/", begin="3", count="2"))  # strings accepted for both
    assert [e["fileName"] for e in as_strings] == ["d3", "Z.txt"]
    folder, file = collected[0], collected[4]
    assert folder["isDirectory"] == "1" and folder["fileSize"] == "4.00KB" and folder["fileSizeBytes"] == 4096
    assert file["isDirectory"] == "0" and file["fileSizeBytes"] == 50 and file["fileSize"] == "50.00B"
    assert file["filePath"] == "/a.txt" and file["parentPath"] == "/"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", file["updateTime"])
    assert isinstance(file["lastModifyTime"], int) and file["lastModifyTime"] > 1_600_000_000_000


async def test_nested_folders_and_listing_fields(api: Api) -> None:
    ok(await api.add_folder("a"))
    ok(await api.add_folder("b", "a"))
    ok(await api.simple_upload("f.bin", b"x" * 4096, "/a//b/"))
    [entry] = ok(await api.list("a/b/"))
    assert entry["filePath"] == "/a/b/f.bin" and entry["parentPath"] == "/a/b"
    assert entry["fileSize"] == "4.00KB"


async def test_folder_rules(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("x"))
    assert refused(await api.add_folder("x")) == "文件夹已存在"
    refused(await api.add_folder("y", "missing"))
    refused(await api.list("missing"))
    ok(await api.simple_upload("file", b"1"))
    refused(await api.add_folder("file"))  # a file holds the name
    refused(await api.list("file"))  # not a folder
    assert emu.private_path("x").is_dir() and not emu.private_path("missing").exists()


async def test_get_folder_info_user_id_rules(api: Api) -> None:
    body = {"fileName": "", "path": "", "requestBegin": 1, "requestFileAccount": 10}
    assert "userId" in refused(await api.post(F + "getFolderInfo", body))  # the key must be present
    refused(await api.post(F + "getFolderInfo", body | {"userId": "6"}), 403)
    refused(await api.post(F + "getFolderInfo", body | {"userId": 5, "requestBegin": 0}))
    refused(await api.post(F + "getFolderInfo", body | {"userId": 5, "requestBegin": 1.0}))
    assert ok(await api.post(F + "getFolderInfo", body | {"userId": 5})) == []


async def test_public_space_is_shared_by_the_tenant(emu: EmulatorThread, api: Api, session) -> None:
    ok(await api.add_folder("shared", public=True))
    ok(await api.simple_upload("p.txt", b"public", "shared", public=True))
    bob = Api(session, emu.url)
    await bob.login(BOB)
    assert await bob.names("shared", public=True) == ["p.txt"]
    assert await bob.names("") == []  # bob's private space is his own
    assert emu.public_path("shared/p.txt").read_bytes() == b"public"
    assert await api.names("") == []


async def test_public_user_id_required_everywhere(emu: EmulatorThread, api: Api) -> None:
    before = snapshot(emu.root)
    for path in ("addFolder", "addPublicFolder"):
        body = {"folderName": "n", "parentPath": "", "userId": "5"}
        assert "publicUserId" in refused(await api.post(F + path, body))
    ok(await api.add_folder("d"))
    for path in ("deleteFileOrDictory", "deletePublicFileOrDictory"):
        assert "publicUserId" in refused(await api.post(F + path, {"sPath": ["d"], "userId": "5"}))
    form = aiohttp.FormData()
    form.add_field("currentPath", "")
    form.add_field("file", b"x", filename="f")
    assert "publicUserId" in refused(await api.form(F + "uploadPublicFolder", form))
    assert snapshot(emu.root) - before == {"spaces/private/5/d"}


async def test_wrong_user_id_refused_and_nothing_written(emu: EmulatorThread, api: Api) -> None:
    before = snapshot(emu.root)
    for user_id, public_user_id in (("6", "5"), ("5", "6"), (6, 6)):
        body = {"folderName": "n", "parentPath": "", "userId": user_id, "publicUserId": public_user_id}
        refused(await api.post(F + "addFolder", body), 403)
    api.user_id = "6"
    refused(await api.simple_upload("f", b"x", public=True), 403)
    refused(await api.check("f", b"x"), 403)
    refused(await api.chunk("f", md5(b"x"), b"x", 0, 1), 403)
    refused(await api.merge("f", b"x", 1), 403)
    assert snapshot(emu.root) == before


async def test_chinese_filename_sent_raw_is_stored_literally(emu: EmulatorThread, api: Api) -> None:
    ok(await api.simple_upload("图 片%41.jpg", b"img"))
    assert emu.private_path("图 片%41.jpg").read_bytes() == b"img"
    # A client that lets aiohttp percent-encode the filename gets the encoded name stored.
    ok(await api.simple_upload("图.jpg", b"img", quote=True))
    assert emu.private_path("%E5%9B%BE.jpg").exists() and not emu.private_path("图.jpg").exists()
    entries = emu.log_entries()
    assert entries[-2]["fileName"] == "图 片%41.jpg" and entries[-2]["bytes"] == 3


async def test_simple_upload_rules(emu: EmulatorThread, api: Api) -> None:
    refused(await api.simple_upload("f", b"x", "missing"))
    ok(await api.simple_upload("f", b"old"))
    ok(await api.simple_upload("f", b"new content"))  # replaces
    assert emu.private_path("f").read_bytes() == b"new content"
    ok(await api.simple_upload("empty", b""))  # zero-byte files take this route
    assert emu.private_path("empty").read_bytes() == b""
    ok(await api.add_folder("d"))
    refused(await api.simple_upload("d", b"x"))  # a folder holds the name
    assert list(emu.root.joinpath("tmp").iterdir()) == []


BAD_PATHS = ["..", "../x", "a/../b", "./a", "a/.", "a\\b", "a\x00b", "a\nb", "\x7f"]


@pytest.mark.parametrize("bad", BAD_PATHS)
async def test_bad_paths_refused_and_nothing_written(emu: EmulatorThread, api: Api, bad: str) -> None:
    ok(await api.add_folder("a"))
    ok(await api.simple_upload("keep", b"k", "a"))
    before = snapshot(emu.root)
    refused(await api.add_folder("n", bad))
    refused(await api.add_folder(bad))
    refused(await api.list(bad))
    refused(await api.simple_upload("f", b"x", bad))
    body, content_type = raw_multipart([("currentPath", b"", None), ("file", b"x", bad)])
    headers = api.headers() | {"Content-Type": content_type}
    async with api.session.post(emu.url + F + "uploadFolder", data=body, headers=headers) as r:
        assert r.status in (200, 400)  # an envelope refusal, or aiohttp's parser refusing the header
        assert (await r.json())["success"] is False
    refused(await api.check("f", b"x", bad))
    refused(await api.check(bad, b"x"))
    refused(await api.chunk("f", md5(b"x"), b"x", 0, 1, bad))
    refused(await api.merge("f", b"x", 1, bad))
    refused(await api.delete([bad]))
    refused(await api.delete(["a/keep", bad]))
    assert snapshot(emu.root) == before


async def test_names_are_single_components(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("a"))
    refused(await api.add_folder("a/b"))
    refused(await api.simple_upload("a/f", b"x"))
    refused(await api.check("a/f", b"x"))
    assert not emu.private_path("a/b").exists() and not emu.private_path("a/f").exists()


async def test_deletes_are_recursive_and_all_or_nothing(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("d"))
    ok(await api.add_folder("e", "d"))
    ok(await api.simple_upload("f", b"x", "d/e"))
    ok(await api.simple_upload("g", b"y"))
    refused(await api.delete(["d", "g", "nope"]))
    assert emu.private_path("d/e/f").exists() and emu.private_path("g").exists()
    refused(await api.delete(["/"]))
    refused(await api.delete([""]))
    refused(await api.delete([]))
    ok(await api.delete(["d", "/d/e/f", "g"]))  # overlapping paths are fine
    assert await api.names() == []
    ok(await api.add_folder("p", public=True))
    ok(await api.delete(["p"], public=True))
    assert await api.names(public=True) == []


@pytest.mark.parametrize("path", ["getFolderInfo", "addFolder", "checkFileExist", "mergeFile"])
async def test_json_endpoints_want_json(emu: EmulatorThread, api: Api, path: str) -> None:
    headers = api.headers()
    async with api.session.post(emu.url + F + path, data={"userId": "5"}, headers=headers) as r:
        assert r.status == 415
        body = await r.json()
        assert body["success"] is False and body["errorCode"] == 415
    bad = {**headers, "Content-Type": "application/json"}
    for raw in (b"{", b"[1, 2]", b"\xff\xfe{}"):
        async with api.session.post(emu.url + F + path, data=raw, headers=bad) as r:
            assert r.status == 400 and (await r.json())["success"] is False


async def test_multipart_endpoints_want_multipart(emu: EmulatorThread, api: Api) -> None:
    for path in ("uploadFile", "uploadFolder", "uploadPublicFolder"):
        status, body = await api.post(F + path, {"userId": "5"})
        assert status == 415 and body["success"] is False


async def test_ill_typed_fields_name_the_field(api: Api) -> None:
    data = b"abc"
    assert "fileSize" in refused(await api.merge("f", data, 1, fileSize="3"))
    assert "isPublic" in refused(await api.merge("f", data, 1, isPublic="false"))
    assert "fileName" in refused(await api.merge("f", data, 1, fileName=None))
    assert "total" in refused(await api.merge("f", data, 2.0))  # type: ignore[arg-type]
    assert "fileMd5" in refused(await api.merge("f", data, 1, fileMd5=md5(data).upper()))
    assert "isPublic" in refused(await api.chunk("f", md5(data), data, 0, 1, isPublic="True"))
    assert "index" in refused(await api.chunk("f", md5(data), data, 1, 1))  # index must be < total
    assert "chunkSize" in refused(await api.chunk("f", md5(data), data, 0, 1, chunkSize="3.0"))
    assert "sPath" in refused(
        await api.post(F + "deleteFileOrDictory", {"sPath": "a", "userId": 5, "publicUserId": 5})
    )


async def test_sftp_accounts(emu: EmulatorThread, api: Api, session, tmp_path) -> None:
    query = {"userId": "5", "svcType": "sftp", "isPublic": False}
    account = ok(await api.post("/api/file/user/queryUserInfo", query))
    assert account["username"] == "alice" and account["protocol"] == "sftp"
    assert account["address"] == "" and account["port"] == "2222" and len(account["password"]) >= 8
    assert ok(await api.post("/api/file/user/queryUserInfo", query)) == account  # stable
    public = ok(await api.post("/api/file/user/queryUserInfo", query | {"isPublic": True}))
    assert public["username"] != "alice" and public["password"] != account["password"]
    bob = Api(session, emu.url)
    await bob.login(BOB)
    assert (
        ok(await bob.post("/api/file/user/queryUserInfo", {"userId": 6, "svcType": "sftp", "isPublic": True}))
        == public
    )
    refused(await api.post("/api/file/user/queryUserInfo", query | {"svcType": "ftp"}))
    refused(await api.post("/api/file/user/queryUserInfo", query | {"userId": "6"}), 403)
    renewed = ok(await api.post("/api/file/user/updateUserInfo", {"isPublic": False, "password": "x"}))
    assert renewed["username"] == "alice" and renewed["password"] != account["password"]
    refused(await api.post("/api/file/user/updateUserInfo", {"isPublic": False, "password": ""}))
    emu.stop()  # the password survives a restart on the same root
    with EmulatorThread(emu.root, sftp_port=2022) as again:
        caller = Api(session, again.url)
        await caller.login()
        after = ok(await caller.post("/api/file/user/queryUserInfo", query))
        assert after["password"] == renewed["password"] and after["port"] == "2022"
    assert oct(emu.root.joinpath("sftp_accounts.json").stat().st_mode & 0o777) == "0o600"


async def test_listing_name_filter(api: Api) -> None:
    for name in ("report-2024.csv", "report-2025.csv", "notes.txt"):
        ok(await api.simple_upload(name, b"x"))
    body = {"fileName": "report", "path": "", "requestBegin": 1, "requestFileAccount": 10, "userId": "5"}
    assert [e["fileName"] for e in ok(await api.post(F + "getFolderInfo", body))] == [
        "report-2024.csv",
        "report-2025.csv",
    ]
