"""The datahub's assets and versions: metadata in one JSON file, files in one folder per version.

Layout under the emulator's root:

    datahub/assets.json                                   every asset and its versions
    datahub/<kind>/<assetId>/<versionId>/files/...        a finished version's files
    datahub/submits/<submitId>/                           direct-upload chunks (datahub_files.py)
    datahub/tmp/                                          copies and assemblies in progress

The store is thread-safe: the event loop reads it directly (in memory, never blocking on disk)
and mutates it through `asyncio.to_thread`, because every mutation rewrites assets.json; test
helpers call it from their own thread. Assets and versions are frozen snapshots.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

Kind = Literal["model", "dataset", "algo", "image"]
KINDS: tuple[Kind, ...] = ("model", "dataset", "algo", "image")
#: createVersion's `category` for each kind (seed line 12640).
CATEGORY: dict[Kind, int] = {"dataset": 1, "algo": 2, "model": 3, "image": 4}
#: The "资源类型" tag id that makes other/createDataHub create this kind (seed line 15422).
RESOURCE_TAG: dict[Kind, str] = {"dataset": "1", "algo": "2", "model": "3"}

CREATING, FINISHED, FAILED = 0, 1, 2
#: The name the platform gives an asset's first version (seed lines 9777, 12561).
FIRST_VERSION_NAME = "master"
FIRST_VERSION_DESCRIPTION = "初始版本"


class DatahubError(Exception):
    """A refused datahub operation: `code` for the envelope, `str(error)` for the message."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Version:
    """One version of an asset; `status` is the seed's createStatus (0 creating, 1 done, 2 failed)."""

    id: str
    name: str
    description: str
    parent_id: str
    created_at: int  # ms
    updated_at: int  # ms
    status: int


@dataclass(frozen=True)
class Owner:
    """Who creates an asset: the platform user's name and ids."""

    username: str
    user_id: int
    tenant_id: int


@dataclass(frozen=True)
class Asset:
    """A model, dataset, algorithm or image; `versions` oldest first."""

    id: str
    kind: Kind
    name: str
    description: str
    author: str
    owner_id: int
    tenant_id: int
    authority: int
    task_tags: tuple[str, ...]
    schema_type: int
    created_at: int  # ms
    updated_at: int  # ms
    versions: tuple[Version, ...]

    def version(self, version_id: str) -> Version | None:
        """The version with this id, if any."""
        return next((v for v in self.versions if v.id == version_id), None)

    def version_named(self, name: str) -> Version | None:
        """The version with this name, if any."""
        return next((v for v in self.versions if v.name == name), None)

    def newest_first(self) -> list[Version]:
        """Versions newest first (creation order, not timestamps: two may share a millisecond)."""
        return list(reversed(self.versions))

    def latest_finished(self) -> Version | None:
        """The newest version whose creation finished."""
        return next((v for v in self.newest_first() if v.status == FINISHED), None)

    def visible_to(self, user_id: int) -> bool:
        """Owners see their assets; others only public ones (authority 2 or 3)."""
        return user_id == self.owner_id or self.authority != 1


def new_id() -> str:
    """A 32-hex id, as the platform's assets and versions have."""
    return secrets.token_hex(16)


def now_ms() -> int:
    """The current time as the platform's millisecond timestamps."""
    return int(time.time() * 1000)


