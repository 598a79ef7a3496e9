"""The datahub API (protocol.md §5, §6): assets, versions, direct upload, import, listing, download."""

from __future__ import annotations

import hashlib
import random
import uuid
from pathlib import Path

import aiohttp
import pytest

from emulator.faults import Faults
from emulator.testing import EmulatorThread

from .conftest import ALICE, BOB, Api, md5, ok, split
from .datahub_caller import CATEGORY, H, HubApi, hub_ok, hub_refused, until

DATA = random.Random(7).randbytes(2500)
CHUNK = 1000  # -> chunks of 1000, 1000, 500


@pytest.fixture
def hub(api: Api) -> HubApi:
    return HubApi(api)


# -- assets ---------------------------------------------------------------------------------------


async def test_lists_page_filter_and_show_finished_versions(emu: EmulatorThread, hub: HubApi) -> None:
    alpha, (a1, a2) = emu.datahub_create_asset("model", "Alpha", versions=("v1", "v2"))
    emu.datahub_create_asset("model", "alpha-two")
    emu.datahub_create_asset("model", "beta")
    emu.datahub_create_asset("dataset", "alpha-data")
    emu.datahub_create_asset("model", "alpha-bob", user_id=6)  # private to bob
    data = hub_ok(await hub.list_assets("model", title="ALPHA"))
    assert data["total"] == 2 and [i["name"] for i in data["items"]] == ["alpha-two", "Alpha"]
    item = data["items"][1]
    assert item["id"] == alpha and item["author"] == "alice" and item["versionId"] == a2
    assert [(v["id"], v["name"]) for v in item["versions"]] == [(a2, "v2"), (a1, "v1")]
    assert item["versions"][0]["path"] == f"/private/datahub/alice/{alpha}/{a2}/"
    page = hub_ok(await hub.list_assets("model", current=2, size=2))
    assert page["total"] == 3 and [i["name"] for i in page["items"]] == ["Alpha"]
    assert hub_ok(await hub.list_assets("model", current=3, size=2)) == {"total": 3, "items": []}
    assert hub_ok(await hub.list_assets("model", title="alpha", scope=1))["total"] == 2  # not bob's
    assert hub_ok(await hub.list_assets("model", scope=3))["total"] == 0  # no favourites
    assert [i["name"] for i in hub_ok(await hub.list_assets("dataset"))["items"]] == ["alpha-data"]
    # A version being created is not listed; the latest finished one stays the asset's versionId.
    emu.faults.datahub_create_delay = 60
    hub_ok(await hub.create_version("model", alpha, "v3", a2))
    item = hub_ok(await hub.list_assets("model", title="Alpha"))["items"][1]
    assert item["versionId"] == a2 and [v["name"] for v in item["versions"]] == ["v2", "v1"]


async def test_list_fields_are_strict(hub: HubApi) -> None:
    hub_refused(await hub.list_assets("model", current="1"), 400)
    hub_refused(await hub.list_assets("model", current=0), 400)
    hub_refused(await hub.list_assets("model", scope=9), 400)
    hub_refused(await hub.list_assets("model", taskTags="3"), 400)
    body = {"current": 1, "size": 10, "scope": 2, "taskTags": []}
    async with hub.api.session.post(
        hub.api.url + H + "model/getModelList", data=str(body), headers=hub.api.headers()
    ) as r:
        assert r.status == 415


