"""Strict reading of request bodies: JSON objects and multipart forms (protocol.md §6).

Every refusal is an `ApiError` whose Chinese message names the offending field.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from .envelopes import ApiError
from .storage import HashedFile, HashingWriter, Storage, StorageError, check_name, split_path

_DECIMAL = re.compile(r"[0-9]{1,18}")
_MD5 = re.compile(r"[0-9a-f]{32}")
# The `filename` parameter exactly as sent; `filename*` (RFC 5987) is not it.
_FILENAME = re.compile(r';\s*filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s"]+))', re.IGNORECASE | re.DOTALL)
_TEXT_LIMIT = 64 * 1024
_FLUSH_BYTES = 1 << 20


def missing(name: str) -> ApiError:
    """The refusal of a call that lacks field `name`."""
    return ApiError(400, f"缺少参数：{name}")


def ill_typed(name: str, expected: str) -> ApiError:
    """The refusal of a field of the wrong type."""
    return ApiError(400, f"参数类型错误：{name} 应为{expected}")


def invalid(name: str, reason: str) -> ApiError:
    """The refusal of a field whose value is not acceptable."""
    return ApiError(400, f"参数错误：{name}，{reason}")


def path_value(name: str, value: str) -> tuple[str, ...]:
    """A space-relative path field, split into components."""
    try:
        return split_path(value)
    except StorageError as e:
        raise invalid(name, str(e)) from None


def name_value(name: str, value: str) -> str:
    """A single-name field (fileName, folderName)."""
    try:
        return check_name(value)
    except StorageError as e:
        raise invalid(name, str(e)) from None


def md5_value(name: str, value: str) -> str:
    """A 32-lowercase-hex md5 field."""
    if not _MD5.fullmatch(value):
        raise invalid(name, "应为32位小写十六进制MD5")
    return value


class JsonFields:
    """Typed access to the fields of a JSON object body."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def _get(self, name: str, required: bool) -> Any:
        value = self.body.get(name)
        if value is None and required:
            raise missing(name)
        return value

    def string(self, name: str, *, required: bool = True, default: str = "") -> str:
        """A JSON string (an absent optional one reads as `default`)."""
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ill_typed(name, "字符串")
        return value

    def integer(self, name: str, *, strings_ok: bool = False) -> int:
        """A JSON integer (or, with `strings_ok`, a decimal string)."""
        value = self._get(name, True)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if strings_ok and isinstance(value, str) and _DECIMAL.fullmatch(value):
            return int(value)
        raise ill_typed(name, "整数")

    def boolean(self, name: str, *, required: bool = False) -> bool:
        """A JSON boolean (an absent optional one reads as false)."""
        value = self._get(name, required)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ill_typed(name, "布尔值")
        return value

    def user_id(self, name: str, *, required: bool = True) -> int | None:
        """A userId: a decimal string or an integer."""
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            return int(value)
        raise ill_typed(name, "用户ID（数字字符串或整数）")

    def strings(self, name: str) -> list[str]:
        """A non-empty JSON array of strings."""
        value = self._get(name, True)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ill_typed(name, "字符串数组")
        if not value:
            raise invalid(name, "不能为空")
        return value


class FormFields:
    """Typed access to the text parts of a multipart form (all values arrive as text)."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def string(self, name: str, *, required: bool = True, default: str = "") -> str:
        """A text field (an absent optional one reads as `default`)."""
        if name not in self.texts:
            if required:
                raise missing(name)
            return default
        return self.texts[name]

    def integer(self, name: str) -> int:
        """A decimal text field."""
        value = self.string(name)
        if not _DECIMAL.fullmatch(value):
            raise ill_typed(name, "整数")
        return int(value)

    def boolean(self, name: str) -> bool:
        """An optional `true`/`false` field, false when absent."""
        value = self.string(name, required=False, default="false")
        if value not in ("true", "false"):
            raise ill_typed(name, "布尔值（true/false）")
        return value == "true"

    def user_id(self, name: str) -> int:
        """A decimal userId field."""
        value = self.string(name)
        if not _DECIMAL.fullmatch(value):
            raise ill_typed(name, "用户ID（数字字符串）")
        return int(value)


async def read_json(request: web.Request) -> JsonFields:
    """The request's JSON object body; HTTP 415 for another content type, 400 if malformed."""
    if request.content_type != "application/json":
        raise ApiError(
            415, f"不支持的Content-Type：{request.content_type}，应为 application/json", http_status=415
        )
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "请求体不是合法的JSON对象", http_status=400)
    return JsonFields(body)


