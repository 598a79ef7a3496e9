"""`/api/market/datahub/{model,dataset,algo,image,other}/*`: assets and their versions.

Protocol.md §5 and §6 (house reading), seed lines 9542-13160 and 15336-15500. Decisions where
the seed is silent:
- Refusals of a request's form (missing or ill-typed fields, bad values) answer code 400, as the
  file calls do; refusals of the platform's state (no such asset or version, a duplicate name,
  the first version, a version still being created) answer code 500, as every failure example
  of the seed's datahub section does. Both with HTTP 200 and `success: false`.
- An asset is visible to its owner, and to everyone when its authority is 2 or 3 (public);
  only the owner may change it or its versions and files.
- `other/createDataHub` creates the kind named by the one "资源类型" tag in `taskTags` ("1"
  dataset, "2" algorithm, "3" model; seed line 15422); `image/createDataHub` creates images.
  The first version is named "master" (the seed's examples) and is finished at once.
- List filters: `title` is a case-insensitive substring of the name, `author` an exact name,
  `taskTags` must all be held (the kind's resource tag counts as held). Scope 1 lists all
  visible assets, 2 the caller's; 3 (favourites) and 4 (presets) are always empty here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

from .datahub_store import (
    CATEGORY,
    CREATING,
    FAILED,
    FINISHED,
    KINDS,
    RESOURCE_TAG,
    Asset,
    DatahubError,
    DatahubStore,
    Kind,
    Owner,
    Version,
)
from .envelopes import ApiError, datahub_ok
from .fields import JsonFields, ill_typed, invalid, missing, name_value, read_json
from .state import LOG_FIELDS, STATE, USER

BASE = "/api/market/datahub/"
_LIST_CALLS: dict[Kind, str] = {
    "model": "getModelList",
    "dataset": "getDatasetList",
    "algo": "getAlgoList",
    "image": "getImageList",
}
_SEED_OK = "success"
_MAX_NAME = 255
T = TypeVar("T")

# -- shared with datahub_data_api -----------------------------------------------------------


def store_of(request: web.Request) -> DatahubStore:
    """The running emulator's datahub store."""
    return request.app[STATE].datahub


def log(request: web.Request, **fields: Any) -> None:
    """Add endpoint fields to this request's log line."""
    request[LOG_FIELDS].update(fields)


def find_asset(
    request: web.Request, asset_id: str, *, kind: Kind | None = None, write: bool = False
) -> Asset:
    """The asset `asset_id` as the caller may see it (of `kind`, if given); else refused."""
    user = request[USER]
    asset = store_of(request).asset(asset_id)
    if asset is None or (kind is not None and asset.kind != kind) or not asset.visible_to(user.user_id):
        raise ApiError(500, "资产不存在")
    if write and asset.owner_id != user.user_id:
        raise ApiError(500, "无权限操作该资产")
    return asset


def find_version(asset: Asset, version_id: str, *, ready: bool = True) -> Version:
    """A version of `asset`; with `ready`, refused (code 500) unless its creation finished."""
    version = asset.version(version_id)
    if version is None:
        raise ApiError(500, "版本不存在")
    if ready and version.status == CREATING:
        raise ApiError(500, "版本创建中，请稍后再试")
    if ready and version.status == FAILED:
        raise ApiError(500, "版本创建失败")
    return version


@asynccontextmanager
async def datahub_errors() -> AsyncIterator[None]:
    """Turn a store refusal into the datahub failure envelope."""
    try:
        yield
    except DatahubError as e:
        raise ApiError(e.code, str(e)) from None


def paging(fields: JsonFields) -> tuple[int, int]:
    """`current` (a 1-based page number) and `size` (rows per page)."""
    current = fields.integer("current")
    size = fields.integer("size")
    if current < 1:
        raise invalid("current", "页码从1开始")
    if size < 1:
        raise invalid("size", "应大于0")
    return current, size


def page_of(items: Sequence[T], current: int, size: int) -> list[T]:
    """Page `current` of `items`, `size` per page."""
    return list(items[(current - 1) * size : current * size])


def asset_path(asset: Asset, version_id: str) -> str:
    """A version's storage path as the platform shows it (seed line 9780)."""
    return f"/private/datahub/{asset.author}/{asset.id}/{version_id}"


def _tag_ids(fields: JsonFields, name: str) -> list[str]:
    """An array of tag ids; the seed shows both strings (`["3"]`) and integers (`[14]`)."""
    value = fields.body.get(name)
    if value is None:
        raise missing(name)
    if not isinstance(value, list) or not all(
        isinstance(t, str) or (isinstance(t, int) and not isinstance(t, bool)) for t in value
    ):
        raise ill_typed(name, "标签ID数组")
    return [str(t) for t in value]


def _asset_name(fields: JsonFields) -> str:
    name = fields.string("name")
    if not name.strip():
        raise invalid("name", "不能为空")
    if len(name) > _MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise invalid("name", "过长或含控制字符")
    return name