async def test_create_data_hub_picks_kind_from_resource_tag(emu: EmulatorThread, hub: HubApi) -> None:
    created = hub_ok(await hub.create_asset("gpt", ["3", "7"]))
    asset_id, version_id = created["id"], created["versionId"]
    assert len(asset_id) == 32 and len(version_id) == 32
    rows = await hub.versions("model", asset_id)
    assert [(r["id"], r["name"], r["createStatus"], r["parentId"], r["dataId"]) for r in rows] == [
        (version_id, "master", 1, "", asset_id)
    ]
    info = hub_ok(await hub.post("model/queryInfo", {"id": asset_id, "versionId": version_id}))
    assert (info["id"], info["name"], info["versionId"], info["versionName"]) == (
        asset_id,
        "gpt",
        version_id,
        "master",
    )
    assert info["creator"] == "alice" and info["isOwner"] is True
    hub_refused(
        await hub.post("dataset/queryInfo", {"id": asset_id, "versionId": version_id})
    )  # not a dataset
    # Two assets of one kind may share a name.
    again = hub_ok(await hub.create_asset("gpt", ["3"]))
    assert again["id"] != asset_id
    assert hub_ok(await hub.list_assets("model", title="gpt"))["total"] == 2
    assert hub_ok(await hub.create_asset("ds", ["1"]))["id"] in {
        i["id"] for i in hub_ok(await hub.list_assets("dataset"))["items"]
    }
    hub_ok(await hub.create_asset("al", ["2"]))
    assert hub_ok(await hub.list_assets("algo"))["total"] == 1
    for tags in ([], ["7"], ["1", "3"]):
        hub_refused(await hub.create_asset("x", tags), 400)
    hub_refused(await hub.create_asset("x", ["3"], authority=3), 400)  # shareInfo required
    image = {"authority": 1, "description": "", "name": "img", "schemaType": 0, "taskTags": ["41"]}
    image_id = hub_ok(await hub.post("image/createDataHub", image))["id"]
    assert [i["id"] for i in hub_ok(await hub.list_assets("image"))["items"]] == [image_id]
    assert emu.datahub_versions("model", asset_id) == [
        {"id": version_id, "name": "master", "createStatus": 1, "parentId": ""}
    ]


async def test_assets_of_others(emu: EmulatorThread, hub: HubApi, session: aiohttp.ClientSession) -> None:
    private, (pv,) = emu.datahub_create_asset("model", "mine")
    public = hub_ok(await hub.create_asset("shared", ["3"], authority=2))
    bob = Api(session, emu.url)
    await bob.login(BOB)
    bob_hub = HubApi(bob)
    assert [i["name"] for i in hub_ok(await bob_hub.list_assets("model", scope=1))["items"]] == ["shared"]
    hub_refused(await bob_hub.files(private, pv))
    hub_ok(await bob_hub.files(public["id"], public["versionId"]))  # may read a public asset
    hub_refused(await bob_hub.create_version("model", public["id"], "v2"))  # but not change it
    hub_refused(await bob_hub.delete_files(public["id"], public["versionId"], ["x"]))


# -- versions -----------------------------------------------------------------------------------


