"""The daemon's lifecycle: start the jobs, run the loop, reload on SIGHUP, stop cleanly on SIGTERM.

Stopping has two levels (as rclone's): SIGTERM/SIGINT stops taking work at once — no new
file starts — and lets the files in flight finish for `grace_seconds`; what is left is then
cancelled (its acknowledged chunks are in the journal, so the next start resumes it). A
second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transfer.bandwidth import TokenBucket
from transfer.engine import SendItem
from transfer.errors import AuthFailed, ConfigError, JournalError, JournalUnusable, Retryable, TransferError
from transfer.pacer import RetryNote

from ..config import Config, load_config
from ..service import Services
from .authpause import AuthPause
from .job import Job, JobPlan
from .logs import event as log_event
from .logs import setup_json_logging
from .metrics import JobView, MetricsServer
from .notify import Notifier
from .scheduler import Scheduler, SchedulerSettings
from .stats import JobSink, JobStats
from .status import StateLock, remove_snapshot, snapshot_path, write_snapshot
from .target import JobTarget, parse_job_remote
from .timetable import UNLIMITED, Timetable
from .watcher import OverflowAlarm

STATUS_PERIOD = 1.0
log = logging.getLogger("hubsync.daemon")
_RESTART_ONLY = ("platform", "transfer", "sftp", "state", "datahub")


def plan_jobs(config: Config) -> list[JobPlan]:
    """Validate every [[watch]] table; a ConfigError names the key and the reason."""
    if not config.watch:
        raise ConfigError("no [[watch]] job in the configuration: add one (see config.example.toml)")
    plans: list[JobPlan] = []
    names: set[str] = set()
    for i, watch in enumerate(config.watch):
        where = f"watch.{i}"
        remote = parse_job_remote(watch.remote, where)
        source = Path(watch.source).expanduser()
        if not source.is_dir():
            raise ConfigError(f"{where}.source = {watch.source!r}: not a folder (does it exist?)")
        name = watch.job_name()
        if name in names:
            raise ConfigError(f"{where}.name: two jobs are called {name!r}; give each [[watch]] its own name")
        names.add(name)
        plans.append(JobPlan(name, source.resolve(), remote, watch))
    return plans


def _settings(config: Config) -> SchedulerSettings:
    d = config.daemon
    return SchedulerSettings(lanes=config.transfer.transfers, order=d.order, retry_seconds=d.retry_seconds,
                             retry_max_seconds=d.retry_max_seconds)


class Daemon:
    """Runs every job of the config in one process, sharing one Services (journal, client, limits)."""

    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = Notifier()
        self.jobs: dict[str, Job] = {}
        self.services: Services | None = None
        self.scheduler: Scheduler | None = None
        self.alarm = OverflowAlarm()
        self.timetable: Timetable | None = None
        self.metrics: MetricsServer | None = None
        self.slots: asyncio.Semaphore | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._reload = False
        self._running = False
        self._task: asyncio.Task[int] | None = None
        self._started = time.time()
        self._last_status = ""
        d = config.daemon
        self.auth = AuthPause(d.login_retry_seconds, d.login_retry_max_seconds)
        self._password_stamp: tuple[int, ...] | None = None
        self._job_errors: dict[str, str] = {}

    # -- the whole life ------------------------------------------------------------------------
    async def run(self) -> int:
        plans = await asyncio.to_thread(plan_jobs, self.config)
        state_dir = self.config.state_dir()
        lock = StateLock(state_dir)
        if not await asyncio.to_thread(lock.acquire):
            raise ConfigError(f"another hubsync daemon (pid {lock.holder()}) is running on the state dir {state_dir}")
        self._task = asyncio.current_task()
        try:
            return await self._run(plans, state_dir)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log_event(logging.INFO, "stopped", "stopped while starting up")
            return 0
        finally:
            lock.release()

    async def _run(self, plans: list[JobPlan], state_dir: Path) -> int:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._signals()  # from the start: a SIGTERM while starting up is a clean stop too
        services = self.services = await Services.open(self.config, on_retry=_log_retry)
        try:
            # Log in now; refused credentials pause here (the process stays, status says why).
            plans = await self._first_login(services, plans, snapshot_path(state_dir))
            self._bandwidth(services)
            self.slots = asyncio.Semaphore(self.config.transfer.transfers)
            self.scheduler = Scheduler(_settings(self.config), self._send, on_auth_failed=self._batch_refused)
            self.alarm.attach()
            for plan in plans:
                await self._add(plan)
            self.scheduler.start()
            if self.config.daemon.metrics:
                self.metrics = MetricsServer(self.config.daemon.metrics, self._views)
                await self.metrics.start()
            text = f"watching {len(self.jobs)} folder(s)"
            self._running = True
            self.notifier.ready(text)
            log_event(logging.INFO, "started", text, pid=os.getpid(), jobs=[
                {"job": j.name, "source": str(j.root), "remote": str(j.target), "watch":
                 "polling" if j.mode.polling else "inotify"} for j in self.jobs.values()],
                metrics=self.config.daemon.metrics or None)
            await self._main_loop(snapshot_path(state_dir))
            return await self._shutdown(snapshot_path(state_dir))
        finally:
            self.alarm.detach()
            for job in list(self.jobs.values()):
                await job.stop()
            if self.metrics is not None:
                await self.metrics.stop()
            await services.close()
            self.notifier.close()

    async def _shutdown(self, status_file: Path) -> int:
        assert self.scheduler is not None
        self.notifier.stopping()
        grace = self.config.daemon.grace_seconds
        log_event(logging.INFO, "stopping", f"finishing the files in flight (up to {grace:g}s)")
        for job in self.jobs.values():
            job.engine.draining = True
        stops = [job.stop() for job in self.jobs.values()]
        drained, _ = await asyncio.gather(self.scheduler.drain(grace), asyncio.gather(*stops))
        if not drained:
            log_event(logging.WARNING, "grace_over", "files still in flight were interrupted; the next start"
                      " resumes them from the journal")
        await asyncio.to_thread(remove_snapshot, status_file)
        log_event(logging.INFO, "stopped", queued=self.scheduler.depth)
        return 0

    # -- the loop ------------------------------------------------------------------------------
    async def _main_loop(self, status_file: Path) -> None:
        assert self._wake is not None
        last_ping = last_status = last_timetable = 0.0
        while not self._stopping:
            if self._reload:
                self._reload = False
                await self._reload_config()
            for job in list(self.jobs.values()):
                await self._tick(job)
            if self.auth.paused:
                await self._auth_tick()
            now = time.monotonic()
            interval = self.notifier.watchdog_interval
            if interval and now - last_ping >= interval:
                self.notifier.watchdog()
                last_ping = now
            if now - last_status >= STATUS_PERIOD:
                await self._write_status(status_file)
                last_status = now
            if self.timetable is not None and now - last_timetable >= 20:
                self._apply_timetable()
                last_timetable = now
            timeout = STATUS_PERIOD if interval is None else min(STATUS_PERIOD, interval)
            for job in self.jobs.values():
                deadline = job.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, deadline - now)
            if self.auth.paused:
                timeout = min(timeout, self.auth.next_attempt - now)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, timeout))
            except TimeoutError:
                pass
            self._wake.clear()

    async def _tick(self, job: Job) -> None:
        """One job's events; its trouble never stops the others (a bug is logged with its traceback, once)."""
        try:
            await job.tick()
        except OSError as exc:
            log_event(logging.ERROR, "job_error", job=job.name, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug in one job: the daemon and the other jobs go on
            text = f"{type(exc).__name__}: {exc}"
            if self._job_errors.get(job.name) != text:  # the same bug every tick: its traceback once
                self._job_errors[job.name] = text
                log.error("internal error in job %s: %s", job.name, text, exc_info=True,
                          extra={"fields": {"event": "internal_error", "job": job.name}})

    # -- refused logins ----------------------------------------------------------------------------
    async def _first_login(self, services: Services, plans: list[JobPlan], status_file: Path) -> list[JobPlan]:
        """Log in before the jobs start; while refused, retry with back-off (SIGHUP may bring new jobs)."""
        assert self._wake is not None
        while True:
            try:
                await services.namespace()
                return plans
            except AuthFailed as exc:
                self._refused(exc)
            except Retryable as exc:  # the platform is down or unreachable: the daemon waits for it
                self._refused(exc, unreachable=True)
            while self.auth.paused:
                if self._reload:
                    self._reload = False
                    loaded = await self._load_new()
                    if loaded is not None:
                        self._take_credentials(loaded[0])
                        self.config = self.config.model_copy(update={"watch": loaded[0].watch})
                        plans = loaded[1]
                await self._auth_tick()
                await self._write_status(status_file)
                if self.auth.paused:
                    wait = min(STATUS_PERIOD, self.auth.next_attempt - time.monotonic())
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))
                    except TimeoutError:
                        pass
                    self._wake.clear()

    def _batch_refused(self, exc: AuthFailed) -> None:
        """The scheduler met a refused login (and paused itself): start the login back-off."""
        if not self.auth.paused:  # the other batches in flight meet the same refusal: one step
            self._refused(exc)

    def _refused(self, exc: TransferError | ConfigError, *, unreachable: bool = False) -> None:
        delay = self.auth.refused(str(exc), time.monotonic(), unreachable=unreachable)
        if self.scheduler is not None:
            self.scheduler.pause()
        what = "cannot reach the platform" if unreachable else "authentication failed"
        log_event(logging.ERROR, "auth_failed", f"{what}: {exc}; the jobs are paused, their files stay"
                  f" queued; next login attempt in {delay:g}s (sooner when the password file changes or on SIGHUP)",
                  attempts=self.auth.attempts, retry_in=delay)

    async def _auth_tick(self) -> None:
        """While paused: try to log in when the back-off allows, or at once when the password file changed."""
        stamp = await asyncio.to_thread(_file_stamp, self.config.platform.password_file)
        if stamp != self._password_stamp:
            if self._password_stamp is not None:
                self.auth.hurry()
            self._password_stamp = stamp
        if not self.auth.due(time.monotonic()):
            return
        assert self.services is not None
        try:
            password = await asyncio.to_thread(self.config.password)  # password_file read afresh
            await self.services.api.relogin(password or None)
        except Retryable as exc:
            self._refused(exc, unreachable=True)
            return
        except (TransferError, ConfigError) as exc:  # refused, or the password file unreadable
            self._refused(exc)
            return
        was = self.auth.attempts
        self.auth.resumed()
        self._password_stamp = None
        if self.scheduler is not None:
            self.scheduler.resume()
        log_event(logging.INFO, "auth_ok", "logged in again: the jobs resume", refused_attempts=was)

    def _take_credentials(self, config: Config) -> None:
        """SIGHUP: the password (or password file) is taken for the next login; a paused daemon tries at once."""
        fields = {k: getattr(config.platform, k) for k in ("password", "password_file")}
        self.config = self.config.model_copy(update={"platform": self.config.platform.model_copy(update=fields)})
        if self.auth.paused:
            self.auth.hurry()

    def wake(self) -> None:
        """Thread-safe: the watcher threads call this when events arrive."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _signals(self) -> None:
        assert self._loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._on_stop, sig)
        self._loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop(self, sig: int) -> None:
        if not self._running and self._task is not None:
            self._stopping = True
            self._task.cancel()  # still starting up (a slow login, a huge tree): nothing in flight yet
            return
        if self._stopping and self.scheduler is not None:
            log_event(logging.WARNING, "stop_now", f"{signal.Signals(sig).name} again: not waiting any longer")
            self.scheduler.cancel_now()
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def _on_hup(self) -> None:
        self._reload = True
        if self._wake is not None:
            self._wake.set()

    # -- jobs ----------------------------------------------------------------------------------
    async def _add(self, plan: JobPlan) -> None:
        assert self.services is not None and self.scheduler is not None
        target = await JobTarget.open(plan.remote, self.services)
        stats = JobStats(plan.name, str(plan.source), str(target))
        engine = await self.services.engine(self.config.transfer.transport, JobSink(stats),
                                            destinations=target.destinations(self.config.transfer.transport))
        engine.slots = self.slots
        job = Job(plan, target=target, engine=engine, stats=stats,
                  scheduler=self.scheduler, daemon=self.config.daemon, wake=self.wake, alarm=self.alarm)
        in_use = sum(j.dirs for j in self.jobs.values() if not j.mode.polling)
        try:
            await job.start(in_use)
        except BaseException:
            await job.stop()
            raise
        self.jobs[plan.name] = job

    async def _remove(self, name: str) -> None:
        job = self.jobs.pop(name)
        assert self.scheduler is not None
        self.scheduler.drop_job(name)
        await job.stop()

    async def _send(self, name: str, items: list[SendItem]) -> dict[str, str]:
        job = self.jobs.get(name)
        return await job.send(items) if job is not None else {}

    # -- SIGHUP ----------------------------------------------------------------------------------
    async def _load_new(self) -> tuple[Config, list[JobPlan]] | None:
        """The config file again (SIGHUP), or None when it is refused (logged; the running one stays)."""
        try:
            config, warnings = await asyncio.to_thread(load_config, self.config_path)
            plans = await asyncio.to_thread(plan_jobs, config)
        except ConfigError as exc:
            log_event(logging.ERROR, "reload_refused", "the new configuration was refused; the running one is kept",
                      error=str(exc), config=self.config_path)
            return None
        for warning in warnings:
            log_event(logging.WARNING, "config_warning", warning)
        return config, plans

    async def _reload_config(self) -> None:
        loaded = await self._load_new()
        if loaded is None:
            return
        config, plans = loaded
        self._take_credentials(config)
        later = [s for s in _RESTART_ONLY if getattr(config, s, None) != getattr(self.config, s, None)]
        if config.daemon.metrics != self.config.daemon.metrics:
            later.append("daemon.metrics")
        if later:
            log_event(logging.WARNING, "restart_needed",
                      f"changes to {', '.join(later)} take effect at the next restart", sections=later)
        wanted = {p.name: p for p in plans}
        for name in [n for n in self.jobs if n not in wanted or self.jobs[n].plan != wanted[n]]:
            await self._remove(name)
        # Keep what needs a restart as it runs; take the jobs and the [daemon] settings.
        self.config = self.config.model_copy(update={"watch": config.watch, "daemon": config.daemon.model_copy(
            update={"metrics": self.config.daemon.metrics})})
        assert self.scheduler is not None
        self.scheduler.settings = _settings(self.config)
        self.auth.first, self.auth.cap = self.config.daemon.login_retry_seconds, self.config.daemon.login_retry_max_seconds
        for name, plan in wanted.items():
            if name not in self.jobs:
                try:
                    await self._add(plan)
                except (OSError, TransferError) as exc:
                    log_event(logging.ERROR, "job_failed", "the job could not start; the others run on",
                              job=name, error=str(exc))
        for job in self.jobs.values():
            job.apply(self.config.daemon)
        log_event(logging.INFO, "reloaded", jobs=sorted(self.jobs))

    # -- bandwidth -------------------------------------------------------------------------------
    def _bandwidth(self, services: Services) -> None:
        t, d = self.config.transfer, self.config.daemon
        if not d.timetable:
            return
        if services.bandwidth is None:  # the timetable needs a bucket even when unlimited now
            services.bandwidth = TokenBucket(UNLIMITED, burst=UNLIMITED)
        self.timetable = Timetable(d.timetable, services.bandwidth, t.bandwidth_limit, t.chunk_size)
        self._apply_timetable()

    def _apply_timetable(self) -> None:
        assert self.timetable is not None
        limit = self.timetable.apply()
        if limit is not None:
            log_event(logging.INFO, "bandwidth", "bandwidth limit from the timetable",
                      limit=limit or None, unlimited=not limit)

    # -- reading -----------------------------------------------------------------------------------
    def _views(self) -> list[JobView]:
        assert self.scheduler is not None
        return [JobView(job.stats, self.scheduler.counts(job.name)) for job in self.jobs.values()]

    def snapshot(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "started": round(self._started, 3), "config": self.config_path,
                "stopping": self._stopping, "auth": self.auth.snapshot(time.monotonic()),
                "jobs": [job.snapshot() for job in self.jobs.values()]}

    async def _write_status(self, path: Path) -> None:
        data = self.snapshot()
        key = repr((data["jobs"], data["auth"]))
        if key == self._last_status:
            return  # unchanged: no write (an idle daemon stays idle)
        self._last_status = key
        data["updated"] = round(time.time(), 3)
        try:
            await asyncio.to_thread(write_snapshot, path, data)
        except OSError as exc:
            log_event(logging.WARNING, "status_write_failed", error=str(exc))


def _file_stamp(path: str) -> tuple[int, ...] | None:
    """What tells a changed file apart (it may be replaced by a rename), or None without one."""
    if not path:
        return None
    try:
        st = os.stat(Path(path).expanduser())
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def main(config: Config, config_path: str | None, verbose: int = 0, *, hard_exit: bool = True,
         warnings: list[str] | None = None, on_refused: Callable[[str, int], None] | None = None) -> int:
    """`hubsync daemon`: run until SIGTERM; a refusal to start is one JSON line too (exit 2, 3 or 1),
    and is told to `on_refused` (--json: an error event on stdout)."""
    setup_json_logging(verbose)
    for warning in warnings or []:
        log_event(logging.WARNING, "config_warning", warning)
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(Daemon(config, config_path).run())
    except (ConfigError, TransferError, JournalError) as exc:  # the log stays JSON lines, also for the last one
        code = (2 if isinstance(exc, ConfigError | JournalUnusable) else 3 if isinstance(exc, AuthFailed) else 1)
        log_event(logging.ERROR, "refused", f"hubsync: {exc}", exit=code)
        if on_refused is not None:
            on_refused(str(exc), code)
    finally:
        leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # unlike asyncio.run, does not wait for executor threads (see below)
    if hard_exit:
        # Everything is closed and the journal is consistent; a thread still hashing a large file
        # only reads it, and must not hold the exit past the grace period.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _log_retry(note: RetryNote) -> None:
    """Every retry of the pacer, as a JSON log line (what, why, which attempt, how long a pause)."""
    log_event(logging.INFO, "retry", **note.as_dict())
