"""The emulator's aiohttp application, and a helper that serves it on a TCP port."""

from __future__ import annotations

from aiohttp import web

from . import datahub_api, datahub_data_api, file_user_api, files_api, ruoyi_api
from .config import EmulatorConfig
from .middleware import CONTROL_PREFIX, gate_middleware, log_middleware
from .state import STATE, EmulatorState


def build_app(config: EmulatorConfig) -> web.Application:
    """The platform's HTTP API as protocol.md's house reading describes it, plus test controls."""
    app = web.Application(middlewares=[log_middleware, gate_middleware])
    app[STATE] = EmulatorState.create(config)
    ruoyi_api.add_routes(app)
    files_api.add_routes(app)
    file_user_api.add_routes(app)
    datahub_api.add_routes(app)
    datahub_data_api.add_routes(app)
    app.router.add_get(CONTROL_PREFIX + "faults", _get_faults)
    app.router.add_post(CONTROL_PREFIX + "faults", _set_faults)
    app.router.add_post(CONTROL_PREFIX + "expire-tokens", _expire_tokens)
    app.on_startup.append(_open_log)
    app.on_startup.append(_resume_jobs)
    app.on_cleanup.append(_stop_jobs)
    app.on_cleanup.append(_close_log)
    return app


async def start_server(config: EmulatorConfig, *, shutdown_timeout: float = 0.5) -> tuple[web.AppRunner, int]:
    """Serve `build_app(config)` on config.host/config.port; returns the runner and the real port.

    `shutdown_timeout` bounds how long `runner.cleanup()` lets pending requests finish before
    cancelling them.
    """
    runner = web.AppRunner(build_app(config), access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1])
    return runner, port


async def _open_log(app: web.Application) -> None:
    app[STATE].log.open()


async def _close_log(app: web.Application) -> None:
    app[STATE].log.close()


async def _resume_jobs(app: web.Application) -> None:
    app[STATE].jobs.resume()


async def _stop_jobs(app: web.Application) -> None:
    await app[STATE].jobs.close()


# -- test controls (not part of the platform; no token needed, never logged) -------------------


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.faults.public_fields())


async def _set_faults(request: web.Request) -> web.Response:
    """Set the fault switches named in a JSON object, e.g. `{"busy_rate": 0.5, "seed": 1}`."""
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        request.app[STATE].config.faults.update(changes)
    except ValueError as e:
        return web.json_response({"error": str(e)}, status=400)
    return web.json_response(request.app[STATE].config.faults.public_fields())


async def _expire_tokens(request: web.Request) -> web.Response:
    """Invalidate every token issued so far (as if all had just expired)."""
    request.app[STATE].tokens.rotate()
    return web.json_response({"expired": True})
