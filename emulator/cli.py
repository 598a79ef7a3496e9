"""`hubsync emulator` / `python -m emulator`: serve the stand-in platform until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from .app import start_server
from .config import EmulatorConfig, EmulatorUser, default_users
from .datahub_store import KINDS, DatahubStore, Kind, Owner
from .faults import Faults


def _user(text: str) -> tuple[str, str, int | None, int | None]:
    """NAME:PASSWORD[:USERID[:TENANTID]]; a password may itself hold ':' (trailing numbers are ids)."""
    name, sep, rest = text.partition(":")
    if not name or not sep or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD[:USERID[:TENANTID]], got {text!r}")
    ids: list[int] = []
    while len(ids) < 2 and ":" in rest:
        head, _, tail = rest.rpartition(":")
        if not tail.isdigit() or not head:
            break
        ids.insert(0, int(tail))
        rest = head
    if len(ids) == 1:
        return name, rest, ids[0], None
    if len(ids) == 2:
        return name, rest, ids[0], ids[1]
    return name, rest, None, None


def _users(specs: list[tuple[str, str, int | None, int | None]]) -> list[EmulatorUser]:
    """Users from --user flags: unnamed ids count up from 5, the tenant defaults to 101."""
    users: list[EmulatorUser] = []
    next_id = 5
    for name, password, user_id, tenant_id in specs:
        if user_id is None:
            taken = {u.user_id for u in users} | {s[2] for s in specs if s[2] is not None}
            while next_id in taken:
                next_id += 1
            user_id = next_id
        users.append(EmulatorUser(name, password, user_id, 101 if tenant_id is None else tenant_id))
    return users


#: What a fresh emulator holds, so that the README's datahub examples work against it as written.
DEFAULT_ASSETS = ("dataset:cifar", "model:bert", "algo:resnet", "image:pytorch")


def _asset(text: str) -> tuple[Kind, str, str]:
    """KIND:NAME[@VERSION] (VERSION default v1)."""
    kind, sep, rest = text.partition(":")
    name, _, version = rest.partition("@")
    if not sep or kind not in KINDS or not name:
        raise argparse.ArgumentTypeError(f"expected KIND:NAME[@VERSION] with KIND one of {', '.join(KINDS)}, got {text!r}")
    return kind, name, version or "v1"


def seed_assets(root: Path, owner: EmulatorUser, specs: list[tuple[Kind, str, str]]) -> list[str]:
    """Create the assets that do not exist yet (a kept --root keeps its own); returns their remotes."""
    store = DatahubStore(root)
    made = []
    for kind, name, version in specs:
        if not any(a.name == name for a in store.assets(kind)):
            store.create_asset(kind, name, Owner(owner.username, owner.user_id, owner.tenant_id),
                               version_names=(version,))
        made.append(f"{kind}:{name}@{version}")
    return made


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a rate is a number in [0, 1]")
    return value


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors come back to `main`, which says them as JSON too with --json."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def _say(obj: dict[str, Any]) -> None:
    """One JSON line on stdout: {"event", "ts" (RFC 3339 UTC), ...}."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    print(json.dumps({"event": obj.pop("event"), "ts": ts, **obj}, ensure_ascii=False), flush=True)