@dataclass
class Form:
    """A parsed multipart body: text fields plus at most one file part, already on disk."""

    fields: FormFields
    file: HashedFile | None
    filename: str | None  # the file part's `filename` parameter, taken literally


def literal_filename(content_disposition: str | None) -> str | None:
    """The `filename` parameter of a Content-Disposition header, without any decoding.

    The platform (Spring) takes it as browsers send it: raw UTF-8. Percent-escapes stay as they
    are (protocol.md §6); only the quoted-string escapes `\\"` and `\\\\` are undone. Any other
    backslash is kept (browsers send a name's backslash raw), so such a name is then refused.
    """
    match = _FILENAME.search(content_disposition or "")
    if match is None:
        return None
    if match.group(1) is not None:
        return re.sub(r'\\(["\\])', r"\1", match.group(1))
    return match.group(2)


async def read_form(request: web.Request, storage: Storage, *, file_field: str, max_file_bytes: int) -> Form:
    """Parse a multipart body, streaming the `file_field` part to a temp file while hashing it."""
    if request.content_type != "multipart/form-data":
        raise ApiError(
            415, f"不支持的Content-Type：{request.content_type}，应为 multipart/form-data", http_status=415
        )
    texts: dict[str, str] = {}
    writer: HashingWriter | None = None
    filename: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise ApiError(400, "multipart 格式错误", http_status=400)
            part_filename = literal_filename(part.headers.get(hdrs.CONTENT_DISPOSITION))
            if part.name == file_field:
                if part_filename is None:
                    raise ill_typed(file_field, "文件")
                if writer is not None:
                    raise invalid(file_field, "重复的文件字段")
                writer = await asyncio.to_thread(storage.new_writer)
                filename = part_filename
                await _stream_part(part, writer, file_field, max_file_bytes)
            else:
                # Spring binds a part with a filename as a file, never as a text parameter.
                if part_filename is not None:
                    raise ill_typed(part.name, "文本字段")
                if part.name in texts:
                    raise invalid(part.name, "重复的字段")
                texts[part.name] = await _read_text(part)
    except BaseException as e:
        # Discarding is a close and an unlink: done inline, it also works while being cancelled.
        if writer is not None:
            writer.discard()
        if isinstance(e, ValueError | HttpProcessingError):  # aiohttp's verdicts on a malformed body
            raise ApiError(400, "multipart 格式错误", http_status=400) from None
        raise
    upload = await asyncio.to_thread(writer.finish) if writer is not None else None
    return Form(FormFields(texts), upload, filename)


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while block := await part.read_chunk(8192):
        data += block
        if len(data) > _TEXT_LIMIT:
            raise invalid(part.name or "?", "字段过长")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(part.name or "?", "不是UTF-8文本") from None


async def _stream_part(part: BodyPartReader, writer: HashingWriter, name: str, limit: int) -> None:
    """Copy a file part to `writer` in ~1 MiB batches written off the event loop."""
    buffered = bytearray()
    received = 0
    while block := await part.read_chunk(_FLUSH_BYTES):
        received += len(block)
        if received > limit:
            raise invalid(name, f"超过 {limit} 字节上限")
        buffered += block
        if len(buffered) >= _FLUSH_BYTES:
            await asyncio.to_thread(writer.write, bytes(buffered))
            buffered.clear()
    if buffered:
        await asyncio.to_thread(writer.write, bytes(buffered))
