"""`/api/file/user/*`: the SFTP account of a space (protocol.md §3, §4; seed lines 7047-7150, 24369-24503)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .accounts import SftpAccount, account_username
from .envelopes import file_ok
from .fields import invalid, read_json
from .files_api import caller_space, require_own_id
from .state import LOG_FIELDS, STATE, USER

#: The port queryUserInfo reports when the emulator runs no SFTP server.
DEFAULT_SFTP_PORT = 2222


def _account_json(request: web.Request, account: SftpAccount) -> dict[str, str]:
    port = request.app[STATE].config.sftp_port or DEFAULT_SFTP_PORT
    # An empty address tells the client to use the platform URL's host (seed line 24470).
    return {
        "username": account.username,
        "password": account.password,
        "protocol": "sftp",
        "address": "",
        "port": str(port),
    }


async def query_user_info(request: web.Request) -> web.Response:
    """`queryUserInfo`: the SFTP account of the private (or public) space, made on first use."""
    state, user = request.app[STATE], request[USER]
    fields = await read_json(request)
    require_own_id("userId", fields.user_id("userId"), user)
    svc_type = fields.string("svcType")
    public = fields.boolean("isPublic")
    request[LOG_FIELDS].update(svcType=svc_type, isPublic=public)
    if svc_type != "sftp":
        raise invalid("svcType", "当前仅支持 sftp")
    space = caller_space(user, public)
    account = await asyncio.to_thread(state.accounts.get, space, account_username(space, user.username))
    return file_ok(_account_json(request, account))


async def update_user_info(request: web.Request) -> web.Response:
    """`updateUserInfo`: the platform generates a new SFTP password and returns the account."""
    state, user = request.app[STATE], request[USER]
    fields = await read_json(request)
    public = fields.boolean("isPublic")
    flag = fields.string("password")  # only a "please reset" flag: its value is never used
    request[LOG_FIELDS].update(isPublic=public)
    if not flag:
        raise invalid("password", "不能为空")
    space = caller_space(user, public)
    account = await asyncio.to_thread(state.accounts.reset, space, account_username(space, user.username))
    return file_ok(_account_json(request, account))


def add_routes(app: web.Application) -> None:
    """Register the SFTP account routes."""
    app.router.add_post("/api/file/user/queryUserInfo", query_user_info)
    app.router.add_post("/api/file/user/updateUserInfo", update_user_info)