async def _in_thread(work: Callable[..., T], *args: Any) -> T:
    async with datahub_errors():
        return await asyncio.to_thread(work, *args)


# -- asset lists ------------------------------------------------------------------------------


def _item_json(asset: Asset) -> dict[str, Any]:
    latest = asset.latest_finished()
    versions = []
    for v in asset.newest_first():
        if v.status != FINISHED:
            continue  # lists show finished versions only
        entry = {"id": v.id, "name": v.name, "path": asset_path(asset, v.id) + "/"}
        if asset.kind == "image":
            entry["showPath"] = f"{asset.name}/{v.name}"
        versions.append(entry)
    item: dict[str, Any] = {
        "id": asset.id,
        "versionId": latest.id if latest else "",
        "name": asset.name,
        "author": asset.author,
        "taskTags": list(asset.task_tags),
        "versions": versions,
        "storageMedium": 1201,
        "storageMediumString": "文件系统",
        "sourceType": 1101,
        "isPreset": 0,
    }
    if asset.kind == "image":
        item["schemaType"] = asset.schema_type
    return item


async def _list_assets(request: web.Request, kind: Kind) -> web.Response:
    user = request[USER]
    fields = await read_json(request)
    current, size = paging(fields)
    scope = fields.integer("scope")
    tags = _tag_ids(fields, "taskTags")
    author = fields.string("author", required=False)
    title = fields.string("title", required=False)
    schema = fields.body.get("schemaType") if kind == "image" else None
    if schema is not None:
        schema = fields.integer("schemaType")
    log(request, scope=scope, title=title, author=author, current=current, size=size)
    if scope not in (1, 2, 3, 4):
        raise invalid("scope", "应为 1、2、3 或 4")
    found = []
    for asset in store_of(request).assets(kind):
        held = set(asset.task_tags) | ({RESOURCE_TAG[kind]} if kind in RESOURCE_TAG else set())
        if (
            asset.visible_to(user.user_id)
            and scope in (1, 2)
            and (scope == 1 or asset.owner_id == user.user_id)
            and (not author or asset.author == author)
            and (not title or title.casefold() in asset.name.casefold())
            and set(tags) <= held
            and (schema is None or asset.schema_type == schema)
        ):
            found.append(asset)
    items = [_item_json(a) for a in page_of(found, current, size)]
    return datahub_ok({"total": len(found), "items": items}, message=_SEED_OK)


# -- one asset and its versions ---------------------------------------------------------------


async def _query_info(request: web.Request, kind: Kind) -> web.Response:
    user = request[USER]
    fields = await read_json(request)
    asset_id, version_id = fields.string("id"), fields.string("versionId")
    log(request, id=asset_id, versionId=version_id)
    asset = find_asset(request, asset_id, kind=kind)
    version = find_version(asset, version_id, ready=False)
    data = {
        "id": asset.id,
        "name": asset.name,
        "description": asset.description,
        "creator": asset.author,
        "collections": 0,
        "isCollected": False,
        "taskTags": list(asset.task_tags),
        "updateTime": asset.updated_at,
        "versionId": version.id,
        "versionName": version.name,
        "isPreset": 0,
        "schemaType": asset.schema_type,
        "content": "",
        "isOwner": asset.owner_id == user.user_id,
    }
    return datahub_ok(data, message=_SEED_OK)


def _version_json(asset: Asset, v: Version) -> dict[str, Any]:
    return {
        "id": v.id,
        "parentId": v.parent_id,
        "dataId": asset.id,
        "name": v.name,
        "description": v.description,
        "createdAt": v.created_at,
        "updatedAt": v.updated_at,
        "deletedAt": 0,
        "createStatus": v.status,
    }


async def _query_version_list(request: web.Request, kind: Kind) -> web.Response:
    fields = await read_json(request)
    asset_id = fields.string("id")
    current, size = paging(fields)
    full = fields.boolean("full", required=True)
    log(request, id=asset_id, current=current, size=size, full=full)
    asset = find_asset(request, asset_id, kind=kind)
    versions = asset.newest_first()
    shown = versions if full else page_of(versions, current, size)
    return datahub_ok({"total": len(versions), "rows": [_version_json(asset, v) for v in shown]}, _SEED_OK)


