"""`/api/market/datahub/data/*`: the files of a datahub version, and their download.

Protocol.md §5 and §6 (house reading), seed lines 9790-10140 and 11482-12290. Decisions where
the seed is silent:
- `data/uploadFile`: `chunkSize` is the byte length of the chunk part of that request (seed:
  分片字节大小, protocol.md §6), so the last chunk states its own, shorter length; a chunk whose
  length differs is refused. Across a submitId every chunk but the last has one length and the
  last is not longer (an empty chunk only for a one-chunk, empty file). Answered with `code`
  0, as the seed's example (line 9911).
- Listing rows: `filePath` is the path from the version's root (usable as is in deleteFiles and
  queryFileDownloadUrl), `currentPath` the listed folder, "" for the root; `fileSize` in bytes
  (0 for folders), `updateTime` in ms. Images list through `image/queryImageFileList`, the other
  kinds through `data/queryFileList`; the wrong one is refused.
- `tempUrl` (`/api/aiosFile/downloadTenant/...`, seed line 11680) needs the Authorization header
  (a plain HTTP 401 without it), does not expire, and serves one byte range per request. Only
  the URL handed out serves the file: its tenant must be the caller's and its author the
  asset's (404 otherwise), so a client cannot get by building URLs of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from aiohttp import web

from .datahub_api import (
    BASE,
    asset_path,
    datahub_errors,
    find_asset,
    find_version,
    log,
    page_of,
    paging,
    store_of,
)
from .datahub_files import SubmitPlan, check_target, delete_paths, list_folder
from .datahub_store import FINISHED
from .envelopes import ApiError, datahub_ok
from .fields import invalid, missing, name_value, path_value, read_form, read_json
from .middleware import DOWNLOAD_CUT, InjectedReset
from .state import FAULT, STATE, USER
from .storage import Entry, HashedFile, Space, Storage, StorageError

DOWNLOAD_PREFIX = "/api/aiosFile/downloadTenant/"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_MAX_TOTAL = 1_000_000
_SEND_BLOCK = 1 << 20
_SEED_OK = "success"


async def _discard(upload: HashedFile | None) -> None:
    if upload is not None:
        await asyncio.to_thread(upload.path.unlink, missing_ok=True)


# -- direct upload ------------------------------------------------------------------------------


async def upload_file(request: web.Request) -> web.Response:
    """`data/uploadFile`: keep one chunk of a submitId; assemble the file once all arrived."""
    state, user = request.app[STATE], request[USER]
    max_chunk = state.config.max_chunk_bytes
    form = await read_form(request, state.storage, file_field="chunk", max_file_bytes=max_chunk)
    try:
        f = form.fields
        received = form.file.size if form.file else 0
        log(request, chunk_bytes=received)
        submit_id, file_path, current = f.string("submitId"), f.string("filePath"), f.string("currentPath")
        asset_id, version_id = f.string("id"), f.string("versionId")
        index, total, chunk_size = f.integer("index"), f.integer("total"), f.integer("chunkSize")
        log(
            request,
            submitId=submit_id,
            index=index,
            total=total,
            filePath=file_path,
            currentPath=current,
            id=asset_id,
            versionId=version_id,
        )
        if not _UUID.fullmatch(submit_id):
            raise invalid("submitId", "应为UUID")
        name = name_value("filePath", file_path)
        folder = path_value("currentPath", current)
        if not 1 <= total <= _MAX_TOTAL:
            raise invalid("total", f"应在 1 到 {_MAX_TOTAL} 之间")
        if index >= total:
            raise invalid("index", "应小于 total")
        if not 0 <= chunk_size <= max_chunk:
            raise invalid("chunkSize", f"应在 1 到 {max_chunk} 之间")
        if form.file is None:
            raise missing("chunk")
        if received != chunk_size:
            raise ApiError(400, f"分片大小与chunkSize不符: 收到{received}字节, chunkSize={chunk_size}")
        if received == 0 and total > 1:
            raise invalid("chunk", "仅单分片的空文件可以是空分片")
        asset = find_asset(request, asset_id, write=True)
        find_version(asset, version_id)
        plan = SubmitPlan(user.user_id, asset.id, version_id, total, name, folder)
        submit_id = submit_id.lower()
        async with datahub_errors():
            await asyncio.to_thread(check_target, state.datahub.files_dir(asset, version_id), folder, name)
            async with state.chunk_locks[f"datahub/{submit_id}"]:
                result = await asyncio.to_thread(
                    state.submits.receive, submit_id, plan, index, form.file.path, received
                )
        log(request, received=result)
        if result == "complete":
            state.jobs.assemble(submit_id)
    finally:
        await _discard(form.file)  # a no-op once the chunk was kept
    return datahub_ok("文件上传中，请等待", message=_SEED_OK, code=0)


# -- import, delete -----------------------------------------------------------------------------


def _private_sources(storage: Storage, space: Space, sources: list[tuple[str, ...]]) -> list[Path]:
    paths = [storage.resolve(space, parts) for parts in sources]
    if any(not p.exists() for p in paths):
        raise ApiError(500, "数据不存在")
    return paths


async def import_files(request: web.Request) -> web.Response:
    """`data/importFiles`: copy files of the private space into a version, asynchronously."""
    state, user = request.app[STATE], request[USER]
    fields = await read_json(request)
    asset_id, version_id = fields.string("id"), fields.string("versionId")
    import_path = fields.string("importPath")
    raw = fields.strings("sourceFiles")
    log(request, id=asset_id, versionId=version_id, importPath=import_path, sourceFiles=raw)
    folder = path_value("importPath", import_path)
    sources = [path_value("sourceFiles", s) for s in raw]
    if any(not parts for parts in sources):
        raise invalid("sourceFiles", "不能是私有空间根目录")
    asset = find_asset(request, asset_id, write=True)
    find_version(asset, version_id)
    try:
        paths = await asyncio.to_thread(
            _private_sources, state.storage, Space("private", user.user_id), sources
        )
    except StorageError as e:
        raise invalid("sourceFiles", str(e)) from None
    state.jobs.import_files(asset.id, version_id, folder, paths)
    return datahub_ok("文件导入中，请等待", message=_SEED_OK)


async def delete_files(request: web.Request) -> web.Response:
    """`data/deleteFiles`: delete files and folders of a version, all or nothing."""
    fields = await read_json(request)
    asset_id, version_id = fields.string("id"), fields.string("versionId")
    raw = fields.strings("filePaths")
    log(request, id=asset_id, versionId=version_id, filePaths=raw)
    paths = [path_value("filePaths", p) for p in raw]
    asset = find_asset(request, asset_id, write=True)
    find_version(asset, version_id)
    async with datahub_errors():
        await asyncio.to_thread(delete_paths, store_of(request).files_dir(asset, version_id), paths)
    return datahub_ok("删除成功", message=_SEED_OK, code=0)


# -- listing ------------------------------------------------------------------------------------


def _row_json(folder: tuple[str, ...], entry: Entry, image: bool, clock_offset: float = 0.0) -> dict[str, Any]:
    row: dict[str, Any] = {
        "fileName": entry.name,
        "fileType": 2 if entry.is_dir else 1,
        "symbolicLink": 1,
        "fileSize": entry.size,
        "updateTime": int((entry.mtime + clock_offset) * 1000),
        "currentPath": "/".join(folder),
        "filePath": "/".join((*folder, entry.name)),
        "relativePath": None,
    }
    if image:
        row |= {"imageStatus": 1, "isMainImage": 0, "isShow": 1, "isImport": 1}
    return row


async def _file_list(request: web.Request, image: bool) -> web.Response:
    fields = await read_json(request)
    current, size = paging(fields)
    raw_folder = fields.string("currentPath")
    asset_id, version_id = fields.string("id"), fields.string("versionId")
    log(request, id=asset_id, versionId=version_id, currentPath=raw_folder, current=current, size=size)
    folder = path_value("currentPath", raw_folder)
    asset = find_asset(request, asset_id)
    if (asset.kind == "image") != image:
        other = "image/queryImageFileList" if asset.kind == "image" else "data/queryFileList"
        raise ApiError(400, f"{asset.kind} 资产的文件列表请使用 {other}")
    version = find_version(asset, version_id)
    async with datahub_errors():
        entries = await asyncio.to_thread(list_folder, store_of(request).files_dir(asset, version.id), folder)
    offset = request.app[STATE].config.faults.clock_offset
    rows = [_row_json(folder, e, image, offset) for e in page_of(entries, current, size)]
    data = {"total": len(entries), "rows": rows, "relativePath": asset_path(asset, version.id)}
    return datahub_ok(data, message=_SEED_OK)


async def query_file_list(request: web.Request) -> web.Response:
    """`data/queryFileList`: one page of a folder of a model, dataset or algorithm version."""
    return await _file_list(request, image=False)


async def query_image_file_list(request: web.Request) -> web.Response:
    """`image/queryImageFileList`: one page of a folder of an image version."""
    return await _file_list(request, image=True)


# -- download -----------------------------------------------------------------------------------


async def query_file_download_url(request: web.Request) -> web.Response:
    """`data/queryFileDownloadUrl`: the tempUrl (a path on the platform) of one file."""
    user = request[USER]
    fields = await read_json(request)
    asset_id, version_id, raw = fields.string("id"), fields.string("versionId"), fields.string("filePath")
    log(request, id=asset_id, versionId=version_id, filePath=raw)
    parts = path_value("filePath", raw)
    asset = find_asset(request, asset_id)
    version = find_version(asset, version_id)
    files_dir = store_of(request).files_dir(asset, version.id)
    if not parts or not await asyncio.to_thread(files_dir.joinpath(*parts).is_file):
        raise ApiError(500, "获取文件下载地址失败")
    tail = "/".join(quote(p, safe="") for p in parts)
    url = (
        f"{DOWNLOAD_PREFIX}tenant{user.tenant_id}/private/datahub/{quote(asset.author, safe='')}/"
        f"{asset.id}/{version.id}/{tail}"
    )
    return datahub_ok({"tempUrl": url}, message=_SEED_OK)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `bytes=` range; None serves the whole file.

    Raises HTTPRequestRangeNotSatisfiable for a range outside the file. A malformed header or
    several ranges are ignored (RFC 9110 allows a server to serve the whole file instead).
    """
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            start = size
    else:
        start, end = int(first), size if last == "" else min(size, int(last) + 1)
        if last != "" and int(last) < start:
            return None
    if start >= size or start >= end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def download(request: web.Request) -> web.StreamResponse:
    """GET of a tempUrl: the file's bytes (206 with Content-Range for a Range request)."""
    asset_id, version_id = request.match_info["asset_id"], request.match_info["version_id"]
    raw = request.match_info["path"]
    log(request, id=asset_id, versionId=version_id, filePath=raw)
    user = request[USER]
    asset = store_of(request).asset(asset_id)
    version = asset.version(version_id) if asset else None
    try:
        parts = path_value("path", raw)
    except ApiError:
        parts = ()
    if (
        asset is None
        or version is None
        or version.status != FINISHED
        or not asset.visible_to(user.user_id)
        or not parts
        # Only the URL queryFileDownloadUrl hands out: the caller's tenant, the asset's author.
        or request.match_info["tenant"] != f"tenant{user.tenant_id}"
        or request.match_info["author"] != asset.author
    ):
        raise web.HTTPNotFound(text="文件不存在")
    path = store_of(request).files_dir(asset, version.id).joinpath(*parts)
    try:
        f: IO[bytes] = await asyncio.to_thread(open, path, "rb")
    except OSError:
        raise web.HTTPNotFound(text="文件不存在") from None
    try:
        size = os.fstat(f.fileno()).st_size
        span = _byte_range(request.headers.get("Range"), size)
        start, end = span if span is not None else (0, size)
        response = web.StreamResponse(status=200 if span is None else 206)
        response.content_type = "application/octet-stream"
        response.content_length = end - start
        response.headers["Accept-Ranges"] = "bytes"
        if span is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        log(request, range=request.headers.get("Range"), bytes=end - start)
        await response.prepare(request)
        await asyncio.to_thread(f.seek, start)
        remaining = end - start
        if request.get(FAULT) == DOWNLOAD_CUT:  # the download_cut_rate fault: send a part, then reset
            remaining = request.app[STATE].config.faults.reset_point(remaining)
        while remaining > 0:
            block = await asyncio.to_thread(f.read, min(_SEND_BLOCK, remaining))
            if not block:
                break  # truncated meanwhile
            await response.write(block)
            remaining -= len(block)
        if request.get(FAULT) == DOWNLOAD_CUT:
            if request.transport is not None:
                request.transport.abort()
            raise InjectedReset()
        await response.write_eof()
        return response
    finally:
        f.close()


def add_routes(app: web.Application) -> None:
    """Register the version-file routes and the download route."""
    for name, handler in (
        ("data/uploadFile", upload_file),
        ("data/importFiles", import_files),
        ("data/deleteFiles", delete_files),
        ("data/queryFileList", query_file_list),
        ("image/queryImageFileList", query_image_file_list),
        ("data/queryFileDownloadUrl", query_file_download_url),
    ):
        app.router.add_post(BASE + name, handler)
    app.router.add_get(
        DOWNLOAD_PREFIX + "{tenant}/private/datahub/{author}/{asset_id}/{version_id}/{path:.+}", download
    )