class DatahubStore:
    """Assets and versions of every kind, persisted in `<root>/datahub/assets.json`."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "datahub"
        self.tmp_dir = self.dir / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._meta_path = self.dir / "assets.json"
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._generation = 0
        self._written = 0
        self._assets: dict[str, Asset] = self._load()

    # -- reads (in memory) -----------------------------------------------------------------

    def asset(self, asset_id: str) -> Asset | None:
        """The asset with this id, of any kind."""
        with self._lock:
            return self._assets.get(asset_id)

    def assets(self, kind: Kind) -> list[Asset]:
        """Every asset of `kind`, newest first."""
        with self._lock:
            found = [a for a in self._assets.values() if a.kind == kind]
        return list(reversed(found))  # dicts keep insertion (creation) order

    def files_dir(self, asset: Asset, version_id: str) -> Path:
        """Where a version's files live (exists once the version is finished)."""
        return self.dir / asset.kind / asset.id / version_id / "files"

    def pending_versions(self) -> list[tuple[Asset, Version]]:
        """Versions still being created (to resume after a restart)."""
        with self._lock:
            assets = list(self._assets.values())
        return [(a, v) for a in assets for v in a.versions if v.status == CREATING]

    # -- mutations (blocking: they rewrite assets.json) --------------------------------------

    def create_asset(
        self,
        kind: Kind,
        name: str,
        owner: Owner,
        *,
        description: str = "",
        authority: int = 1,
        task_tags: tuple[str, ...] = (),
        schema_type: int = 0,
        version_names: tuple[str, ...] = (FIRST_VERSION_NAME,),
    ) -> Asset:
        """A new asset whose versions (in the given order) are all finished and empty."""
        if not version_names or len(set(version_names)) != len(version_names):
            raise DatahubError("版本名称不能为空或重复", 400)
        stamp = now_ms()
        versions = tuple(
            Version(new_id(), v, FIRST_VERSION_DESCRIPTION if i == 0 else "", "", stamp, stamp, FINISHED)
            for i, v in enumerate(version_names)
        )
        asset = Asset(
            id=new_id(),
            kind=kind,
            name=name,
            description=description,
            author=owner.username,
            owner_id=owner.user_id,
            tenant_id=owner.tenant_id,
            authority=authority,
            task_tags=task_tags,
            schema_type=schema_type,
            created_at=stamp,
            updated_at=stamp,
            versions=versions,
        )
        for v in versions:
            self.files_dir(asset, v.id).mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._assets[asset.id] = asset
        self._save()
        return asset

    def add_version(self, asset_id: str, name: str, description: str, parent_id: str) -> Version:
        """A new version in createStatus 0; refused when the asset already has that name."""
        with self._lock:
            asset = self._require(asset_id)
            if asset.version_named(name) is not None:
                raise DatahubError(f"版本名称已存在：{name}")
            stamp = now_ms()
            version = Version(new_id(), name, description, parent_id, stamp, stamp, CREATING)
            self._assets[asset_id] = replace(asset, versions=(*asset.versions, version), updated_at=stamp)
        self._save()
        return version

    def finish_version(self, asset_id: str, version_id: str, fail: bool) -> int:
        """Give a version in creation its parent's files (if any) and its final createStatus.

        The files are copied to a temp folder first and moved into place in one rename, so a
        finished version never shows half its parent's files. Returns the status set (or
        -1 when the version was deleted meanwhile).
        """
        asset = self.asset(asset_id)
        version = asset.version(version_id) if asset else None
        if asset is None or version is None or version.status != CREATING:
            return -1
        status = FAILED
        if not fail:
            try:
                self._fill(asset, version)
                status = FINISHED
            except OSError:
                status = FAILED
        with self._lock:
            current = self._assets.get(asset_id)
            if current is None or current.version(version_id) is None:
                return -1
            self._assets[asset_id] = _with_version(current, version_id, status=status, updated_at=now_ms())
        self._save()
        return status

    def modify_version(self, asset_id: str, old_name: str, new_name: str, description: str) -> None:
        """Rename a version and set its description; refused when `new_name` is another's."""
        with self._lock:
            asset = self._require(asset_id)
            version = asset.version_named(old_name)
            if version is None:
                raise DatahubError(f"版本不存在：{old_name}")
            other = asset.version_named(new_name)
            if other is not None and other.id != version.id:
                raise DatahubError(f"版本名称已存在：{new_name}")
            self._assets[asset_id] = _with_version(
                asset, version.id, name=new_name, description=description, updated_at=now_ms()
            )
        self._save()

    def delete_version(self, asset_id: str, name: str) -> None:
        """Delete a version and its files; the first version of an asset cannot be deleted."""
        with self._lock:
            asset = self._require(asset_id)
            version = asset.version_named(name)
            if version is None:
                raise DatahubError(f"版本不存在：{name}")
            if version.id == asset.versions[0].id:
                raise DatahubError("资产的第一个版本不能删除")
            if version.status == CREATING:
                raise DatahubError("版本创建中，请稍后再试")
            kept = tuple(v for v in asset.versions if v.id != version.id)
            self._assets[asset_id] = replace(asset, versions=kept, updated_at=now_ms())
        self._save()
        shutil.rmtree(self.files_dir(asset, version.id).parent, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------------

    def _require(self, asset_id: str) -> Asset:
        asset = self._assets.get(asset_id)
        if asset is None:
            raise DatahubError("资产不存在")
        return asset

    def _fill(self, asset: Asset, version: Version) -> None:
        target = self.files_dir(asset, version.id)
        staging = self.tmp_dir / f"version-{secrets.token_hex(8)}"
        try:
            if version.parent_id:
                shutil.copytree(self.files_dir(asset, version.parent_id), staging, symlinks=True)
            else:
                staging.mkdir()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _save(self) -> None:
        """Write assets.json; a writer that lost the race to a newer snapshot skips its write."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            text = json.dumps({"assets": [_asset_json(a) for a in self._assets.values()]}, ensure_ascii=False)
        with self._save_lock:
            if generation <= self._written:
                return
            tmp = self._meta_path.with_name(f".assets.{secrets.token_hex(4)}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self._meta_path)
            self._written = generation

    def _load(self) -> dict[str, Asset]:
        try:
            data = json.loads(self._meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {a["id"]: _asset_from(a) for a in data["assets"]}


def _with_version(asset: Asset, version_id: str, **changes: Any) -> Asset:
    versions = tuple(replace(v, **changes) if v.id == version_id else v for v in asset.versions)
    return replace(asset, versions=versions)


def _asset_json(asset: Asset) -> dict[str, Any]:
    return asdict(asset)


def _asset_from(data: dict[str, Any]) -> Asset:
    versions = tuple(Version(**v) for v in data.pop("versions"))
    tags = tuple(data.pop("task_tags"))
    kind = data.pop("kind")
    if kind not in KINDS:
        raise ValueError(f"bad asset kind in datahub/assets.json: {kind!r}")
    return Asset(**data, kind=cast(Kind, kind), task_tags=tags, versions=versions)