async def _create_version(request: web.Request, kind: Kind) -> web.Response:
    state = request.app[STATE]
    fields = await read_json(request)
    asset_id = fields.string("id")
    name = fields.string("name")
    description = fields.string("description")
    parent_id = fields.string("parentVersionId")
    category = fields.integer("category")
    log(request, id=asset_id, name=name, parentVersionId=parent_id, category=category)
    name_value("name", name)
    if category != CATEGORY[kind]:
        raise invalid("category", f"{kind} 资产的 category 应为 {CATEGORY[kind]}")
    if kind == "image" and parent_id:
        raise invalid("parentVersionId", "镜像创建新版本需要传空")
    asset = find_asset(request, asset_id, kind=kind, write=True)
    if parent_id:
        find_version(asset, parent_id)  # the parent must exist and be finished
    version = await _in_thread(state.datahub.add_version, asset.id, name, description, parent_id)
    log(request, versionId=version.id)
    state.jobs.create_version(asset.id, version.id, fail=state.config.faults.datahub_create_fail)
    return datahub_ok("创建版本中，请稍等", message=_SEED_OK)


async def _modify_version(request: web.Request, kind: Kind) -> web.Response:
    fields = await read_json(request)
    asset_id = fields.string("id")
    old, new = fields.string("oldName"), fields.string("newName")
    description = fields.string("description")
    log(request, id=asset_id, oldName=old, newName=new)
    name_value("newName", new)
    asset = find_asset(request, asset_id, kind=kind, write=True)
    await _in_thread(store_of(request).modify_version, asset.id, old, new, description)
    return datahub_ok("更新版本信息成功!", message=_SEED_OK)


async def _delete_version(request: web.Request, kind: Kind) -> web.Response:
    fields = await read_json(request)
    asset_id, name = fields.string("id"), fields.string("versionName")
    log(request, id=asset_id, versionName=name)
    asset = find_asset(request, asset_id, kind=kind, write=True)
    await _in_thread(store_of(request).delete_version, asset.id, name)
    return datahub_ok("删除版本成功!", message=_SEED_OK)


# -- creating assets --------------------------------------------------------------------------


def _authority(fields: JsonFields) -> int:
    authority = fields.integer("authority")
    if authority not in (1, 2, 3):
        raise invalid("authority", "应为 1（私有）、2（全局公开）或 3（自定义公开）")
    if authority == 3 and not isinstance(fields.body.get("shareInfo"), dict):
        raise invalid("shareInfo", "自定义公开（authority=3）时必需")
    return authority


async def _create(request: web.Request, kind: Kind, fields: JsonFields, tags: list[str]) -> web.Response:
    user = request[USER]
    authority = _authority(fields)
    name = _asset_name(fields)
    description = fields.string("description")
    schema = fields.integer("schemaType") if kind == "image" else 0
    if schema not in (0, 1):
        raise invalid("schemaType", "应为 0（x86）或 1（arm）")
    log(request, kind=kind, name=name, authority=authority, taskTags=tags)
    asset = await asyncio.to_thread(
        store_of(request).create_asset,
        kind,
        name,
        Owner(user.username, user.user_id, user.tenant_id),
        description=description,
        authority=authority,
        task_tags=tuple(tags),
        schema_type=schema,
    )
    log(request, id=asset.id, versionId=asset.versions[0].id)
    return datahub_ok({"versionId": asset.versions[0].id, "id": asset.id}, message="创建成功！")


async def create_data_hub(request: web.Request) -> web.Response:
    """`other/createDataHub`: a model, algorithm or dataset, by its one resource-type tag."""
    fields = await read_json(request)
    tags = _tag_ids(fields, "taskTags")
    kinds = [k for k, tag in RESOURCE_TAG.items() if tag in tags]
    if len(kinds) != 1:
        raise invalid("taskTags", "应含且仅含一个资源类型标签：3 模型、2 算法、1 数据集")
    return await _create(request, kinds[0], fields, tags)


async def create_image_data_hub(request: web.Request) -> web.Response:
    """`image/createDataHub`: an image asset (schemaType required)."""
    fields = await read_json(request)
    return await _create(request, "image", fields, _tag_ids(fields, "taskTags"))


# -- routes -------------------------------------------------------------------------------------

KindHandler = Callable[[web.Request, Kind], Awaitable[web.Response]]


def _for_kind(handler: KindHandler, kind: Kind) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return await handler(request, kind)

    handle.__doc__ = f"{handler.__name__.lstrip('_')} for {kind} assets"
    return handle


def add_routes(app: web.Application) -> None:
    """Register the asset and version routes of every kind."""
    for kind in KINDS:
        base = f"{BASE}{kind}/"
        app.router.add_post(base + _LIST_CALLS[kind], _for_kind(_list_assets, kind))
        app.router.add_post(base + "queryInfo", _for_kind(_query_info, kind))
        app.router.add_post(base + "queryVersionList", _for_kind(_query_version_list, kind))
        app.router.add_post(base + "createVersion", _for_kind(_create_version, kind))
        app.router.add_put(base + "modifyVersion", _for_kind(_modify_version, kind))
        app.router.add_post(base + "deleteVersion", _for_kind(_delete_version, kind))
    app.router.add_post(BASE + "other/createDataHub", create_data_hub)
    app.router.add_post(BASE + "image/createDataHub", create_image_data_hub)
