"""The composition root: builds the client, journal and destinations from the config."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.agenttag import load_tag
from transfer.api import PlatformClient, Timeouts
from transfer.bandwidth import TokenBucket
from transfer.clock import Clock, SystemClock
from transfer.datahub import DatahubApi, Resolver
from transfer.destinations.base import Destination
from transfer.destinations.chunked import ChunkedDestination, FileStorageTree
from transfer.engine import Engine
from transfer.errors import ConfigError
from transfer.folders import RemoteFolders
from transfer.journal import Journal, journal_error
from transfer.pacer import Pacer, RetryNote
from transfer.progress import ProgressSink
from transfer.scope import RunScope

from .config import Config, journal_path

if TYPE_CHECKING:  # asyncssh costs 0.1 s to import: only runs that use SFTP load it
    from transfer.destinations.base import Confirmation, ConfirmItem, OnBytes, ResumeState
    from transfer.destinations.sftp import SftpDestination
    from transfer.models import Digest, LocalFile, RemoteTarget


def make_pacer(config: Config, clock: Clock | None = None,
               on_retry: Callable[[RetryNote], None] | None = None) -> Pacer:
    """The one retry policy of a process ([transfer] give_up_after), on `clock` (default: the real one),
    telling `on_retry` of every retry."""
    return Pacer(give_up_after=config.transfer.give_up_after, clock=clock or SystemClock(), on_retry=on_retry)


def timeouts(config: Config) -> Timeouts:
    t = config.transfer
    return Timeouts(connect=t.connect_timeout, request=t.request_timeout, min_rate=t.min_rate)


def make_client(config: Config, pacer: Pacer | None = None) -> PlatformClient:
    """A PlatformClient from [platform]; ConfigError when something required is missing."""
    p = config.platform
    if not p.url:
        raise ConfigError("platform.url is not set (config file or HUBSYNC_URL)")
    token = p.token.get_secret_value()
    password = config.password()
    if not token and not (p.username and password and p.password_key.get_secret_value()):
        raise ConfigError(
            "no credentials: set platform.username, platform.password (or password_file) and"
            " platform.password_key, or platform.token (HUBSYNC_USERNAME, HUBSYNC_PASSWORD,"
            " HUBSYNC_PASSWORD_KEY, HUBSYNC_TOKEN)"
        )
    return PlatformClient(
        p.url,
        username=p.username,
        password=password,
        password_key=p.password_key.get_secret_value(),
        token=token,
        ca_bundle=p.ca_bundle,
        connections=max(16, config.transfer.transfers * config.transfer.chunks_per_file * 2),
        pacer=pacer or make_pacer(config),
        timeouts=timeouts(config),
    )


async def part_tag(config: Config) -> str:
    """This agent's part-file tag (transfer.agenttag), kept in the state dir; a state dir that
    cannot hold it (read-only, full) is one clear line, like the journal's."""
    try:
        return await asyncio.to_thread(load_tag, config.state_dir())
    except OSError as exc:
        raise journal_error(exc, journal_path(config)) from exc


