"""`hubsync`: argument parsing, logging, exit codes. The commands live in commands.py."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from transfer.errors import AuthFailed, ConfigError, JournalError, JournalUnusable, TransferError

from . import commands
from .config import Config, load_config, parse_size
from .targets import explain

log = logging.getLogger("hubsync")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default=default, help="config file (default: $HUBSYNC_CONFIG)")
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print JSON lines instead of text")
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubsync", description="Sync folders into the compute platform.")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, top=False)
        return p

    add("login", "log in, print user, userId and token expiry")
    p = add("sync", "make REMOTE hold every file under SRC")
    p.add_argument("source", metavar="SRC")
    p.add_argument("remote", metavar="REMOTE")
    p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    p.add_argument("--delete", action="store_true", help="also delete remote files that SRC no longer has")
    p.add_argument("--transfers", type=int, metavar="N", help="files in flight (default 4)")
    p.add_argument("--chunk-size", metavar="SIZE", help="e.g. 8MiB (default 8MiB)")
    p.add_argument("--transport", choices=["auto", "http", "sftp"])
    p.add_argument("--via", choices=["staged", "direct"], help="datahub only (default: [datahub] via, staged)")
    p.add_argument("--create-version", metavar="NAME")
    p.add_argument("--parent", metavar="VER")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="repeatable, .gitignore-style")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links that lead outside SRC (default: skip them, with a note)")
    add("daemon", "run every [[watch]] job of the config until SIGTERM")
    add("status", "what the journal holds: jobs, files, errors")
    p = add("ls", "list a remote folder")
    p.add_argument("remote", metavar="REMOTE")
    p = add("emulator", "run the stand-in platform on loopback")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    add("demo", "the self-contained demonstration")
    return parser


def _apply_flags(config: Config, args: argparse.Namespace) -> None:
    try:
        if getattr(args, "transfers", None) is not None:
            config.transfer.transfers = args.transfers
        if getattr(args, "chunk_size", None):
            config.transfer.chunk_size = parse_size(args.chunk_size)
    except ValueError as exc:
        raise ConfigError(f"invalid option: {exc}") from exc


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command; SIGINT/SIGTERM cancel it cleanly (journal kept) and exit 130."""

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        interrupted = False

        def stop() -> None:
            nonlocal interrupted
            interrupted = True
            if task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            return await coro
        except asyncio.CancelledError:
            if interrupted:
                return commands.EXIT_INTERRUPTED
            raise

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """The `hubsync` command; a reader that goes away (`| head -1`) ends it quietly with 141."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # buffered output meets a closed pipe here at the latest
    except BrokenPipeError:
        # The Python docs' recipe: point stdout at devnull so the flush at exit cannot raise
        # again. 141 = 128 + SIGPIPE, what a C tool killed by the closed pipe reports.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return commands.EXIT_PIPE
    return code


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:  # the emulator has its own options
        from emulator.cli import main as emulator_main

        return emulator_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    out = commands.Output(args.json, args.quiet)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo()
        config, warnings = load_config(args.config)
        for warning in warnings if args.command != "daemon" else []:  # the daemon logs them as JSON
            out.warn(warning)
        _apply_flags(config, args)
        if args.command == "status":
            return commands.cmd_status(config, out)
        if args.command == "login":
            return _run(commands.cmd_login(config, out))
        if args.command == "ls":
            return _run(commands.cmd_ls(config, out, args.remote))
        if args.command == "sync":
            code = _run(commands.cmd_sync(config, out, args))
            if code == commands.EXIT_INTERRUPTED:
                out.warn("interrupted: progress is kept in the journal; run the same command to resume")
            return code
        if args.command == "daemon":
            from .daemon.runner import main as daemon_main

            return daemon_main(config, args.config, args.verbose, warnings=warnings)
    except ConfigError as exc:
        out.warn(f"hubsync: {explain(exc)}")
        return commands.EXIT_USAGE
    except AuthFailed as exc:
        out.warn(f"hubsync: authentication failed: {exc}")
        return commands.EXIT_AUTH
    except JournalUnusable as exc:  # a read-only state dir, a journal of a newer hubsync
        out.warn(f"hubsync: {exc}")
        return commands.EXIT_USAGE
    except JournalError as exc:  # the state dir failed under the run (a full disk): nothing was half-written
        out.warn(f"hubsync: {exc}")
        return commands.EXIT_FAILED
    except TransferError as exc:
        out.warn(f"hubsync: {explain(exc)}")
        return commands.EXIT_FAILED
    except KeyboardInterrupt:
        return commands.EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # main() ends quietly
    # The last resort: a bug shows one line, not a traceback (-vv logs the traceback).
    except Exception as exc:  # noqa: BLE001 - nothing else is left to handle it, and it must not crash visibly
        log.debug("internal error", exc_info=True)
        out.warn(f"hubsync: internal error (a bug, please report it; -vv shows the traceback):"
                 f" {type(exc).__name__}: {exc}")
        return commands.EXIT_FAILED
    parser.error(f"unknown command {args.command}")
    return commands.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
