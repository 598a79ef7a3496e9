"""The platform's datahub calls (protocol.md §5): assets, versions, files of a version.

Names and ids are resolved here, once per run; every other datahub call takes ids. The
answers are read tolerantly (string or integer numbers, `rows`/`items`/`records` lists),
since the real platform's document is loose about them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from . import remotepath
from .api import PlatformClient, SpanPayload
from .envelope import PlatformRefused
from .errors import (
    AmbiguousName,
    AssetNotFound,
    Fatal,
    ParentNotApplicable,
    ParentNotFound,
    TransferError,
    VersionCreateFailed,
    VersionNotFound,
)
from .hashing import FileSpan
from .models import DatahubSpace, RemoteEntry
from .pacer import Pacer
from .readback import ByteSink

KINDS = ("dataset", "model", "algo", "image")
CATEGORY = {"dataset": 1, "algo": 2, "model": 3, "image": 4}
_LIST_CALL = {"dataset": "getDatasetList", "model": "getModelList", "algo": "getAlgoList", "image": "getImageList"}
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")
PAGE = 100
BASE = "/api/market/datahub"

# createStatus values of queryVersionList.
CREATING, CREATED, CREATE_FAILED = 0, 1, 2


@dataclass(frozen=True)
class Asset:
    id: str
    name: str
    author: str = ""


@dataclass(frozen=True)
class Version:
    id: str
    name: str
    status: int
    parent_id: str = ""


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def _rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        rows = data
    elif isinstance(data, dict):
        rows = data.get("rows") or data.get("items") or data.get("records") or data.get("list") or []
    else:
        rows = []
    return [r for r in rows if isinstance(r, dict)]


def _total(data: Any) -> int | None:
    if isinstance(data, dict) and data.get("total") is not None:
        return _int(data.get("total"), -1) if _int(data.get("total"), -1) >= 0 else None
    return None


def wire_folder(folder: str) -> str:
    """A folder inside a version as the datahub calls take it: '' for the root, else 'a/b'."""
    return remotepath.join(folder)


class DatahubApi:
    """The datahub calls on top of PlatformClient (one session, one auth flow, one Pacer)."""

    def __init__(self, api: PlatformClient) -> None:
        self.api = api

    def _path(self, kind: str, call: str) -> str:
        return f"{BASE}/{kind}/{call}"

    async def _pages(self, path: str, body: dict[str, Any], *, method: str = "POST") -> list[dict[str, Any]]:
        """Every row of a paged call (`current` is a 1-based page number)."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        page = 1
        while True:
            envelope = await self.api.call(path, {**body, "current": page, "size": PAGE}, method=method)
            batch = _rows(envelope.data if envelope.data is not None else envelope.result)
            new = 0
            for row in batch:
                key = repr(sorted((k, str(v)) for k, v in row.items()))
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
                    new += 1
            total = _total(envelope.data)
            if len(batch) < PAGE or new == 0 or (total is not None and len(rows) >= total):
                return rows
            page += 1

    # -- assets and versions -----------------------------------------------------------------
    async def assets(self, kind: str, title: str = "") -> list[Asset]:
        """Assets whose title matches: the caller's own (scope 2), else every visible one (scope 1)."""
        found: dict[str, Asset] = {}
        for scope in (2, 1):
            body: dict[str, Any] = {"author": "", "scope": scope, "taskTags": [], "title": title}
            try:
                rows = await self._pages(self._path(kind, _LIST_CALL[kind]), body)
            except PlatformRefused:
                if scope == 2:
                    raise
                rows = []
            for r in rows:
                if r.get("id") and str(r["id"]) not in found:
                    found[str(r["id"])] = Asset(str(r["id"]), str(r.get("name") or ""), str(r.get("author") or ""))
            if found:
                break
        return list(found.values())

    async def asset_by_id(self, kind: str, asset_id: str) -> Asset | None:
        try:
            envelope = await self.api.call(self._path(kind, "queryInfo"), {"id": asset_id, "versionId": ""})
        except PlatformRefused:
            return None
        data = envelope.data if isinstance(envelope.data, dict) else {}
        if not data or str(data.get("id") or asset_id) != asset_id:
            return None
        return Asset(asset_id, str(data.get("name") or ""), str(data.get("author") or ""))

    async def versions(self, kind: str, asset_id: str) -> list[Version]:
        """Every version of an asset, newest first (as the platform lists them)."""
        rows = await self._pages(self._path(kind, "queryVersionList"), {"id": asset_id, "full": True})
        return [
            Version(str(r.get("id")), str(r.get("name") or ""), _int(r.get("createStatus"), CREATED),
                    str(r.get("parentId") or ""))
            for r in rows if r.get("id") and not r.get("deletedAt")
        ]

    async def create_version(self, kind: str, asset_id: str, name: str, parent_id: str, description: str = "") -> None:
        body = {"id": asset_id, "name": name, "description": description or "created by hubsync",
                "parentVersionId": parent_id, "category": CATEGORY[kind]}
        await self.api.call(self._path(kind, "createVersion"), body)

    # -- files of a version ------------------------------------------------------------------
    async def list_files(self, space: DatahubSpace, folder: str) -> list[RemoteEntry]:
        """One folder of a version (all pages); a folder that does not exist yet is empty."""
        call = "image/queryImageFileList" if space.kind == "image" else "data/queryFileList"
        body = {"currentPath": wire_folder(folder), "id": space.asset_id, "versionId": space.version_id}
        rows = await self._pages(f"{BASE}/{call}", body)
        entries: dict[str, RemoteEntry] = {}
        for row in rows:
            name = str(row.get("fileName") or "")
            if not name or "/" in name:
                name = str(row.get("filePath") or name).rstrip("/").rpartition("/")[2]
            if not name:
                continue
            is_dir = _int(row.get("fileType"), 1) == 2
            mtime = row.get("updateTime")
            entries[name] = RemoteEntry(
                name=name,
                path=remotepath.join(folder, name),
                is_dir=is_dir,
                size=0 if is_dir else _int(row.get("fileSize")),
                mtime_ms=_int(mtime) if mtime is not None else None,
            )
        return list(entries.values())

    async def import_files(self, space: DatahubSpace, import_path: str, sources: list[str]) -> None:
        body = {"id": space.asset_id, "versionId": space.version_id, "importPath": wire_folder(import_path),
                "sourceFiles": [remotepath.join(s) for s in sources]}
        await self.api.call(f"{BASE}/data/importFiles", body)

    async def delete_files(self, space: DatahubSpace, paths: list[str]) -> None:
        body = {"id": space.asset_id, "versionId": space.version_id, "filePaths": [remotepath.join(p) for p in paths]}
        await self.api.call(f"{BASE}/data/deleteFiles", body)

    async def download(self, space: DatahubSpace, path: str, size: int, sink: ByteSink) -> None:
        """Stream the file at `path` in the version into `sink`: its tempUrl, then a GET of it."""
        endpoint = f"{BASE}/data/queryFileDownloadUrl"
        body = {"id": space.asset_id, "versionId": space.version_id, "filePath": remotepath.join(path)}
        envelope = await self.api.call(endpoint, body)
        data = envelope.data if envelope.data is not None else envelope.result
        url = data.get("tempUrl") if isinstance(data, dict) else data
        if not isinstance(url, str) or not url:
            raise Fatal("answered without a tempUrl", endpoint=endpoint)
        await self.api.download(url, size, sink)

    async def upload_chunk(
        self, space: DatahubSpace, folder: str, name: str, *, submit_id: str, index: int, total: int,
        data: bytes | FileSpan,
    ) -> None:
        """One chunk of a direct upload; its `chunkSize` is its own length (protocol.md §6)."""
        length = data.length if isinstance(data, FileSpan) else len(data)

        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData(quote_fields=False)
            fd.add_field("total", str(total))
            fd.add_field("id", space.asset_id)
            fd.add_field("submitId", submit_id)
            fd.add_field("versionId", space.version_id)
            fd.add_field("currentPath", wire_folder(folder))
            fd.add_field("filePath", name)
            fd.add_field("chunkSize", str(length))
            fd.add_field("index", str(index))
            body = SpanPayload(data) if isinstance(data, FileSpan) else data
            fd.add_field("chunk", body, filename=name, content_type="application/octet-stream")
            return fd

        await self.api.call(f"{BASE}/data/uploadFile", form=form, sends=length)