@dataclass
class Services:
    """Everything one run needs, built once and passed down."""

    config: Config
    api: PlatformClient
    journal: Journal
    folders: RemoteFolders
    bandwidth: TokenBucket | None = None
    part_tag: str = ""  # this agent's mark on its SFTP part files (transfer.agenttag)
    sftp: SftpDestination | None = None
    _datahub: DatahubApi | None = None
    _resolver: Resolver | None = None

    @classmethod
    async def open(cls, config: Config, clock: Clock | None = None,
                   on_retry: Callable[[RetryNote], None] | None = None) -> Services:
        """Build the services of a run; `clock` (default: the real one) times every wait of it, and
        `on_retry` hears of every retry."""
        api = make_client(config, make_pacer(config, clock, on_retry))
        tag = await part_tag(config)
        journal = await Journal(journal_path(config)).open()
        limit = config.transfer.bandwidth_limit
        bucket = (TokenBucket(limit, burst=max(limit, config.transfer.chunk_size), clock=api.pacer.clock)
                  if limit else None)
        return cls(config=config, api=api, journal=journal, folders=RemoteFolders(api), bandwidth=bucket,
                   part_tag=tag)

    async def close(self) -> None:
        if self.sftp is not None:
            await self.sftp.close()
        await self.api.close()
        await self.journal.close()

    async def namespace(self) -> str:
        user = await self.api.user()
        return f"{self.api.host}#{user.user_id} "

    def http_destination(self) -> ChunkedDestination:
        t = self.config.transfer
        return ChunkedDestination(
            self.api,
            self.folders,
            chunk_size=t.chunk_size,
            chunks_per_file=t.chunks_per_file,
            small_file_threshold=t.small_file_threshold,
            bandwidth=self.bandwidth,
            confirm_timeout=t.confirm_timeout,
        )

    def sftp_destination(self) -> SftpDestination:
        """The SFTP transport (one per run: it holds the connections), built on first use."""
        if self.sftp is None:
            from transfer.destinations.sftp import SftpDestination

            s, t = self.config.sftp, self.config.transfer
            self.sftp = SftpDestination(
                self.api,
                pin_file=self.config.state_dir() / "known_hosts",
                known_hosts=Path(s.known_hosts).expanduser() if s.known_hosts else None,
                allow_password_reset=s.allow_password_reset,
                chunk_size=t.chunk_size,
                bandwidth=self.bandwidth,
                stale_part_age=s.stale_part_age,
                part_tag=self.part_tag or None,
                connect_timeout=t.connect_timeout,
                request_timeout=t.request_timeout,
                min_rate=t.min_rate,
                pacer=self.api.pacer,
            )
        return self.sftp

    def tree(self) -> FileStorageTree:
        return FileStorageTree(self.api)

    def datahub(self) -> DatahubApi:
        if self._datahub is None:
            self._datahub = DatahubApi(self.api)
        return self._datahub

    def resolver(self) -> Resolver:
        """Datahub names -> ids, cached for the life of these services (one run)."""
        if self._resolver is None:
            self._resolver = Resolver(self.datahub(), poll_timeout=self.config.datahub.poll_timeout)
        return self._resolver

    def file_destinations(self, transport: str) -> tuple[Destination, Destination | None]:
        """(primary, fallback) for the private/public spaces."""
        if transport == "sftp":
            return self.sftp_destination(), None
        if transport == "auto":
            return self.http_destination(), _SftpOnFirstUse(self)
        return self.http_destination(), None

    async def engine(
        self, transport: str, progress: ProgressSink,
        destinations: tuple[Destination, Destination | None] | None = None,
    ) -> Engine:
        """An engine for the file spaces, or for the given (primary, fallback) destinations."""
        primary, fallback = destinations or self.file_destinations(transport)
        t = self.config.transfer
        return Engine(
            self.journal,
            primary,
            fallback=fallback,
            progress=progress,
            transfers=t.transfers,
            chunk_size=t.chunk_size,
            namespace=await self.namespace(),
            switch_seconds=t.sftp_fallback_seconds,
            settle_timeout=t.settle_timeout,
            clock=self.api.pacer.clock,
        )


class _SftpOnFirstUse:
    """The auto mode's SFTP fallback, built (and asyncssh imported) only when first needed."""

    transport = "sftp"

    def __init__(self, services: Services) -> None:
        self._services = services

    async def send(
        self, local: LocalFile, digest: Digest, target: RemoteTarget, resume: ResumeState, on_bytes: OnBytes,
        *, scope: RunScope | None = None,
    ) -> None:
        await self._services.sftp_destination().send(local, digest, target, resume, on_bytes, scope=scope)

    async def confirm(self, items: list[ConfirmItem], *, scope: RunScope | None = None) -> list[Confirmation]:
        return await self._services.sftp_destination().confirm(items, scope=scope)
