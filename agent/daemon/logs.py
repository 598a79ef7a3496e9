"""JSON lines on stderr: one object per line with ts, level, event and the fields that apply."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from transfer.remotepath import display_values

log = logging.getLogger("hubsync.daemon")


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "event", "message", ...fields}; fields come from extra={"fields": {...}}."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": fields.pop("event", "log"),
        }
        message = record.getMessage()
        if message:
            line["message"] = message
        line.update({k: v for k, v in fields.items() if v is not None})
        if record.exc_info and record.exc_info[0] is not None:
            trace = self.formatException(record.exc_info)
            line["error"] = line.get("error") or trace.splitlines()[-1]
            line["traceback"] = trace  # inside the JSON line: the log stays one object per line
        # Names are logged escaped (surrogate-escaped bytes as \\xff): a line must always encode.
        return json.dumps(display_values(line), ensure_ascii=False, default=str)


def setup_json_logging(verbose: int = 0, stream: IO[str] | None = None) -> None:
    """Route every logger (the engine's, watchdog's, ours) to JSON lines on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    # warnings.warn (watchdog's RuntimeWarnings, deprecations) would print raw text on stderr.
    logging.captureWarnings(True)
    quiet_libraries(verbose)


def quiet_libraries(verbose: int) -> None:
    """Library chatter (asyncssh's every channel, asyncio's selector) stays out unless -vv asks for it."""
    for noisy in ("asyncio", "aiohttp.access", "asyncssh", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def event(level: int, name: str, message: str = "", **fields: Any) -> None:
    """Log one daemon event: `event(logging.INFO, "sent", job=..., path=..., bytes=...)`."""
    log.log(level, message, extra={"fields": {"event": name, **fields}})
