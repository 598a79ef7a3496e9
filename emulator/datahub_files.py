"""Files inside a datahub version, and the chunk store of direct uploads (all blocking).

A version's files live in one folder (`DatahubStore.files_dir`); paths inside it are tuples of
names already checked by `storage.split_path`. A direct upload's chunks are kept per submitId
under `datahub/submits/<submitId>/` (`<index>` files plus `meta.json`), and stay there after
the file was assembled as a record that later chunks are to be ignored.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

from .datahub_store import DatahubError
from .storage import Entry, display_path, folder_entries

_READ_BLOCK = 1 << 20

SubmitState = Literal["receiving", "assembling", "assembled", "failed"]


# -- a version's folder ---------------------------------------------------------------------


def resolve(files_dir: Path, parts: tuple[str, ...]) -> Path:
    """The disk path of `parts` in a version; refuses a symlink that leads out of it."""
    path = files_dir.joinpath(*parts)
    real_root = os.path.realpath(files_dir)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise DatahubError("路径越界", 400)
    return path


def list_folder(files_dir: Path, parts: tuple[str, ...]) -> list[Entry]:
    """Entries of a folder, folders first, then by name; a folder not (yet) there is empty."""
    folder = resolve(files_dir, parts)
    if not folder.is_dir():
        return []
    return folder_entries(folder)


def delete_paths(files_dir: Path, paths: list[tuple[str, ...]]) -> None:
    """Delete files and folders (recursively); all paths are checked before any is deleted."""
    targets = []
    for parts in paths:
        if not parts:
            raise DatahubError("不能删除版本根目录", 400)
        path = resolve(files_dir, parts)
        if not path.exists() and not path.is_symlink():
            raise DatahubError(f"文件或文件夹不存在：{display_path(parts)}")
        targets.append(path)
    for path in targets:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def check_target(files_dir: Path, folder: tuple[str, ...], name: str) -> None:
    """Refuse a file target that a folder occupies, or whose folder path runs through a file."""
    for depth in range(1, len(folder) + 1):
        step = resolve(files_dir, folder[:depth])
        if step.exists() and not step.is_dir():
            raise DatahubError(f"路径中存在同名文件：{display_path(folder[:depth])}", 400)
    target = resolve(files_dir, (*folder, name))
    if target.is_dir() and not target.is_symlink():
        raise DatahubError(f"同名文件夹已存在：{display_path((*folder, name))}", 400)


def place_file(files_dir: Path, folder: tuple[str, ...], name: str, ready: Path) -> None:
    """Move a finished temp file to `folder/name` (folders made as needed), replacing a file."""
    check_target(files_dir, folder, name)
    resolve(files_dir, folder).mkdir(parents=True, exist_ok=True)
    os.replace(ready, resolve(files_dir, (*folder, name)))


def copy_in(source: Path, files_dir: Path, folder: tuple[str, ...], tmp_dir: Path) -> None:
    """Copy a file (or a folder, recursively) to `folder/<its name>`, replacing what is there.

    The copy is made in `tmp_dir` and moved into place, so the target never shows a partial file.
    """
    staging = tmp_dir / f"import-{secrets.token_hex(8)}"
    try:
        if source.is_dir():
            shutil.copytree(source, staging, symlinks=True)
            target = resolve(files_dir, (*folder, source.name))
            resolve(files_dir, folder).mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(staging, target)
        else:
            shutil.copyfile(source, staging)
            place_file(files_dir, folder, source.name, staging)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)


# -- direct-upload chunks -------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitPlan:
    """What every chunk of one submitId must agree on."""

    user_id: int
    asset_id: str
    version_id: str
    total: int
    file_path: str
    current_path: tuple[str, ...]

    def differences(self, other: SubmitPlan) -> list[str]:
        """Names of the fields (as the call spells them) where `other` disagrees."""
        names = {
            "user_id": "userId",
            "asset_id": "id",
            "version_id": "versionId",
            "total": "total",
            "file_path": "filePath",
            "current_path": "currentPath",
        }
        mine, theirs = asdict(self), asdict(other)
        return [label for key, label in names.items() if mine[key] != theirs[key]]


@dataclass(frozen=True)
class _Lengths:
    """The chunk lengths a submitId has shown: of the chunks before the last, and of the last."""

    chunk: int | None = None
    last: int | None = None

    @staticmethod
    def of(meta: dict[str, Any] | None) -> _Lengths:
        raw = meta.get("lengths") if meta else None
        return _Lengths(**raw) if isinstance(raw, dict) else _Lengths()

    def with_chunk(self, last: bool, length: int) -> _Lengths:
        """These lengths once a chunk of `length` arrived; refuses one that breaks the rule."""
        if last:
            if self.chunk is not None and length > self.chunk:
                raise DatahubError(f"最后一片（{length} 字节）不能长于其他分片（{self.chunk} 字节）", 400)
            return _Lengths(self.chunk, length)
        if self.chunk is not None and length != self.chunk:
            raise DatahubError(f"除最后一片外分片长度应一致：收到 {length} 字节，此前为 {self.chunk} 字节", 400)
        if self.last is not None and length < self.last:
            raise DatahubError(f"最后一片（{self.last} 字节）不能长于其他分片（{length} 字节）", 400)
        return _Lengths(length, self.last)


ReceiveResult = Literal["stored", "complete", "ignored"]


class SubmitStore:
    """Chunks of direct uploads, one folder per submitId."""

    def __init__(self, datahub_dir: Path) -> None:
        self.dir = datahub_dir / "submits"
        self.dir.mkdir(parents=True, exist_ok=True)

    def receive(self, submit_id: str, plan: SubmitPlan, index: int, chunk: Path, length: int) -> ReceiveResult:
        """Keep chunk `index` of `length` bytes; "complete" when it was the last one missing.

        Refuses a chunk whose plan differs from the submitId's first chunk, and one whose length
        breaks "every chunk but the last has one length, the last is not longer". Once a
        submitId is complete every further chunk is "ignored" (the caller discards it); until
        then re-sending an index replaces it.
        """
        d = self.dir / submit_id
        d.mkdir(exist_ok=True)
        meta = self._read_meta(submit_id)
        known = self.plan(submit_id)
        lengths = _Lengths.of(meta)
        if known is not None:
            differing = known.differences(plan)
            if differing:
                raise DatahubError(f"同一 submitId 的分片参数不一致：{', '.join(differing)}", 400)
            if self.state(submit_id) != "receiving":
                return "ignored"
        lengths = lengths.with_chunk(index == plan.total - 1, length)
        self._write_meta(submit_id, plan, "receiving", lengths)
        os.replace(chunk, d / str(index))
        received = sum(1 for n in os.listdir(d) if n.isdigit() and int(n) < plan.total)
        if received < plan.total:
            return "stored"
        self.set_state(submit_id, "assembling")
        return "complete"

    def plan(self, submit_id: str) -> SubmitPlan | None:
        """The plan recorded by a submitId's first chunk."""
        meta = self._read_meta(submit_id)
        if meta is None:
            return None
        fields = dict(meta["plan"])
        fields.pop("chunk_size", None)  # recorded by emulators before chunkSize was per chunk
        fields["current_path"] = tuple(fields["current_path"])
        return SubmitPlan(**fields)

    def state(self, submit_id: str) -> SubmitState | None:
        """Where a submitId stands (None: never seen)."""
        meta = self._read_meta(submit_id)
        return None if meta is None else cast(SubmitState, meta["state"])

    def set_state(self, submit_id: str, state: SubmitState) -> None:
        """Record a submitId's new state; chunks are dropped once it is assembled or failed."""
        plan = self.plan(submit_id)
        if plan is None:
            return
        self._write_meta(submit_id, plan, state, _Lengths.of(self._read_meta(submit_id)))
        if state in ("assembled", "failed"):
            for name in os.listdir(self.dir / submit_id):
                if name.isdigit():
                    (self.dir / submit_id / name).unlink(missing_ok=True)

    def concatenate(self, submit_id: str, total: int, tmp_dir: Path) -> Path:
        """Chunks 0..total-1 joined into a new temp file (the caller moves or removes it)."""
        out = tmp_dir / f"assemble-{secrets.token_hex(8)}"
        try:
            with open(out, "wb") as w:
                for i in range(total):
                    with open(self.dir / submit_id / str(i), "rb") as r:
                        shutil.copyfileobj(r, w, _READ_BLOCK)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return out

    def assembling(self) -> list[str]:
        """SubmitIds complete but not yet assembled (to resume after a restart)."""
        return [d.name for d in self.dir.iterdir() if self.state(d.name) == "assembling"]

    def _read_meta(self, submit_id: str) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.dir / submit_id / "meta.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return meta if isinstance(meta, dict) else None

    def _write_meta(self, submit_id: str, plan: SubmitPlan, state: SubmitState, lengths: _Lengths) -> None:
        path = self.dir / submit_id / "meta.json"
        tmp = path.with_name(f".meta.{secrets.token_hex(4)}")
        meta = {"plan": asdict(plan), "state": state, "lengths": asdict(lengths)}
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, path)
