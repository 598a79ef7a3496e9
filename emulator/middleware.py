"""Request pipeline: request log (outermost), then faults, then authentication.

Order of the gate, and why: latency applies to every call; a switched-off chunk API answers 404
before anything else (the route does not exist); busy/500/reset faults come before the token
check (a platform in trouble fails before it authenticates); then the token.

Datahub downloads (GETs of a tempUrl) pass the same gate but are no envelope family: their
refusals are plain HTTP answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .envelopes import ApiError, Family, envelope_ok, error_response, family_of
from .faults import Faults
from .state import FAULT, LOG_FIELDS, STATE, USER, EmulatorState
from .storage import LENIENT_PATHS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTROL_PREFIX = "/__emulator__/"
LOGIN_PATH = "/prod-api/login"
UPLOAD_CHUNK_PATH = "/api/file/file/uploadFile"
DATAHUB_UPLOAD_PATH = "/api/market/datahub/data/uploadFile"
#: Calls whose connection `reset_rate` aborts mid-body: the two chunk uploads.
RESET_PATHS = frozenset({UPLOAD_CHUNK_PATH, DATAHUB_UPLOAD_PATH})
#: Datahub tempUrls (datahub_data_api.DOWNLOAD_PREFIX; not imported: the gate knows no routes).
DOWNLOAD_PREFIX = "/api/aiosFile/"
#: The FAULT mark of a download whose connection the handler aborts partway through the body.
DOWNLOAD_CUT = "download_cut"
#: The md5 chunk protocol; `chunk_api_off` removes exactly these routes.
CHUNK_PATHS = frozenset({"/api/file/file/checkFileExist", UPLOAD_CHUNK_PATH, "/api/file/file/mergeFile"})
SIMPLE_UPLOAD_PATHS = frozenset({"/api/file/file/uploadFolder", "/api/file/file/uploadPublicFolder"})
#: Calls that `chunk_error_rate` answers with HTTP 500.
CHUNK_ERROR_PATHS = CHUNK_PATHS | SIMPLE_UPLOAD_PATHS | {DATAHUB_UPLOAD_PATH}
_BUSY_MESSAGE = "系统繁忙，请稍后重试"
_ERROR_MESSAGE = "系统内部错误"
_RESET_READ_LIMIT = 4 << 20
#: What `html_errors` answers instead of an envelope: a gateway's error page, long and multi-line.
HTML_ERROR_PAGE = ("<!DOCTYPE html>\n<html>\n<head><title>{status} Internal Server Error</title></head>\n<body>\n"
                   "<center><h1>{status} Internal Server Error</h1></center>\n"
                   + "<!-- a padding to disable MSIE and Chrome friendly error page -->\n" * 60
                   + "<hr><center>nginx</center>\n<p>end of the error page</p>\n</body>\n</html>\n")


class InjectedReset(Exception):
    """The connection was aborted on purpose; there is no answer to send."""


@web.middleware
async def log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer ApiError with its envelope, and log every API request as one JSON line."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    state = request.app[STATE]
    request[LOG_FIELDS] = {}
    started = time.time()
    try:
        response = await handler(request)
    except ApiError as e:
        response = error_response(family_of(request.path), e.code, e.message, http_status=e.http_status)
    except web.HTTPException as e:
        _write_log(state, request, started, e.status, False)
        raise
    except (InjectedReset, ConnectionError):
        # Reset on purpose, or the client went away mid-body: there is no one to answer.
        _write_log(state, request, started, None, False)
        return web.Response(status=500)  # the transport is closed: this is never sent
    except asyncio.CancelledError:
        _write_log(state, request, started, None, False)
        raise
    except Exception:
        _write_log(state, request, started, 500, False)
        raise
    _write_log(state, request, started, response.status, _response_ok(response))
    return response


@web.middleware
async def gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject configured faults, then require a valid Bearer token on business calls."""
    family = family_of(request.path)
    download = request.path.startswith(DOWNLOAD_PREFIX)
    if family is None and not download:
        return await handler(request)
    state = request.app[STATE]
    faults = state.config.faults
    if faults.latency > 0:
        await asyncio.sleep(faults.latency)
    path = request.path
    if faults.chunk_api_off and path in CHUNK_PATHS:
        request[FAULT] = "chunk_api_off"
        return _spring_not_found(path)
    if faults.inject_error(faults.busy_rate):
        request[FAULT] = "busy"
        status = faults.busy_status
        if faults.html_errors:
            response = _html_error(status)
        elif download:
            response = web.Response(status=status, text=_BUSY_MESSAGE)
        else:
            response = error_response(family, status, _BUSY_MESSAGE, http_status=status)
        response.headers["Retry-After"] = str(int(faults.retry_after))
        return response
    if path in CHUNK_ERROR_PATHS and faults.inject_error(faults.chunk_error_rate):
        request[FAULT] = "chunk_error"
        return _html_error(500) if faults.html_errors else error_response(family, 500, _ERROR_MESSAGE, http_status=500)
    if path in RESET_PATHS and faults.inject_error(faults.reset_rate):
        request[FAULT] = "reset"
        await _abort_midway(request, faults)
    if download and faults.inject_error(faults.download_error_rate):
        request[FAULT] = "download_error"
        return web.Response(status=500, text=_ERROR_MESSAGE)
    if download and faults.inject_error(faults.download_cut_rate):
        request[FAULT] = DOWNLOAD_CUT  # the handler cuts the body short (it knows the file's size)
    else:
        faults.clean_call()
    LENIENT_PATHS.set(faults.lenient_paths)  # this request's task only (a context variable)
    if path != LOGIN_PATH:
        denied = _authenticate(request, state, family)
        if denied is not None:
            return denied
    return await handler(request)


