"""`/api/file/file/*`: the private and public file spaces (protocol.md §3 and §6).

Seed-table decisions (house reading where the seed is silent):
- `parentPath` (addFolder) and `currentPath` (simple uploads) are optional in the seed's tables:
  absent means the space's root. Everything the tables mark required is required.
- `userId` must be the caller's; on the public calls `publicUserId` must be the caller's too.
  `deletePublicFileOrDictory` marks `userId` optional: checked only when sent.
- Envelope failures (bad fields, missing folders, failed merges) answer HTTP 200 with
  `success: false` and `errorCode` 400 (403 for another user's id), as the platform's business
  errors do; only a wrong content type (415) and malformed JSON (400) are HTTP errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .config import EmulatorUser
from .envelopes import ApiError, file_ok
from .fields import (
    FormFields,
    invalid,
    md5_value,
    missing,
    name_value,
    path_value,
    read_form,
    read_json,
)
from .state import FAULT, LOG_FIELDS, STATE, USER, EmulatorState
from .storage import Entry, HashedFile, Space, StorageError, display_path

_SIMPLE_UPLOAD_LIMIT = 8 << 30
_MAX_TOTAL = 1_000_000
#: Folders are listed with the size `ls` shows for them, as in the seed's example ("4.00KB").
_FOLDER_SIZE = 4096
_UPLOADED = "文件上传成功"


def _caller(request: web.Request) -> EmulatorUser:
    return request[USER]


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


def require_own_id(name: str, value: int | None, user: EmulatorUser) -> None:
    """Refuse a userId/publicUserId that is not the caller's (nothing is written)."""
    if value != user.user_id:
        raise ApiError(403, f"参数错误：{name} 与当前登录用户不符")


def caller_space(user: EmulatorUser, public: bool) -> Space:
    """The caller's private space, or their tenant's public one."""
    return Space("public", user.tenant_id) if public else Space("private", user.user_id)


def _log(request: web.Request, **fields: Any) -> None:
    request[LOG_FIELDS].update(fields)


@asynccontextmanager
async def _storage_errors() -> AsyncIterator[None]:
    """Turn a storage refusal into the 400 envelope."""
    try:
        yield
    except StorageError as e:
        raise ApiError(400, str(e)) from None


async def _discard(upload: HashedFile | None) -> None:
    """Remove a temp upload that was not placed (a no-op once it was moved into place)."""
    if upload is not None:
        await asyncio.to_thread(upload.path.unlink, missing_ok=True)


# -- simple uploads -------------------------------------------------------------------------


async def _simple_upload(request: web.Request, public: bool) -> web.Response:
    state, user = _state(request), _caller(request)
    form = await read_form(request, state.storage, file_field="file", max_file_bytes=_SIMPLE_UPLOAD_LIMIT)
    try:
        current = form.fields.string("currentPath", required=False)
        _log(request, fileName=form.filename, currentPath=current, bytes=form.file.size if form.file else 0)
        if public:
            require_own_id("publicUserId", form.fields.user_id("publicUserId"), user)
        if form.file is None or form.filename is None:
            raise missing("file")
        folder = path_value("currentPath", current)
        # The stored name is the part's filename taken literally (protocol.md §6).
        name = name_value("file", form.filename)
        async with _storage_errors():
            await asyncio.to_thread(
                state.storage.place_upload, caller_space(user, public), folder, name, form.file
            )
    finally:
        await _discard(form.file)
    return file_ok(message=_UPLOADED)


async def upload_folder(request: web.Request) -> web.Response:
    """`uploadFolder`: one-request upload into the private space."""
    return await _simple_upload(request, public=False)


async def upload_public_folder(request: web.Request) -> web.Response:
    """`uploadPublicFolder`: one-request upload into the public space."""
    return await _simple_upload(request, public=True)


# -- folders ----------------------------------------------------------------------------------


async def _add_folder(request: web.Request, public: bool) -> web.Response:
    state, user = _state(request), _caller(request)
    fields = await read_json(request)
    require_own_id("userId", fields.user_id("userId"), user)
    require_own_id("publicUserId", fields.user_id("publicUserId"), user)
    name = name_value("folderName", fields.string("folderName"))
    parent = path_value("parentPath", fields.string("parentPath", required=False))
    _log(request, folderName=name, parentPath=display_path(parent))
    async with _storage_errors():  # an existing folder answers "文件夹已存在"
        await asyncio.to_thread(state.storage.make_folder, caller_space(user, public), parent, name)
    return file_ok()


async def add_folder(request: web.Request) -> web.Response:
    """`addFolder`: one folder level in the private space."""
    return await _add_folder(request, public=False)


async def add_public_folder(request: web.Request) -> web.Response:
    """`addPublicFolder`: one folder level in the public space."""
    return await _add_folder(request, public=True)


