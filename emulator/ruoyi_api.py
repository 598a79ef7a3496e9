"""`/prod-api/*`: login and the current user (protocol.md §2)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from .auth import decrypt_password
from .config import EmulatorUser
from .envelopes import ApiError, ruoyi_ok
from .fields import read_json
from .state import LOG_FIELDS, STATE, USER

#: RuoYi's answer to a wrong user name or password (user.password.not.match).
LOGIN_FAILED = "用户不存在/密码错误"


async def login(request: web.Request) -> web.Response:
    """`POST /prod-api/login`: check the house cipher of the password, issue a token."""
    state = request.app[STATE]
    config = state.config
    fields = await read_json(request)
    username = fields.string("username")
    cipher = fields.string("password")
    request[LOG_FIELDS]["username"] = username
    user = config.user_by_name(username)
    clear = decrypt_password(cipher, config.password_key)
    if user is None or clear is None or not hmac.compare_digest(clear.encode(), user.password.encode()):
        raise ApiError(500, LOGIN_FAILED)
    return ruoyi_ok(token=state.tokens.issue(user, config.effective_token_lifetime()))


async def get_info(request: web.Request) -> web.Response:
    """`GET /prod-api/getInfo`: the caller's user record (userId as an integer here)."""
    user = request[USER]
    return ruoyi_ok(
        clusterType="traditionalScenario",
        clusterMode="cluster-manager",
        permissions=[],
        roles=["sys_user"],
        user=_user_record(user),
    )


def _user_record(user: EmulatorUser) -> dict[str, Any]:
    """A trimmed RuoYi SysUser, shaped like the seed's example (lines 760-900)."""
    return {
        "userId": user.user_id,
        "userName": user.username,
        "nickName": user.username,
        "deptId": user.tenant_id,
        "email": "",
        "phonenumber": "",
        "sex": "2",
        "avatar": "",
        "status": "0",
        "delFlag": "0",
        "roles": [
            {
                "roleId": 4007,
                "roleName": "普通用户",
                "roleKey": "sys_user",
                "roleSort": "2",
                "dataScope": "5",
                "status": "0",
                "admin": False,
            }
        ],
        "roleId": 4007,
        "uid": 2000 + user.user_id,
        "origin": 0,
        "isCloudUser": 2,
        "tenantId": user.tenant_id,
        "tenantName": f"tenant{user.tenant_id}",
        "admin": False,
    }


def add_routes(app: web.Application) -> None:
    """Register the RuoYi routes."""
    app.router.add_post("/prod-api/login", login)
    app.router.add_get("/prod-api/getInfo", get_info)