def _html_error(status: int) -> web.Response:
    return web.Response(status=status, text=HTML_ERROR_PAGE.format(status=status), content_type="text/html")


def _authenticate(request: web.Request, state: EmulatorState, family: Family | None) -> web.Response | None:
    """Set the caller from the Bearer token; or the 401 answer, in one of the two house forms.

    A download (family None) is refused with a plain HTTP 401.
    """
    header = request.headers.get("Authorization", "")
    token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
    claims = state.tokens.verify(token) if token else None
    user = state.config.user_by_id(claims.user_id) if claims else None
    if claims is not None and user is not None and user.username == claims.username:
        request[USER] = user
        return None
    message = f"请求访问：{request.path}，认证失败，无法访问系统资源"
    if family is None:
        return web.Response(status=401, text=message)
    in_body = state.config.faults.auth_error_in_body()
    return error_response(family, 401, message, http_status=200 if in_body else 401)


async def _abort_midway(request: web.Request, faults: Faults) -> None:
    """Read part of the body, then reset the connection without an answer."""
    # Without a Content-Length (chunked encoding) read within the first 64 KiB.
    length = request.content_length or 64 * 1024
    want = faults.reset_point(min(length, _RESET_READ_LIMIT))
    if want:
        await request.content.read(want)
    if request.transport is not None:
        request.transport.abort()
    raise InjectedReset()


def _spring_not_found(path: str) -> web.Response:
    """What Spring answers for a route that does not exist."""
    body = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "status": 404,
        "error": "Not Found",
        "path": path,
    }
    return web.json_response(body, status=404)


def _response_ok(response: web.StreamResponse) -> bool:
    if not 200 <= response.status < 300:
        return False
    if not isinstance(response, web.Response):
        return response.prepared  # a download streamed by its handler: it was served
    if response.content_type != "application/json":
        return False
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return False
    try:
        return envelope_ok(json.loads(body)) is True
    except ValueError:
        return False


def _write_log(
    state: EmulatorState, request: web.Request, started: float, status: int | None, ok: bool
) -> None:
    user = request.get(USER)
    entry: dict[str, Any] = {
        "ts": round(started, 3),
        "method": request.method,
        "path": request.path,
        "status": status,
        "ok": ok,
        "user_id": user.user_id if user is not None else None,
        "fault": request.get(FAULT),
    }
    # An endpoint field never overwrites a common one.
    entry |= {k: v for k, v in (request.get(LOG_FIELDS) or {}).items() if k not in entry}
    state.log.write(entry)