async def test_version_creation_is_asynchronous(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.faults.datahub_create_delay = 0.3
    assert hub_ok(await hub.create_version("model", asset, "v2", v1)) == "创建版本中，请稍等"
    rows = await hub.versions("model", asset)
    assert [(r["name"], r["createStatus"]) for r in rows] == [("v2", 0), ("v1", 1)]  # newest first
    v2 = rows[0]["id"]
    assert rows[0]["parentId"] == v1 and rows[0]["dataId"] == asset and rows[0]["deletedAt"] == 0

    async def finished() -> bool:
        return await hub.status_of("model", asset, v2) == 1

    await until(finished)
    assert emu.datahub_versions("model", asset)[1] == {
        "id": v2,
        "name": "v2",
        "createStatus": 1,
        "parentId": v1,
    }
    paged = hub_ok(
        await hub.post("model/queryVersionList", {"id": asset, "current": 2, "size": 1, "full": False})
    )
    assert paged["total"] == 2 and [r["id"] for r in paged["rows"]] == [v1]
    hub_refused(await hub.post("model/queryVersionList", {"id": asset, "current": 1, "size": 1}), 400)


async def test_calls_on_a_version_being_created_answer_500(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("dataset", "d")
    emu.faults.datahub_create_delay = 60
    hub_ok(await hub.create_version("dataset", asset, "v2"))
    v2 = (await hub.versions("dataset", asset))[0]["id"]
    ok(await hub.api.simple_upload("src.bin", b"x"))
    answers = [
        await hub.files(asset, v2),
        await hub.chunk(asset, v2, str(uuid.uuid4()), b"abc", 0, 1, 3, "f"),
        await hub.import_files(asset, v2, ["src.bin"]),
        await hub.delete_files(asset, v2, ["f"]),
        await hub.post("data/queryFileDownloadUrl", {"id": asset, "versionId": v2, "filePath": "f"}),
    ]
    for answer in answers:
        assert "创建中" in hub_refused(answer, 500)
    hub_refused(await hub.post("dataset/deleteVersion", {"id": asset, "versionName": "v2"}))
    hub_ok(await hub.files(asset, v1))  # the finished version is fine


async def test_creation_failure_switch(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("algo", "a")
    emu.faults.datahub_create_fail = True
    failed = await hub.new_version("algo", asset, "broken", v1, wait=2)
    assert [v["name"] for v in hub_ok(await hub.list_assets("algo"))["items"][0]["versions"]] == ["v1"]
    assert "失败" in hub_refused(await hub.files(asset, failed))
    emu.faults.datahub_create_fail = False
    await hub.new_version("algo", asset, "fixed", v1)


async def test_new_version_copies_its_parent(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.datahub_path("model", asset, v1, "dir/w.bin").parent.mkdir(parents=True)
    emu.datahub_path("model", asset, v1, "dir/w.bin").write_bytes(DATA)
    emu.datahub_path("model", asset, v1, "top.txt").write_bytes(b"top")
    emu.faults.datahub_create_delay = 0.05
    v2 = await hub.new_version("model", asset, "v2", v1)
    assert emu.datahub_path("model", asset, v2, "dir/w.bin").read_bytes() == DATA
    assert await hub.file_sizes(asset, v2) == {"top.txt": 3}
    emu.datahub_path("model", asset, v2, "top.txt").write_bytes(b"changed")  # a copy, not a link
    assert emu.datahub_path("model", asset, v1, "top.txt").read_bytes() == b"top"
    empty = await hub.new_version("model", asset, "empty")  # parentVersionId "" = an empty version
    assert hub_ok(await hub.files(asset, empty)) | {"relativePath": ""} == {
        "total": 0,
        "rows": [],
        "relativePath": "",
    }


async def test_version_names_modify_and_delete(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1, v2) = emu.datahub_create_asset("model", "m", versions=("v1", "v2"))
    assert "已存在" in hub_refused(await hub.create_version("model", asset, "v2", v1))
    hub_refused(await hub.create_version("model", asset, "v3", v1, category=CATEGORY["dataset"]), 400)
    hub_refused(await hub.create_version("model", asset, "v3", "0" * 32))  # no such parent
    hub_refused(await hub.create_version("model", asset, "a/b"), 400)
    image, (i1,) = emu.datahub_create_asset("image", "img")
    hub_refused(await hub.create_version("image", image, "i2", i1), 400)  # images pass parent ""
    modify = {"id": asset, "oldName": "v2", "newName": "v1", "description": "x"}
    hub_refused(await hub.put("model/modifyVersion", modify))  # the new name is taken
    assert hub_ok(await hub.put("model/modifyVersion", modify | {"newName": "final"})) == "更新版本信息成功!"
    assert (await hub.post("model/modifyVersion", modify))[0] == 405  # PUT only
    rows = await hub.versions("model", asset)
    assert [(r["id"], r["name"], r["description"]) for r in rows][0] == (v2, "final", "x")
    assert "第一个版本" in hub_refused(
        await hub.post("model/deleteVersion", {"id": asset, "versionName": "v1"})
    )
    hub_refused(await hub.post("model/deleteVersion", {"id": asset, "versionName": "v2"}))  # renamed
    emu.datahub_path("model", asset, v2, "f").write_bytes(b"1")
    assert (
        hub_ok(await hub.post("model/deleteVersion", {"id": asset, "versionName": "final"}))
        == "删除版本成功!"
    )
    assert [r["id"] for r in await hub.versions("model", asset)] == [v1]
    assert not emu.datahub_path("model", asset, v2).exists()


# -- direct upload ----------------------------------------------------------------------------


async def test_direct_upload_assembles_chunks(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("dataset", "d")
    submit_id = str(uuid.uuid4())
    pieces = split(DATA, CHUNK)
    for i in (2, 0, 0, 1):  # any order; re-sending an index before assembly is harmless
        answer = await hub.chunk(asset, v1, submit_id, pieces[i], i, 3, len(pieces[i]), "f.bin", "a/b")
        assert hub_ok(answer) == "文件上传中，请等待"
    await hub.wait_file(asset, v1, "a/b", "f.bin", len(DATA))
    target = emu.datahub_path("dataset", asset, v1, "a/b/f.bin")
    assert hashlib.md5(target.read_bytes()).hexdigest() == md5(DATA)
    listing = hub_ok(await hub.files(asset, v1, "a"))
    assert [(r["fileName"], r["fileType"], r["filePath"], r["currentPath"]) for r in listing["rows"]] == [
        ("b", 2, "a/b", "a")
    ]
    # A new upload of the same target replaces the file.
    await hub.upload(asset, v1, "f.bin", b"short", 4, "a/b")
    await hub.wait_file(asset, v1, "a/b", "f.bin", 5)
    assert target.read_bytes() == b"short"
    # Empty files go as one empty chunk.
    await hub.upload(asset, v1, "empty", b"", 8)
    await hub.wait_file(asset, v1, "", "empty", 0)
    entry = next(e for e in emu.log_entries() if e.get("submitId") == submit_id and e["index"] == 2)
    assert {k: entry[k] for k in ("submitId", "index", "total", "filePath", "currentPath", "chunk_bytes", "id", "versionId")} == {
        "submitId": submit_id, "index": 2, "total": 3, "filePath": "f.bin", "currentPath": "a/b",
        "chunk_bytes": 500, "id": asset, "versionId": v1,
    }  # fmt: skip
    assert all(e["ok"] for e in emu.log_entries() if e["path"] == H + "data/uploadFile")


async def test_inconsistent_chunks_are_refused(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    other, (o1,) = emu.datahub_create_asset("model", "other")
    sid = str(uuid.uuid4())
    p = split(DATA, CHUNK)
    hub_ok(await hub.chunk(asset, v1, sid, p[0], 0, 3, CHUNK, "f.bin"))
    for changed in (
        hub.chunk(asset, v1, sid, p[1], 1, 4, CHUNK, "f.bin"),  # total
        hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "g.bin"),  # filePath
        hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "f.bin", "sub"),  # currentPath
        hub.chunk(other, o1, sid, p[1], 1, 3, CHUNK, "f.bin"),  # id, versionId
    ):
        assert "不一致" in hub_refused(await changed, 400)
    for bad in (
        hub.chunk(asset, v1, "not-a-uuid", p[1], 1, 3, CHUNK, "f.bin"),
        hub.chunk(asset, v1, sid, p[1][:999], 1, 3, CHUNK, "f.bin"),  # shorter than its chunkSize
        hub.chunk(asset, v1, sid, p[1][:999], 1, 3, 999, "f.bin"),  # shorter than chunk 0, not the last
        hub.chunk(asset, v1, sid, p[1] + b"x", 1, 3, CHUNK + 1, "f.bin"),  # longer than chunk 0
        hub.chunk(asset, v1, sid, p[2], 2, 3, CHUNK, "f.bin"),  # the last states the nominal size
        hub.chunk(asset, v1, sid, p[2] + p[2] + b"x", 2, 3, 1001, "f.bin"),  # last longer than the others
        hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "d/f.bin"),  # filePath is one name
        hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "f.bin", "../up"),
        hub.chunk(asset, v1, sid, p[1], 3, 3, CHUNK, "f.bin"),  # index >= total
        hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "f.bin", chunkSize="1k"),
        hub.chunk(asset, v1, str(uuid.uuid4()), b"", 0, 2, 0, "f.bin"),  # empty, not a one-chunk file
    ):
        hub_refused(await bad, 400)
    assert "分片大小与chunkSize不符" in hub_refused(await hub.chunk(asset, v1, sid, p[2], 2, 3, CHUNK, "f.bin"), 400)
    hub_refused(await hub.chunk(asset, "0" * 32, str(uuid.uuid4()), p[0], 0, 1, CHUNK, "f"))  # no version
    hub_ok(await hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "f.bin"))
    hub_ok(await hub.chunk(asset, v1, sid, p[2], 2, 3, len(p[2]), "f.bin"))
    await hub.wait_file(asset, v1, "", "f.bin", len(DATA))
    # The last chunk first: a later chunk before it may not be shorter than it.
    sid = str(uuid.uuid4())
    hub_ok(await hub.chunk(asset, v1, sid, p[2], 2, 3, len(p[2]), "g.bin"))
    hub_refused(await hub.chunk(asset, v1, sid, p[1][:400], 1, 3, 400, "g.bin"), 400)
    hub_ok(await hub.chunk(asset, v1, sid, p[1], 1, 3, CHUNK, "g.bin"))