async def _delete(request: web.Request, public: bool) -> web.Response:
    state, user = _state(request), _caller(request)
    fields = await read_json(request)
    if not public or fields.body.get("userId") is not None:
        require_own_id("userId", fields.user_id("userId"), user)
    require_own_id("publicUserId", fields.user_id("publicUserId"), user)
    raw = fields.strings("sPath")
    paths = [path_value("sPath", p) for p in raw]
    _log(request, sPath=raw)
    async with _storage_errors():
        await asyncio.to_thread(state.storage.delete, caller_space(user, public), paths)
    return file_ok()


async def delete_file_or_dictory(request: web.Request) -> web.Response:
    """`deleteFileOrDictory`: delete private files/folders, all or nothing."""
    return await _delete(request, public=False)


async def delete_public_file_or_dictory(request: web.Request) -> web.Response:
    """`deletePublicFileOrDictory`: delete public files/folders, all or nothing."""
    return await _delete(request, public=True)


def human_size(size: int) -> str:
    """The listing's `fileSize` text, e.g. 4096 -> "4.00KB"."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}TB"


def _entry_json(folder: tuple[str, ...], entry: Entry, clock_offset: float = 0.0) -> dict[str, Any]:
    size = _FOLDER_SIZE if entry.is_dir else entry.size
    mtime = entry.mtime + clock_offset  # the platform's clock, as skewed as a test makes it
    return {
        "fileName": entry.name,
        "fileSize": human_size(size),
        "isDirectory": "1" if entry.is_dir else "0",
        "filePath": display_path((*folder, entry.name)),
        "parentPath": display_path(folder),
        "updateTime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime)),
        "fileSizeBytes": size,
        "lastModifyTime": int(mtime * 1000),
    }


async def get_folder_info(request: web.Request) -> web.Response:
    """`getFolderInfo`: one page of a folder; `requestBegin` is a 1-based item index."""
    state, user = _state(request), _caller(request)
    fields = await read_json(request)
    if "userId" not in fields.body:
        raise missing("userId")
    user_id = fields.user_id("userId", required=False)
    public = user_id is None  # userId null lists the public space
    if not public:
        require_own_id("userId", user_id, user)
    folder = path_value("path", fields.string("path", required=False))
    name_filter = fields.string("fileName", required=False)
    begin = fields.integer("requestBegin", strings_ok=True)
    count = fields.integer("requestFileAccount", strings_ok=True)
    if begin < 1:
        raise invalid("requestBegin", "应为从1开始的序号")
    if count < 1:
        raise invalid("requestFileAccount", "应大于0")
    _log(request, folder=display_path(folder), isPublic=public, requestBegin=begin, requestFileAccount=count)
    async with _storage_errors():
        entries = await asyncio.to_thread(state.storage.list_folder, caller_space(user, public), folder)
    if name_filter:
        entries = [e for e in entries if name_filter in e.name]
    cap = state.config.faults.list_page_cap
    page = entries[begin - 1 : begin - 1 + (min(count, cap) if cap else count)]
    offset = state.config.faults.clock_offset
    return file_ok([_entry_json(folder, e, offset) for e in page])


# -- the md5 chunk protocol -------------------------------------------------------------------


@asynccontextmanager
async def _chunk_lock(state: EmulatorState, space: Space, file_md5: str) -> AsyncIterator[None]:
    async with state.chunk_locks[f"{space.key}/{file_md5}"]:
        yield


async def check_file_exist(request: web.Request) -> web.Response:
    """`checkFileExist`: fileStatus 1 if the content is held, else 2 with the received chunks."""
    state, user = _state(request), _caller(request)
    fields = await read_json(request)
    require_own_id("userId", fields.user_id("userId"), user)
    public = fields.boolean("isPublic")
    name = name_value("fileName", fields.string("fileName"))
    file_md5 = md5_value("fileMd5", fields.string("fileMd5"))
    size = fields.integer("fileSize")
    current = fields.string("currentPath")
    _log(request, fileName=name, currentPath=current, fileMd5=file_md5, fileSize=size, isPublic=public)
    path_value("currentPath", current)  # need not exist, but must be a valid path
    if size < 1:
        raise invalid("fileSize", "分片上传的文件不能为空（应 ≥ 1）")
    space = caller_space(user, public)
    if await asyncio.to_thread(state.storage.held_object, file_md5, size) is not None:
        _log(request, fileStatus=1)
        return file_ok({"fileStatus": 1, "chunks": []})
    received = await asyncio.to_thread(state.storage.received_chunks, space, file_md5)
    faults = state.config.faults
    chunks = []
    for index, md5 in received.items():
        if faults.chance(faults.wrong_chunk_md5_rate):
            md5 = faults.wrong_md5(md5)
            request[FAULT] = "wrong_chunk_md5"
        chunks.append({"index": index, "md5": md5})
    _log(request, fileStatus=2)
    return file_ok({"fileStatus": 2, "chunks": chunks})


@dataclass(frozen=True)
class _ChunkForm:
    """The validated text fields of an uploadFile form."""

    public: bool
    folder: tuple[str, ...]
    file_md5: str
    index: int
    total: int
    chunk_size: int
    chunk_md5: str


def _chunk_form(fields: FormFields, user: EmulatorUser, request: web.Request, max_chunk: int) -> _ChunkForm:
    require_own_id("userId", fields.user_id("userId"), user)
    public = fields.boolean("isPublic")
    current = fields.string("currentPath")
    name = fields.string("fileName")
    file_md5 = fields.string("fileMd5")
    index = fields.integer("index")
    total = fields.integer("total")
    _log(
        request,
        fileName=name,
        currentPath=current,
        fileMd5=file_md5,
        index=index,
        total=total,
        isPublic=public,
    )
    name_value("fileName", name)
    form = _ChunkForm(
        public=public,
        folder=path_value("currentPath", current),
        file_md5=md5_value("fileMd5", file_md5),
        index=index,
        total=total,
        chunk_size=fields.integer("chunkSize"),
        chunk_md5=md5_value("chunkMd5", fields.string("chunkMd5")),
    )
    if not 1 <= total <= _MAX_TOTAL:
        raise invalid("total", f"应在 1 到 {_MAX_TOTAL} 之间")
    if index >= total:
        raise invalid("index", "应小于 total")
    if not 1 <= form.chunk_size <= max_chunk:
        raise invalid("chunkSize", f"应在 1 到 {max_chunk} 之间")
    # The seed's example also sends fileSize; when present, a chunk before the last must be a
    # full chunk of a file of that size.
    if "fileSize" in fields.texts:
        size = fields.integer("fileSize")
        if index < total - 1 and not form.chunk_size * (total - 1) < size <= form.chunk_size * total:
            raise invalid("chunkSize", "与 fileSize、total 不符")
    return form


async def upload_file(request: web.Request) -> web.Response:
    """`uploadFile`: receive one verified chunk; re-sending an index replaces it.

    House reading of `chunkSize` (seed: "分片大小（bytes）", protocol.md §3 step 3): it is the
    length of THIS request's chunk data, so the last chunk declares its own, shorter length.
    That every chunk but the last has one size is checked at merge, across all chunks.
    """
    state, user = _state(request), _caller(request)
    max_chunk = state.config.max_chunk_bytes
    form = await read_form(request, state.storage, file_field="chunk", max_file_bytes=max_chunk)
    try:
        _log(request, chunk_bytes=form.file.size if form.file else 0)
        chunk = _chunk_form(form.fields, user, request, max_chunk)
        if form.file is None:
            raise missing("chunk")
        if form.file.size != chunk.chunk_size:
            raise invalid("chunkSize", f"与分片实际长度 {form.file.size} 不符")
        if form.file.md5 != chunk.chunk_md5:
            raise invalid("chunkMd5", "与分片内容不符")
        space = caller_space(user, chunk.public)
        async with _storage_errors():
            await asyncio.to_thread(state.storage.folder, space, chunk.folder)
            async with _chunk_lock(state, space, chunk.file_md5):
                await asyncio.to_thread(
                    state.storage.store_chunk, space, chunk.file_md5, chunk.index, form.file
                )
    finally:
        await _discard(form.file)
    return file_ok()


async def merge_file(request: web.Request) -> web.Response:
    """`mergeFile`: assemble chunks 0..total-1 (or place held content) atomically at the target."""
    state, user = _state(request), _caller(request)
    fields = await read_json(request)
    require_own_id("userId", fields.user_id("userId"), user)
    public = fields.boolean("isPublic")
    current = fields.string("currentPath")
    name = fields.string("fileName")
    file_md5 = fields.string("fileMd5")
    size = fields.integer("fileSize")
    total = fields.integer("total")
    _log(
        request,
        fileName=name,
        currentPath=current,
        fileMd5=file_md5,
        fileSize=size,
        isPublic=public,
        total=total,
    )
    folder = path_value("currentPath", current)
    name_value("fileName", name)
    md5_value("fileMd5", file_md5)
    if size < 1:
        raise invalid("fileSize", "分片上传的文件不能为空（应 ≥ 1）")
    if not 1 <= total <= _MAX_TOTAL:
        raise invalid("total", f"应在 1 到 {_MAX_TOTAL} 之间")
    space = caller_space(user, public)
    async with _storage_errors(), _chunk_lock(state, space, file_md5):
        instant = await asyncio.to_thread(state.storage.merge, space, folder, name, file_md5, size, total)
    _log(request, instant=instant)
    return file_ok()


def add_routes(app: web.Application) -> None:
    """Register the file-space routes."""
    base = "/api/file/file/"
    for name, handler in (
        ("uploadFolder", upload_folder),
        ("uploadPublicFolder", upload_public_folder),
        ("addFolder", add_folder),
        ("addPublicFolder", add_public_folder),
        ("deleteFileOrDictory", delete_file_or_dictory),
        ("deletePublicFileOrDictory", delete_public_file_or_dictory),
        ("getFolderInfo", get_folder_info),
        ("checkFileExist", check_file_exist),
        ("uploadFile", upload_file),
        ("mergeFile", merge_file),
    ):
        app.router.add_post(base + name, handler)
