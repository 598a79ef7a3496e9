"""The three response envelopes of protocol.md §1, and the error every handler raises."""

from __future__ import annotations

import enum
from typing import Any

from aiohttp import web

OK_MESSAGE = "操作成功"


class Family(enum.Enum):
    """Route families; each has its own envelope."""

    RUOYI = "ruoyi"  # /prod-api/*
    FILE = "file"  # /api/file/*
    DATAHUB = "datahub"  # /api/market/*


_PREFIXES = (("/prod-api/", Family.RUOYI), ("/api/file/", Family.FILE), ("/api/market/", Family.DATAHUB))


def family_of(path: str) -> Family | None:
    """The envelope family of a request path; None outside the platform's API."""
    return next((fam for prefix, fam in _PREFIXES if path.startswith(prefix)), None)


class ApiError(Exception):
    """A refused call: rendered as the family's failure envelope.

    `code` goes into the body (`code` or `errorCode`); `http_status` is the HTTP status, 200 by
    default because the platform reports business failures in the body.
    """

    def __init__(self, code: int, message: str, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def failure_body(family: Family | None, code: int, message: str) -> dict[str, Any]:
    """The failure envelope of `family` (file family when the path is outside all three)."""
    if family is Family.RUOYI:
        return {"code": code, "msg": message}
    if family is Family.DATAHUB:
        return {"success": False, "code": code, "message": message, "data": None}
    return {"success": False, "errorCode": code, "message": message, "result": None}


def error_response(family: Family | None, code: int, message: str, *, http_status: int = 200) -> web.Response:
    """A JSON failure envelope with the given HTTP status."""
    return web.json_response(failure_body(family, code, message), status=http_status)


def file_ok(result: Any = None, message: str = OK_MESSAGE) -> web.Response:
    """Success envelope of the file family."""
    return web.json_response({"success": True, "errorCode": 200, "message": message, "result": result})


def ruoyi_ok(**fields: Any) -> web.Response:
    """Success envelope of the RuoYi family, with extra top-level fields."""
    return web.json_response({"msg": OK_MESSAGE, "code": 200, **fields})


def datahub_ok(data: Any = None, message: str = OK_MESSAGE, *, code: int = 200) -> web.Response:
    """Success envelope of the datahub family (some seed examples show `code` 0 on success)."""
    return web.json_response({"code": code, "success": True, "message": message, "data": data})


def envelope_ok(body: Any) -> bool | None:
    """Whether a parsed response body is a success envelope; None when it is no envelope."""
    if not isinstance(body, dict):
        return None
    if "success" in body:
        return body["success"] is True
    if "code" in body:
        return bool(body["code"] == 200)
    return None