def _fail(text: str, json_mode: bool) -> int:
    if json_mode:
        _say({"event": "error", "message": text.removeprefix("hubsync emulator: ").removeprefix("error: "), "exit": 2})
    print(text, file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The emulator's command line."""
    p = _Parser(
        prog="hubsync emulator", description="Serve the stand-in compute platform on loopback until Ctrl-C or SIGTERM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="it prints its login (user, password, key, URL) at start.\n\nexamples:\n"
               "  hubsync emulator\n  hubsync emulator --port 8700 --root /tmp/platform --sftp-port 2222\n"
               "  hubsync emulator --asset dataset:mnist@v1 --latency 0.2   # slow: see the progress")
    p.add_argument("--json", action="store_true",
                   help="print JSON lines: a `listening` object (URL, login, datahub), `stopped` at the end")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8700, help="HTTP port (default 8700; 0 picks a free port)")
    p.add_argument("--root", type=Path, help="data directory (default: a temp dir, removed on exit)")
    p.add_argument("--sftp-port", type=_port, help="serve SFTP on this port (0 picks a free one); queryUserInfo reports it")
    p.add_argument("--sftp-reported-port", type=_port, metavar="PORT",
                   help="serve no SFTP but have queryUserInfo report PORT, where another server (an OpenSSH sshd"
                        " for the accounts of ROOT/sftp_accounts.json) serves it")
    p.add_argument("--password-key", default="0123456789abcdef", help="the login AES key (16/24/32 bytes)")
    p.add_argument(
        "--user",
        type=_user,
        action="append",
        metavar="NAME:PASSWORD[:USERID[:TENANTID]]",
        help="repeatable; replaces the default users alice and bob",
    )
    p.add_argument("--asset", type=_asset, action="append", metavar="KIND:NAME[@VERSION]",
                   help="repeatable; a datahub asset the first user owns, with one empty version (default v1);"
                        f" replaces the defaults {', '.join(DEFAULT_ASSETS)}")
    p.add_argument("--no-assets", action="store_true", help="start with an empty datahub")
    p.add_argument("--token-lifetime", type=float, default=3600.0, metavar="SECONDS", help="login tokens expire after this (default 3600)")
    p.add_argument("--log", type=Path, help="request log (default: ROOT/requests.jsonl)")
    faults = p.add_argument_group("faults")
    faults.add_argument("--chunk-error-rate", type=_rate, default=0.0, help="share of chunk uploads answered HTTP 500 (0-1)")
    faults.add_argument("--reset-rate", type=_rate, default=0.0, help="share of chunk uploads whose connection is reset (0-1)")
    faults.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="delay added to every request")
    faults.add_argument("--busy-rate", type=_rate, default=0.0, help="share of requests answered 503 + Retry-After (0-1)")
    faults.add_argument("--retry-after", type=int, default=1, metavar="SECONDS", help="the Retry-After of those 503s (default 1)")
    faults.add_argument("--chunk-api-off", action="store_true", help="the chunk endpoints answer 404 (clients fall back to SFTP)")
    faults.add_argument("--html-errors", action="store_true",
                        help="the injected 500s and 503s are a proxy's long HTML page, not an envelope")
    faults.add_argument("--lenient-paths", action="store_true",
                        help="take \\ literally and resolve .. inside the space, as a lax platform would")
    faults.add_argument("--seed", type=int, help="random seed of the faults (repeatable runs)")
    datahub = p.add_argument_group("datahub pace")
    datahub.add_argument("--datahub-create-delay", type=float, default=0.3, metavar="SECONDS", help="time a new version takes to be created")
    datahub.add_argument("--datahub-import-delay", type=float, default=0.2, metavar="SECONDS", help="time importFiles takes to copy")
    datahub.add_argument("--datahub-assemble-delay", type=float, default=0.1, metavar="SECONDS", help="time a direct upload takes to assemble")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground; 0 after SIGTERM/SIGINT, 2 on a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        return _fail(f"{exc.parser.prog}: error: {exc.message}", "--json" in argv)
    if args.sftp_port is not None and args.sftp_reported_port is not None:
        return _fail("hubsync emulator: --sftp-port and --sftp-reported-port exclude each other", args.json)
    temp_root = args.root is None
    root = Path(tempfile.mkdtemp(prefix="hubsync-emulator-")) if temp_root else args.root
    try:
        config = EmulatorConfig(
            root=root,
            host=args.host,
            port=args.port,
            users=_users(args.user) if args.user else default_users(),
            password_key=args.password_key,
            token_lifetime=args.token_lifetime,
            log_path=args.log,
            sftp_port=args.sftp_port if args.sftp_port is not None else args.sftp_reported_port,
            faults=Faults(
                seed=args.seed,
                chunk_error_rate=args.chunk_error_rate,
                reset_rate=args.reset_rate,
                latency=args.latency,
                busy_rate=args.busy_rate,
                retry_after=args.retry_after,
                chunk_api_off=args.chunk_api_off,
                html_errors=args.html_errors,
                lenient_paths=args.lenient_paths,
                datahub_create_delay=args.datahub_create_delay,
                datahub_import_delay=args.datahub_import_delay,
                datahub_assemble_delay=args.datahub_assemble_delay,
            ),
        )
    except ValueError as e:
        return _fail(f"hubsync emulator: {e}", args.json)
    specs = [] if args.no_assets else args.asset or [_asset(a) for a in DEFAULT_ASSETS]
    assets = seed_assets(root, config.users[0], specs)
    try:
        asyncio.run(_serve(config, assets, serve_sftp=args.sftp_port is not None, json_mode=args.json))
    except OSError as e:
        return _fail(f"hubsync emulator: cannot listen on {args.host}:{args.port}: {e}", args.json)
    finally:
        if temp_root:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def login_lines(config: EmulatorConfig, url: str, assets: list[str]) -> list[str]:
    """What a user needs to point hubsync at this emulator: it holds no real secret."""
    user = config.users[0]
    lines = [f"login: user {user.username}, password {user.password}, key {config.password_key}, url {url}",
             "  export HUBSYNC_URL=" + url, f"  export HUBSYNC_USERNAME={user.username}",
             f"  export HUBSYNC_PASSWORD={shlex.quote(user.password)}", f"  export HUBSYNC_PASSWORD_KEY={config.password_key}"]
    lines += [f"other user: {u.username}, password {u.password}" for u in config.users[1:]]
    if assets:
        lines.append("datahub: " + ", ".join(assets))
    return lines


def login_object(config: EmulatorConfig, url: str, assets: list[str]) -> dict[str, Any]:
    """`login_lines` as the --json start object."""
    user = config.users[0]
    return {"event": "listening", "url": url, "root": str(config.root), "sftp_port": config.sftp_port,
            "user": user.username, "password": user.password, "password_key": config.password_key,
            "env": {"HUBSYNC_URL": url, "HUBSYNC_USERNAME": user.username, "HUBSYNC_PASSWORD": user.password,
                    "HUBSYNC_PASSWORD_KEY": config.password_key},
            "other_users": [{"user": u.username, "password": u.password} for u in config.users[1:]],
            "datahub": assets}


async def _serve(config: EmulatorConfig, assets: list[str], *, serve_sftp: bool, json_mode: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sftp = None
    if serve_sftp and config.sftp_port is not None:
        from .sftp_server import start_sftp_server

        sftp, config.sftp_port = await start_sftp_server(config, config.sftp_port)
    runner, port = await start_server(config, shutdown_timeout=2.0)
    url = f"http://{config.host}:{port}"
    try:
        if json_mode:
            _say(login_object(config, url, assets))
        else:
            print(f"hubsync emulator listening on {url} root={config.root}", flush=True)
            if sftp is not None:
                print(f"hubsync emulator sftp on {config.host}:{config.sftp_port}", flush=True)
            print("\n".join(login_lines(config, url, assets)), flush=True)
        await stop.wait()
        if json_mode:
            _say({"event": "stopped"})
    finally:
        await runner.cleanup()
        if sftp is not None:
            sftp.close()
            await sftp.wait_closed()
