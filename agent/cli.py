"""`hubsync`: argument parsing, logging, exit codes. The commands live in commands.py."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from pydantic import ValidationError

from transfer.errors import AuthFailed, ConfigError, JournalError, JournalUnusable, TransferError

from . import __version__, status
from .config import Config, load_config, validation_errors
from .daemon.logs import quiet_libraries
from .output import EXIT_AUTH, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PIPE, EXIT_USAGE, Output

log = logging.getLogger("hubsync")


REMOTES = """remotes:
  private:/path/dir               the user's private file space
  public:/path/dir                the tenant's public file space
  KIND:ASSET@VERSION[:/path]      a datahub asset version (KIND: dataset, model, algo, image;
                                  ASSET and VERSION by name or 32-hex id; path inside the version)"""

EXAMPLES = {
    "top": """examples:
  hubsync login
  hubsync sync ./data private:/datasets/cifar
  hubsync --json status""",
    "check": """examples:
  hubsync check ./data private:/datasets/cifar
  hubsync check ./data private:/datasets/cifar --download --transfers 8
  hubsync -q --json check ./cifar dataset:cifar@v3 --download""",
    "login": """examples:
  hubsync login
  HUBSYNC_CONFIG=/etc/hubsync.toml hubsync login
  hubsync --json login""",
    "sync": """examples:
  hubsync sync ./cifar private:/datasets/cifar --exclude '*.tmp'
  hubsync sync ./shared public:/team --delete --dry-run
  hubsync sync ./cifar dataset:cifar@v2 --create-version v2 --bwlimit 20MiB/s""",
    "daemon": """examples:
  hubsync daemon                                 # the [[watch]] jobs of ~/.config/hubsync/config.toml
  hubsync --config /etc/hubsync/config.toml daemon
  systemctl --user start hubsync                 # see systemd/README.md""",
    "status": """examples:
  hubsync status
  hubsync --json status
  HUBSYNC_STATE_DIR=/var/lib/hubsync hubsync status""",
    "ls": """examples:
  hubsync ls private:/datasets
  hubsync ls dataset:cifar@v1:/train
  hubsync --json ls public:/""",
    "emulator": """examples:
  hubsync emulator
  hubsync emulator --port 8700 --root /tmp/platform --sftp-port 2222""",
    "demo": """examples:
  hubsync demo
  make demo""",
}


class UsageError(Exception):
    """A command line argparse refused; `_main` says it (as JSON too with --json) and exits 2."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors come back to `_main` instead of exiting (its subparsers too)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="config file (default: $HUBSYNC_CONFIG, else ~/.config/hubsync/config.toml if it exists)")
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print JSON lines (events, then one summary object) instead of text")
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                        help="-v: each file sent or skipped, every retry and fallback; -vv: debug lines too")
    parser.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print only failures and the summary")


class _CurrentStderr(logging.StreamHandler):
    """Writes each record to sys.stderr as it is then: a live progress display (rich) redirects it
    to print above its bars, where a stream kept from the start would tear them."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="hubsync", description="Sync folders into the compute platform.",
                                     epilog=REMOTES + "\n\n" + EXAMPLES["top"], formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"hubsync {__version__}",
                        help="print the version and exit")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="one of these; hubsync COMMAND --help shows its options")
    sub.required = True

    def add(name: str, help_text: str, *, remotes: bool = False) -> argparse.ArgumentParser:
        epilog = (REMOTES + "\n\n" if remotes else "") + EXAMPLES.get(name, "")
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog or None,
                           formatter_class=formatter)
        _common(p, top=False)
        return p

    add("login", "log in, print user, userId and token expiry")
    p = add("sync", "make REMOTE hold every file under SRC", remotes=True)
    p.add_argument("source", metavar="SRC", help="a local folder (or one file) to send")
    p.add_argument("remote", metavar="REMOTE", help="where it goes: private:/dir, public:/dir or KIND:ASSET@VERSION[:/path]")
    p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    p.add_argument("--delete", action="store_true", help="also delete remote files that SRC no longer has")
    p.add_argument("--transfers", metavar="N", help="files in flight, 1 to 256 (default 4)")
    p.add_argument("--chunk-size", metavar="SIZE", help="64KiB to 1GiB, e.g. 8MiB (default 8MiB)")
    p.add_argument("--bwlimit", metavar="RATE",
                   help="e.g. 20MiB/s; 0 = unlimited (overrides [transfer] bandwidth_limit)")
    p.add_argument("--transport", choices=["auto", "http", "sftp"],
                   help="auto = chunk protocol, SFTP when it is unavailable (default auto)")
    p.add_argument("--via", choices=["staged", "direct"],
                   help="datahub only: stage in private storage + importFiles, or datahub chunk upload"
                        " (default: [datahub] via, staged)")
    p.add_argument("--create-version", metavar="NAME",
                   help="datahub only: create the remote's VERSION if missing (from --parent, default the latest)")
    p.add_argument("--parent", metavar="VER", help="datahub only: the version --create-version starts from")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="repeatable, .gitignore-style")
    p.add_argument("--max-delete", type=int, metavar="N",
                   help="with --delete: delete at most N remote files; a pass that would delete more deletes"
                        " none (default: none when more than half of the remote's files would go)")
    p.add_argument("--trust-journal", action="store_true",
                   help="skip listing the remote: files the journal records as done and whose stat is"
                        " unchanged are not checked against the platform (fast path)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links that lead outside SRC (default: skip them, with a note)")
    p.add_argument("--stats", type=_positive_seconds, default=30.0, metavar="SECONDS",
                   help="when output is not a terminal: a progress line every SECONDS (default 30)")
    add("daemon", "run every [[watch]] job of the config until SIGTERM")
    add("status", "what the journal holds: per remote the last run and files done/failed, errors")
    p = add("check", "compare SRC with REMOTE without sending: missing, other size, only on REMOTE, refused names"
                     " (--download: other content too); exit 0 when they match, 1 when they differ", remotes=True)
    p.add_argument("source", metavar="SRC", help="the local folder")
    p.add_argument("remote", metavar="REMOTE", help="private:/dir, public:/dir or KIND:ASSET@VERSION[:/path]")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="repeatable, .gitignore-style")
    p.add_argument("--download", action="store_true",
                   help="also fetch each remote file of the same size (SFTP for private:/public:, the datahub"
                        " download for a version) and compare md5s; a file whose bytes differ is 'content'")
    p.add_argument("--transfers", metavar="N", help="with --download: files read at once, 1 to 256 (default 4)")
    p = add("ls", "list a remote folder", remotes=True)
    p.add_argument("remote", metavar="REMOTE", help="private:/dir, public:/dir or KIND:ASSET@VERSION[:/path]")
    p = add("emulator", "run the stand-in platform on loopback (hubsync emulator --help: its options)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the emulator's options")
    add("demo", "the self-contained demonstration")
    return parser


