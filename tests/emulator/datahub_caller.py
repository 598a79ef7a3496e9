"""Raw datahub calls for the emulator's tests, written from protocol.md §5 (not from the emulator)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from .conftest import Api, split

H = "/api/market/datahub/"
CATEGORY = {"dataset": 1, "algo": 2, "model": 3, "image": 4}
LIST_CALL = {
    "model": "getModelList",
    "dataset": "getDatasetList",
    "algo": "getAlgoList",
    "image": "getImageList",
}
T = TypeVar("T")


def hub_ok(answer: tuple[int, Any]) -> Any:
    """Assert a datahub success (code 200, or 0 as some seed examples show) and return `data`."""
    status, body = answer
    assert status == 200 and body["success"] is True and body["code"] in (0, 200), answer
    return body["data"]


def hub_refused(answer: tuple[int, Any], code: int = 500) -> str:
    """Assert a datahub envelope failure (HTTP 200, success false) and return its message."""
    status, body = answer
    assert status == 200 and body["success"] is False and body["code"] == code, answer
    assert body["data"] is None
    return str(body["message"])


async def until(check: Callable[[], Awaitable[T]], within: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s (last: {value!r})")
        await asyncio.sleep(0.02)


class HubApi:
    """Datahub calls over a logged-in `Api`; each returns (HTTP status, parsed body)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def post(self, call: str, body: Any) -> tuple[int, Any]:
        return await self.api.post(H + call, body)

    async def put(self, call: str, body: Any) -> tuple[int, Any]:
        return await self.api.put(H + call, body)

    # -- assets and versions ---------------------------------------------------------------

    async def list_assets(
        self, kind: str, title: str = "", current: int = 1, size: int = 50, scope: int = 2, **extra: Any
    ) -> tuple[int, Any]:
        body = {
            "current": current,
            "size": size,
            "author": "",
            "scope": scope,
            "taskTags": [],
            "title": title,
        }
        return await self.post(f"{kind}/{LIST_CALL[kind]}", body | extra)

    async def create_asset(self, name: str, tags: list[str], authority: int = 1) -> tuple[int, Any]:
        body = {"authority": authority, "description": "d", "name": name, "taskTags": tags}
        return await self.post("other/createDataHub", body)

    async def versions(self, kind: str, asset_id: str) -> list[dict[str, Any]]:
        body = {"id": asset_id, "current": 1, "size": 100, "full": True}
        return list(hub_ok(await self.post(f"{kind}/queryVersionList", body))["rows"])

    async def status_of(self, kind: str, asset_id: str, version_id: str) -> int:
        rows = await self.versions(kind, asset_id)
        return int(next(r["createStatus"] for r in rows if r["id"] == version_id))

    async def create_version(
        self, kind: str, asset_id: str, name: str, parent: str = "", **override: Any
    ) -> tuple[int, Any]:
        body = {
            "id": asset_id,
            "name": name,
            "description": "",
            "parentVersionId": parent,
            "category": CATEGORY[kind],
        }
        return await self.post(f"{kind}/createVersion", body | override)

    async def new_version(self, kind: str, asset_id: str, name: str, parent: str = "", wait: int = 1) -> str:
        """createVersion, then poll until it shows createStatus `wait`; returns its id."""
        assert hub_ok(await self.create_version(kind, asset_id, name, parent)) == "创建版本中，请稍等"
        rows = await self.versions(kind, asset_id)
        version_id = str(next(r["id"] for r in rows if r["name"] == name))

        async def settled() -> bool:
            return await self.status_of(kind, asset_id, version_id) == wait

        await until(settled, what=f"createStatus {wait}")
        return version_id

    # -- files ------------------------------------------------------------------------------

    async def chunk(
        self,
        asset_id: str,
        version_id: str,
        submit_id: str,
        piece: bytes,
        index: int,
        total: int,
        chunk_size: int,
        file_path: str,
        current_path: str = "",
        **override: str,
    ) -> tuple[int, Any]:
        fields = {
            "total": str(total),
            "id": asset_id,
            "submitId": submit_id,
            "versionId": version_id,
            "currentPath": current_path,
            "filePath": file_path,
            "chunkSize": str(chunk_size),
            "index": str(index),
        }
        fields.update(override)
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("chunk", piece, filename=file_path, content_type="application/octet-stream")
        return await self.api.form(H + "data/uploadFile", form)

    async def upload(
        self, asset_id: str, version_id: str, name: str, data: bytes, chunk_size: int, current: str = ""
    ) -> str:
        """Send every chunk of one new submitId, asserting each is accepted; returns the submitId."""
        submit_id = str(uuid.uuid4())
        pieces = split(data, chunk_size) or [b""]
        for i, piece in enumerate(pieces):
            answer = await self.chunk(
                asset_id, version_id, submit_id, piece, i, len(pieces), len(piece), name, current
            )
            assert hub_ok(answer) == "文件上传中，请等待"
        return submit_id

    async def files(
        self,
        asset_id: str,
        version_id: str,
        current: str = "",
        page: int = 1,
        size: int = 100,
        image: bool = False,
    ) -> tuple[int, Any]:
        body = {
            "current": page,
            "size": size,
            "currentPath": current,
            "id": asset_id,
            "versionId": version_id,
        }
        return await self.post("image/queryImageFileList" if image else "data/queryFileList", body)

    async def file_sizes(self, asset_id: str, version_id: str, current: str = "") -> dict[str, int]:
        data = hub_ok(await self.files(asset_id, version_id, current))
        return {r["fileName"]: r["fileSize"] for r in data["rows"] if r["fileType"] == 1}

    async def wait_file(self, asset_id: str, version_id: str, current: str, name: str, size: int) -> None:
        async def shown() -> bool:
            return (await self.file_sizes(asset_id, version_id, current)).get(name) == size

        await until(shown, what=f"{current}/{name} with {size} bytes")

    async def import_files(
        self, asset_id: str, version_id: str, sources: list[str], import_path: str = ""
    ) -> tuple[int, Any]:
        body = {"id": asset_id, "versionId": version_id, "importPath": import_path, "sourceFiles": sources}
        return await self.post("data/importFiles", body)

    async def delete_files(self, asset_id: str, version_id: str, paths: list[str]) -> tuple[int, Any]:
        return await self.post(
            "data/deleteFiles", {"id": asset_id, "versionId": version_id, "filePaths": paths}
        )