async def test_chunks_after_assembly_are_ignored(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    sid = await hub.upload(asset, v1, "f.bin", DATA, CHUNK)
    await hub.wait_file(asset, v1, "", "f.bin", len(DATA))
    hub_ok(await hub.chunk(asset, v1, sid, bytes(CHUNK), 0, 3, CHUNK, "f.bin"))
    assert emu.log_entries()[-1]["received"] == "ignored"
    # Another new upload proves any job the ignored chunk could have started has run by now.
    await hub.upload(asset, v1, "g.bin", b"g", 1)
    await hub.wait_file(asset, v1, "", "g.bin", 1)
    assert emu.datahub_path("model", asset, v1, "f.bin").read_bytes() == DATA
    assert list((emu.root / "tmp").iterdir()) == [] and list((emu.root / "datahub" / "tmp").iterdir()) == []


async def test_upload_onto_a_folder_is_refused(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.datahub_path("model", asset, v1, "d/x").mkdir(parents=True)
    emu.datahub_path("model", asset, v1, "file").write_bytes(b"f")
    hub_refused(await hub.chunk(asset, v1, str(uuid.uuid4()), b"a", 0, 1, 1, "x", "d"), 400)
    hub_refused(await hub.chunk(asset, v1, str(uuid.uuid4()), b"a", 0, 1, 1, "y", "file/sub"), 400)


# -- import ----------------------------------------------------------------------------------------


async def test_import_from_private_space(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    ok(await hub.api.add_folder("stage"))
    ok(await hub.api.simple_upload("w.bin", DATA, "stage"))
    ok(await hub.api.simple_upload("cfg.json", b"{}"))
    answer = await hub.import_files(asset, v1, ["stage/w.bin", "/cfg.json"], "/weights/")
    assert hub_ok(answer) == "文件导入中，请等待"
    await hub.wait_file(asset, v1, "weights", "w.bin", len(DATA))
    await hub.wait_file(asset, v1, "weights", "cfg.json", 2)
    assert emu.datahub_path("model", asset, v1, "weights/w.bin").read_bytes() == DATA
    assert emu.private_path("stage/w.bin").exists()  # a copy: the source stays
    entry = next(e for e in emu.log_entries() if e["path"] == H + "data/importFiles")
    assert entry["sourceFiles"] == ["stage/w.bin", "/cfg.json"] and entry["importPath"] == "/weights/"
    missing = await hub.import_files(asset, v1, ["stage/w.bin", "stage/nope"])
    assert hub_refused(missing) == "数据不存在"
    hub_refused(await hub.import_files(asset, v1, []), 400)
    hub_refused(await hub.import_files(asset, v1, ["../etc"]), 400)


async def test_import_reads_its_sources_when_the_job_runs(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    ok(await hub.api.simple_upload("gone.bin", b"soon deleted"))
    ok(await hub.api.simple_upload("kept.bin", b"kept"))
    emu.faults.datahub_import_delay = 1.0  # time enough for the delete below
    # The job copies its sources in order: once kept.bin shows, gone.bin was already tried.
    hub_ok(await hub.import_files(asset, v1, ["gone.bin", "kept.bin"]))
    ok(await hub.api.delete(["gone.bin"]))
    await hub.wait_file(asset, v1, "", "kept.bin", 4)
    assert await hub.file_sizes(asset, v1) == {"kept.bin": 4}


async def test_import_drop_switch(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    ok(await hub.api.simple_upload("a.bin", b"a"))
    ok(await hub.api.simple_upload("b.bin", b"bb"))
    emu.faults.datahub_import_drop = True
    emu.faults.datahub_import_delay = 0
    hub_ok(await hub.import_files(asset, v1, ["a.bin"]))  # accepted, never done
    emu.faults.datahub_import_drop = False
    emu.faults.datahub_import_delay = 0.2
    hub_ok(await hub.import_files(asset, v1, ["b.bin"]))  # a.bin would have been copied first
    await hub.wait_file(asset, v1, "", "b.bin", 2)
    assert await hub.file_sizes(asset, v1) == {"b.bin": 2}


# -- files of a version ------------------------------------------------------------------------


async def test_delete_files_all_or_nothing(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    for rel in ("a.txt", "d/b.txt", "d/e/c.txt"):
        emu.datahub_path("model", asset, v1, rel).parent.mkdir(parents=True, exist_ok=True)
        emu.datahub_path("model", asset, v1, rel).write_bytes(b"x")
    assert "不存在" in hub_refused(await hub.delete_files(asset, v1, ["a.txt", "nope"]))
    assert emu.datahub_path("model", asset, v1, "a.txt").exists()
    hub_refused(await hub.delete_files(asset, v1, ["/"]), 400)
    assert hub_ok(await hub.delete_files(asset, v1, ["a.txt", "/d/e"])) == "删除成功"
    assert await hub.file_sizes(asset, v1) == {}
    assert [r["filePath"] for r in hub_ok(await hub.files(asset, v1, "d"))["rows"]] == ["d/b.txt"]


async def test_file_list_pages_and_missing_folder(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    for rel in ("b.txt", "a.txt", "z/in.txt", "y/in.txt"):
        emu.datahub_path("model", asset, v1, rel).parent.mkdir(parents=True, exist_ok=True)
        emu.datahub_path("model", asset, v1, rel).write_bytes(b"12345")
    first = hub_ok(await hub.files(asset, v1, page=1, size=3))
    second = hub_ok(await hub.files(asset, v1, page=2, size=3))
    assert first["total"] == second["total"] == 4
    assert [(r["fileName"], r["fileType"]) for r in first["rows"] + second["rows"]] == [
        ("y", 2), ("z", 2), ("a.txt", 1), ("b.txt", 1)
    ]  # fmt: skip
    row = second["rows"][0]
    assert (
        row["fileSize"] == 5 and isinstance(row["updateTime"], int) and row["updateTime"] > 1_600_000_000_000
    )
    assert first["relativePath"] == f"/private/datahub/alice/{asset}/{v1}"
    assert hub_ok(await hub.files(asset, v1, "not/yet")) | {"relativePath": ""} == {
        "total": 0, "rows": [], "relativePath": ""
    }  # fmt: skip
    hub_refused(await hub.files(asset, v1, image=True), 400)  # images only
    hub_refused(await hub.files(asset, v1, "a\\b"), 400)
    image, (i1,) = emu.datahub_create_asset("image", "img")
    emu.datahub_path("image", image, i1, "pause.tar").write_bytes(b"tar")
    rows = hub_ok(await hub.files(image, i1, image=True))["rows"]
    assert [(r["fileName"], r["fileSize"]) for r in rows] == [("pause.tar", 3)]
    hub_refused(await hub.files(image, i1), 400)


async def test_download_honours_range(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.datahub_path("model", asset, v1, "d").mkdir()
    emu.datahub_path("model", asset, v1, "d/w 图.bin").write_bytes(DATA)
    body = {"id": asset, "versionId": v1, "filePath": "d/w 图.bin"}
    url = hub_ok(await hub.post("data/queryFileDownloadUrl", body))["tempUrl"]
    assert url.startswith("/api/aiosFile/")
    session, full = hub.api.session, emu.url + url
    async with session.get(full, headers=hub.api.headers()) as r:
        assert r.status == 200 and await r.read() == DATA and r.headers["Accept-Ranges"] == "bytes"
    for header, start, end in (
        ("bytes=10-19", 10, 20),
        ("bytes=2000-", 2000, 2500),
        ("bytes=-100", 2400, 2500),
    ):
        async with session.get(full, headers=hub.api.headers() | {"Range": header}) as r:
            assert r.status == 206 and await r.read() == DATA[start:end]
            assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    async with session.get(full, headers=hub.api.headers() | {"Range": "bytes=2500-"}) as r:
        assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(DATA)}"
    async with session.get(full) as r:
        assert r.status == 401  # a plain 401: downloads need the header too
    async with session.get(full.replace(v1, "0" * 32), headers=hub.api.headers()) as r:
        assert r.status == 404
    assert (
        hub_refused(await hub.post("data/queryFileDownloadUrl", body | {"filePath": "nope"}))
        == "获取文件下载地址失败"
    )
    hub_refused(await hub.post("data/queryFileDownloadUrl", body | {"filePath": "d"}))  # a folder
    downloads = [e for e in emu.log_entries() if e["path"].startswith("/api/aiosFile/")]
    assert [(e["status"], e["ok"]) for e in downloads[:2]] == [(200, True), (206, True)]
    assert downloads[1]["bytes"] == 10 and downloads[0]["user_id"] == 5


async def test_download_serves_only_the_url_it_handed_out(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.datahub_path("model", asset, v1, "f").write_bytes(DATA)
    url = hub_ok(await hub.post("data/queryFileDownloadUrl", {"id": asset, "versionId": v1, "filePath": "f"}))[
        "tempUrl"
    ]
    assert f"/tenant101/private/datahub/alice/{asset}/{v1}/f" in url
    for other in (url.replace("/tenant101/", "/tenant102/"), url.replace("/alice/", "/bob/")):
        async with hub.api.session.get(emu.url + other, headers=hub.api.headers()) as r:
            assert r.status == 404
    async with hub.api.session.get(emu.url + url, headers=hub.api.headers()) as r:
        assert r.status == 200 and await r.read() == DATA


async def test_download_faults(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.datahub_path("model", asset, v1, "f").write_bytes(DATA)
    url = emu.url + hub_ok(
        await hub.post("data/queryFileDownloadUrl", {"id": asset, "versionId": v1, "filePath": "f"})
    )["tempUrl"]
    emu.faults.download_error_rate = 1.0
    for _ in range(3):  # max_consecutive_errors, then a clean answer
        async with hub.api.session.get(url, headers=hub.api.headers()) as r:
            assert r.status == 500 and r.content_type == "text/plain"
    async with hub.api.session.get(url, headers=hub.api.headers()) as r:
        assert r.status == 200 and await r.read() == DATA
    hub_ok(await hub.files(asset, v1))  # other calls are not downloads
    emu.faults.download_error_rate = 0.0
    emu.faults.download_cut_rate = 1.0
    async with hub.api.session.get(url, headers=hub.api.headers()) as r:
        assert r.status == 200 and r.content_length == len(DATA)
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    entry = [e for e in emu.log_entries() if e["path"].startswith("/api/aiosFile/")][-1]
    assert entry["fault"] == "download_cut" and entry["status"] is None


# -- faults, configuration, persistence -----------------------------------------------------------


async def test_generic_faults_apply_to_datahub(emu: EmulatorThread, hub: HubApi) -> None:
    asset, (v1,) = emu.datahub_create_asset("model", "m")
    emu.datahub_path("model", asset, v1, "f").write_bytes(b"f")
    emu.faults.chunk_error_rate = 1.0
    status, body = await hub.chunk(asset, v1, str(uuid.uuid4()), b"a", 0, 1, 1, "x")
    assert status == 500 and body["success"] is False and body["code"] == 500
    assert emu.log_entries()[-1]["fault"] == "chunk_error"
    hub_ok(await hub.files(asset, v1))  # other datahub calls are not chunk calls
    emu.faults.chunk_error_rate = 0.0
    emu.faults.reset_rate = 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await hub.chunk(asset, v1, str(uuid.uuid4()), bytes(200_000), 0, 1, 200_000, "x")
    assert emu.log_entries()[-1]["fault"] == "reset"
    emu.faults.reset_rate = 0.0
    emu.faults.busy_rate, emu.faults.retry_after = 1.0, 3
    status, body = await hub.list_assets("model")
    assert status == 503 and body["code"] == 503 and body["success"] is False
    emu.faults.busy_rate = 0.0
    url = hub_ok(
        await hub.post("data/queryFileDownloadUrl", {"id": asset, "versionId": v1, "filePath": "f"})
    )["tempUrl"]
    emu.faults.busy_rate = 1.0
    async with hub.api.session.get(emu.url + url, headers=hub.api.headers()) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "3"
    emu.faults.busy_rate = 0.0
    emu.faults.auth_error_form = "body"
    emu.expire_tokens()
    status, body = await hub.files(asset, v1)
    assert status == 200 and body["code"] == 401 and body["success"] is False and body["data"] is None
    async with hub.api.session.get(emu.url + url, headers=hub.api.headers()) as r:
        assert r.status == 401
    await hub.api.login(ALICE)
    hub_ok(await hub.files(asset, v1))


async def test_datahub_switches_at_start_and_at_run_time(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    with EmulatorThread(
        tmp_path / "p", datahub_create_delay=0, datahub_import_drop=True, token_lifetime=60
    ) as emu:
        assert emu.faults.datahub_create_delay == 0.0 and emu.faults.datahub_import_drop is True
        assert emu.config.token_lifetime == 60 and emu.faults.token_lifetime is None
        url = emu.url + "/__emulator__/faults"
        async with session.post(url, json={"datahub_create_fail": True, "datahub_assemble_delay": 0.5}) as r:
            assert r.status == 200
            current = await r.json()
        assert current["datahub_create_fail"] is True and emu.faults.datahub_assemble_delay == 0.5
        assert set(current) == set(Faults().public_fields())
        for bad in ({"datahub_create_delay": -1}, {"datahub_import_drop": 1}, {"datahub_create_fail": "yes"}):
            async with session.post(url, json=bad) as r:
                assert r.status == 400
        api = Api(session, emu.url)
        await api.login()
        hub = HubApi(api)
        asset, (v1,) = emu.datahub_create_asset("model", "m")
        await hub.new_version("model", asset, "v2", v1, wait=2)


async def test_datahub_survives_a_restart(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    root = tmp_path / "p"
    with EmulatorThread(root) as emu:
        api = Api(session, emu.url)
        await api.login()
        hub = HubApi(api)
        created = hub_ok(await hub.create_asset("kept", ["1"]))
        asset, v1 = created["id"], created["versionId"]
        await hub.upload(asset, v1, "f.bin", DATA, CHUNK)
        await hub.wait_file(asset, v1, "", "f.bin", len(DATA))
        emu.faults.datahub_create_delay = 60
        hub_ok(await hub.create_version("dataset", asset, "v2", v1))  # still creating at the stop
    with EmulatorThread(root, datahub_create_delay=0) as again:
        api = Api(session, again.url)
        await api.login()
        hub = HubApi(api)
        assert [i["id"] for i in hub_ok(await hub.list_assets("dataset", title="kept"))["items"]] == [asset]

        async def resumed() -> bool:
            return [r["createStatus"] for r in await hub.versions("dataset", asset)] == [1, 1]

        await until(resumed)
        v2 = (await hub.versions("dataset", asset))[0]["id"]
        assert again.datahub_path("dataset", asset, v2, "f.bin").read_bytes() == DATA