#: The sync options that set a configuration key, and that key (its rules apply to the option).
_FLAG_KEYS = {"transfers": "transfers", "chunk_size": "chunk_size", "bwlimit": "bandwidth_limit"}


def _apply_flags(config: Config, args: argparse.Namespace) -> None:
    for attr, key in _FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is None or value == "":
            continue
        try:
            setattr(config.transfer, key, value)
        except ValidationError as exc:
            flag = "--" + attr.replace("_", "-")
            raise ConfigError(f"{flag} {value}: {'; '.join(reason for _, _, reason in validation_errors(exc))}") from exc


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
                return EXIT_INTERRUPTED
            raise

    return asyncio.run(main())


def _explain(exc: Exception) -> str:
    """An error's line with the CLI's hints (agent.targets; imported only when there is an error)."""
    from .targets import explain

    return explain(exc)


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
        return EXIT_PIPE
    return code


def _emulator_args(argv: list[str]) -> list[str] | None:
    """The emulator's own arguments (with --json when given before it) if the command is `emulator`."""
    json_mode = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "emulator":
            return (["--json"] if json_mode else []) + argv[i + 1 :]
        if arg == "--json":
            json_mode = True
        elif arg == "--config":
            i += 1
        elif not (arg in ("-q", "--quiet", "--verbose") or arg.startswith("--config=")
                  or (arg.startswith("-v") and set(arg[1:]) == {"v"})):
            return None
        i += 1
    return None


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    emulator_args = _emulator_args(argv)
    if emulator_args is not None:  # the emulator has its own options
        from emulator.cli import main as emulator_main

        return emulator_main(emulator_args)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        command = exc.parser.prog.removeprefix("hubsync").strip()
        return Output("--json" in argv).error(f"{exc.parser.prog}: error: {exc.message}", EXIT_USAGE,
                                                       f"{command + ': ' if command else ''}{exc.message}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[_CurrentStderr()],
    )
    quiet_libraries(args.verbose)
    out = Output(args.json, args.quiet, args.verbose)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(json_mode=args.json)
        config, warnings = load_config(args.config)
        for warning in warnings if args.command != "daemon" else []:  # the daemon logs them as JSON
            out.warn(warning)
        _apply_flags(config, args)
        if args.command == "status":  # the journal only: no engine, aiohttp or asyncssh to import
            return status.cmd_status(config, out)
        from . import commands

        if args.command == "login":
            return _run(commands.cmd_login(config, out))
        if args.command == "check":
            from .check import cmd_check

            return _run(cmd_check(config, out, args))
        if args.command == "ls":
            return _run(commands.cmd_ls(config, out, args.remote))
        if args.command == "sync":
            code = _run(commands.cmd_sync(config, out, args))
            if code == EXIT_INTERRUPTED:
                out.warn("interrupted: progress is kept in the journal; run the same command to resume")
            return code
        if args.command == "daemon":
            from .daemon.runner import main as daemon_main

            def refused(message: str, code: int) -> None:  # stderr holds the daemon's JSON log only
                out.jsonl.print({"event": "error", "message": message, "exit": code})

            return daemon_main(config, args.config, args.verbose, warnings=warnings,
                               on_refused=refused if args.json else None)
    except ConfigError as exc:
        return out.error(f"hubsync: {_explain(exc)}", EXIT_USAGE)
    except AuthFailed as exc:
        return out.error(f"hubsync: authentication failed: {exc}", EXIT_AUTH)
    except JournalUnusable as exc:  # a read-only state dir, a journal of a newer hubsync
        return out.error(f"hubsync: {exc}", EXIT_USAGE)
    except JournalError as exc:  # the state dir failed under the run (a full disk): nothing was half-written
        return out.error(f"hubsync: {exc}", EXIT_FAILED)
    except TransferError as exc:
        return out.error(f"hubsync: {_explain(exc)}", EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # main() ends quietly
    # The last resort: a bug shows one line, not a traceback (-vv logs the traceback).
    except Exception as exc:  # noqa: BLE001 - nothing else is left to handle it, and it must not crash visibly
        log.debug("internal error", exc_info=True)
        return out.error(f"hubsync: internal error (a bug, please report it; -vv shows the traceback):"
                         f" {type(exc).__name__}: {exc}", EXIT_FAILED)
    return out.error(f"hubsync: unknown command {args.command}", EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