class Resolver:
    """KIND:ASSET@VERSION names or ids -> a DatahubSpace; cached for the run."""

    def __init__(self, datahub: DatahubApi, *, poll_timeout: float = 600.0, pacer: Pacer | None = None) -> None:
        self.datahub = datahub
        self.poll_timeout = poll_timeout
        self.pacer = pacer or datahub.api.pacer  # polls on the policy's clock
        self._cache: dict[tuple[str, str, str], DatahubSpace] = {}
        # The versions this resolver created, with their parent's name ('' for none): the run says so.
        self.created: dict[DatahubSpace, str] = {}

    async def asset(self, kind: str, name_or_id: str) -> Asset:
        if _HEX_ID.match(name_or_id):
            found = await self.datahub.asset_by_id(kind, name_or_id.lower())
            if found is not None:
                return found
            # queryInfo may want a versionId too: the full list has every id.
            by_id = [a for a in await self.datahub.assets(kind, "") if a.id.lower() == name_or_id.lower()]
            if by_id:
                return by_id[0]
        candidates = await self.datahub.assets(kind, name_or_id)
        exact = [a for a in candidates if a.name == name_or_id or a.id == name_or_id.lower()]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            raise AmbiguousName(f"{kind} name", name_or_id, [(a.id, a.name, f"author {a.author or '?'}") for a in exact])
        others = candidates or await self.datahub.assets(kind, "")
        raise AssetNotFound(kind, name_or_id, [(a.id, a.name) for a in others], similar=bool(candidates))

    @staticmethod
    def _match(versions: list[Version], name_or_id: str) -> list[Version]:
        return [v for v in versions if v.id == name_or_id.lower() or v.name == name_or_id]

    async def resolve(self, kind: str, asset: str, version: str, *, create: bool = False,
                      parent: str | None = None) -> DatahubSpace:
        key = (kind, asset, version)
        if key in self._cache:
            return self._cache[key]
        found = await self.asset(kind, asset)
        versions = await self.datahub.versions(kind, found.id)
        matches = self._match(versions, version)
        if len(matches) > 1:
            raise AmbiguousName(f"version of {kind} {found.name!r}", version, [(v.id, v.name, "") for v in matches])
        if not matches:
            if not create:
                raise VersionNotFound(kind, found.name, version, [v.name for v in versions])
            chosen, parent_name = await self._create(kind, found, versions, version, parent)
        else:
            chosen = matches[0]
            if chosen.status != CREATED:
                chosen = await self._wait_created(kind, found, chosen.name)
        space = DatahubSpace(kind, found.id, chosen.id, found.name, chosen.name)
        self._cache[key] = space
        if not matches:
            self.created[space] = parent_name
        return space

    async def _create(self, kind: str, asset: Asset, versions: list[Version], name: str,
                      parent: str | None) -> tuple[Version, str]:
        """Create version `name`; returns it and its parent's name ('' for none)."""
        chosen: Version | None = None
        if kind == "image":
            if parent:
                raise ParentNotApplicable(kind, asset.name)
        elif parent:
            candidates = self._match(versions, parent)
            if len(candidates) != 1:
                raise ParentNotFound(kind, asset.name, parent, [v.name for v in versions])
            chosen = candidates[0]
        else:
            finished = [v for v in versions if v.status == CREATED]
            chosen = finished[0] if finished else None  # newest first: the latest version
        await self.datahub.create_version(kind, asset.id, name, chosen.id if chosen else "")
        return await self._wait_created(kind, asset, name), chosen.name if chosen else ""

    async def _wait_created(self, kind: str, asset: Asset, name: str) -> Version:
        """Poll queryVersionList with back-off until the version is created; fail on status 2 or time-out."""
        matches: list[Version] = []

        async def created() -> bool:
            nonlocal matches
            matches = [v for v in await self.datahub.versions(kind, asset.id) if v.name == name]
            if matches and matches[0].status == CREATE_FAILED:
                raise VersionCreateFailed(kind, asset.name, name, "the platform reports createStatus 2 (failed)")
            return bool(matches) and matches[0].status == CREATED

        if await self.pacer.poll_until(created, self.pacer.deadline(self.poll_timeout)):
            return matches[0]
        state = "not listed" if not matches else f"createStatus {matches[0].status}"
        raise VersionCreateFailed(kind, asset.name, name, f"not created within {self.poll_timeout:.0f}s ({state})")


__all__ = ["DatahubApi", "DatahubSpace", "Resolver", "VersionCreateFailed", "TransferError", "KINDS"]
