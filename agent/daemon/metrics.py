"""An optional Prometheus text endpoint on loopback (`[daemon] metrics = "127.0.0.1:9464"`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from .scheduler import JobCounts
from .stats import JobStats


@dataclass
class JobView:
    """What the endpoint reads of one job."""

    stats: JobStats
    counts: JobCounts


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(jobs: Iterable[JobView]) -> str:
    """The text exposition format (version 0.0.4)."""
    jobs = list(jobs)
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, value: Callable[[JobView], float]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for j in jobs:
            out.append(f'{name}{{job="{_label(j.stats.name)}"}} {_number(value(j))}')

    family("hubsync_files_sent_total", "counter", "Files sent and confirmed at the remote.", lambda j: j.stats.files_sent)
    family("hubsync_bytes_sent_total", "counter", "Bytes that crossed the network.", lambda j: j.stats.bytes_sent)
    family("hubsync_files_hashed_total", "counter", "Files whose md5 was computed.", lambda j: j.stats.files_hashed)
    family("hubsync_files_deleted_total", "counter", "Remote files deleted (delete = true).", lambda j: j.stats.deleted)
    family("hubsync_failures_total", "counter", "Failed file attempts.", lambda j: j.counts.failed)
    family("hubsync_retries_total", "counter", "File attempts that were retries.", lambda j: j.counts.retries)
    family("hubsync_queue_depth", "gauge", "Files queued (including those waiting for a retry).",
           lambda j: j.counts.queued)
    family("hubsync_active_transfers", "gauge", "Files being sent now.", lambda j: len(j.stats.live))
    family("hubsync_failing_files", "gauge", "Queued files whose last attempt failed.", lambda j: j.counts.failing)
    name = "hubsync_transfer_seconds"
    out.append(f"# HELP {name} Time to send one file.")
    out.append(f"# TYPE {name} histogram")
    for j in jobs:
        job, h = _label(j.stats.name), j.stats.durations
        for bound, count in zip(h.buckets, h.counts, strict=True):
            out.append(f'{name}_bucket{{job="{job}",le="{bound:g}"}} {count}')
        out.append(f'{name}_bucket{{job="{job}",le="+Inf"}} {h.count}')
        out.append(f'{name}_sum{{job="{job}"}} {h.total:.6f}')
        out.append(f'{name}_count{{job="{job}"}} {h.count}')
    return "\n".join(out) + "\n"


class MetricsServer:
    """aiohttp on the configured loopback address; `views` is called per scrape."""

    def __init__(self, address: str, views: Callable[[], Iterable[JobView]]) -> None:
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.views = views
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=render(self.views()).encode("utf-8"),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
