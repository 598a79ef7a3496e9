"""A remote, resolved for one run: where files go, how to list and delete there, which transports.

`sync`, `ls` and the daemon all go through `Target`, so file spaces and datahub versions are
handled the same way above this module.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer.datahub import DatahubApi, Resolver
from transfer.destinations.base import Destination
from transfer.destinations.datahub import DatahubTree, DirectDatahubDestination, StagedDatahubDestination
from transfer.engine import ListFolder, Refused, SendItem, Unreadable
from transfer.errors import ConfigError, ParentNotApplicable, ParentNotFound, TransferError, VersionNotFound
from transfer.models import DatahubSpace, LocalFile, RemoteEntry, RemoteTarget, Space
from transfer.readback import ByteSink
from transfer.remotepath import RefusedName, RemoteFolder, display
from transfer.scope import RunScope

from .remotes import DatahubRemote, FileRemote, Remote
from .scanner import Excludes, ScanResult
from .service import Services

log = logging.getLogger("hubsync.targets")


@dataclass
class Target:
    """A remote folder with ids resolved: a file space, or a datahub asset version."""

    space: Space | DatahubSpace
    path: str  # canonical and checked (agent.remotes.parse_remote)
    text: str  # as the user wrote it, for messages
    # The one mapping from local names to remote paths (transfer.remotepath).
    remote: RemoteFolder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.remote = RemoteFolder(self.space, self.path)

    def __str__(self) -> str:
        """For people: `private:/a`, `dataset:cifar@v2` (a version's root), `dataset:cifar@v2:/train`."""
        if isinstance(self.space, DatahubSpace):
            return f"{self.space.label()}:/{self.path}" if self.path else self.space.label()
        return f"{self.space}:/{self.path}"

    @property
    def is_datahub(self) -> bool:
        return isinstance(self.space, DatahubSpace)

    def prefix(self) -> str:
        """The journal key prefix of files under this remote (ids, never names)."""
        return f"{self.space}:/{self.path}/" if self.path else f"{self.space}:/"

    def shown_prefix(self) -> str:
        """prefix() as people read it (a datahub version by its names)."""
        label = self.space.label() if isinstance(self.space, DatahubSpace) else str(self.space)
        return f"{label}:/{self.path}/" if self.path else f"{label}:/"

    def remote_of(self, rel: str) -> str:
        """For people: where `rel` (a file that maps, or a remote listing's path) is on the remote."""
        where = self.remote.path_of(rel)
        label = self.space.label() if isinstance(self.space, DatahubSpace) else str(self.space)
        return f"{label}:/{where}"

    def items(self, files: ScanResult | list[LocalFile]) -> tuple[list[SendItem], list[Refused]]:
        """Map local files to targets below the remote folder: (to send, refused with the reason)."""
        items: list[SendItem] = []
        refused: list[Refused] = []
        prefix = self.prefix()
        shown = self.shown_prefix()
        for local in files.files if isinstance(files, ScanResult) else files:
            try:
                items.append(SendItem(local, self.remote.target(local.rel)))
            except RefusedName as exc:
                rel = display(local.rel)
                refused.append(Refused(local, prefix + rel, exc.message, shown + rel))
        return items, refused

    def unreadable(self, problems: list[tuple[str, str]], source: Path) -> list[Unreadable]:
        """The walk's problems (display(rel), reason) below `source` as journal records (failed)."""
        prefix, root = self.prefix(), display(str(source))
        return [Unreadable(root, prefix, why) if rel in (".", root) else Unreadable(f"{root}/{rel}", prefix + rel, why)
                for rel, why in problems]

    def key_of(self, rel: str) -> str:
        """The journal's key of `rel` (a file that maps, or a remote listing's path): ids, never names."""
        return str(self.remote.target(rel))

    # -- the remote side -------------------------------------------------------------------
    async def listing(self, services: Services, folder: str, until: Collection[str] | None = None) -> list[RemoteEntry]:
        """A remote folder's entries (all of them; with `until`, perhaps only up to those names)."""
        if isinstance(self.space, DatahubSpace):
            return await DatahubTree(services.datahub()).list(self.space, folder, until)
        return await services.tree().list(self.space, folder, until)

    def list_folder(self, services: Services) -> ListFolder:
        """The engine's way to list a folder of this remote (verification before skipping)."""

        async def list_folder(space: Space | DatahubSpace, folder: str,
                              until: Collection[str] | None = None) -> list[RemoteEntry]:
            try:
                return await self.listing(services, folder, until)
            except TransferError:
                if isinstance(space, Space):
                    # Gone there, most likely (deleted since it was made): files sent into it
                    # next make it again instead of trusting the cache of folders made.
                    services.folders.forget(space, folder, parents=True)
                raise

        return list_folder

    async def files(self, services: Services, excludes: Excludes, under: str = "") -> dict[str, int]:
        """Every file below `under` in the remote folder (path relative to the remote folder -> size),
        folders walked level by level."""
        found: dict[str, int] = {}
        pending = [under]
        while pending:
            rel = pending.pop()
            for entry in await self.listing(services, self.remote.folder(rel)):
                child = self.remote.child(rel, entry.name)
                if child is None:
                    # Not a name hubsync could have made: never walked into, never deleted.
                    log.info("remote %s/%s: left alone (a name no local file maps to)", self, display(entry.name))
                    continue
                if excludes.excluded(child, is_dir=entry.is_dir):
                    continue
                if entry.is_dir:
                    pending.append(child)
                else:
                    found[child] = entry.size
        return found

    async def delete(self, services: Services, rels: list[str]) -> None:
        paths = [self.remote.path_of(rel) for rel in rels]
        if isinstance(self.space, DatahubSpace):
            await DatahubTree(services.datahub()).delete(self.space, paths)
        else:
            await services.tree().delete(self.space, paths)

    # -- reading files back (check --download) ---------------------------------------------
    async def open_reader(self, services: Services, scope: RunScope) -> None:
        """Before files are read back: the file space's SFTP login, so a refusal shows once."""
        if isinstance(self.space, Space):
            await services.sftp_destination().connect(self.space, scope=scope)

    async def read_into(self, services: Services, target: RemoteTarget, size: int, sink: ByteSink,
                        scope: RunScope) -> None:
        """Stream the remote file at `target` (`size` bytes listed) into `sink`: over SFTP for the
        file spaces, through the datahub download for a version."""
        if isinstance(target.space, DatahubSpace):
            await services.datahub().download(target.space, target.path, size, sink)
        else:
            await services.sftp_destination().read_into(target, sink, scope=scope)

    # -- transports ------------------------------------------------------------------------
    def destinations(
        self, services: Services, transport: str, via: str
    ) -> tuple[Destination, Destination | None]:
        """(primary, fallback) for sending here."""
        if not isinstance(self.space, DatahubSpace):
            return services.file_destinations(transport)
        d = services.config.datahub
        if via == "direct":
            if transport == "sftp":
                raise ConfigError("--transport sftp does not apply to --via direct (datahub chunks go over HTTP)")
            t = services.config.transfer
            return DirectDatahubDestination(
                services.datahub(), chunk_size=t.chunk_size, chunks_per_file=t.chunks_per_file,
                bandwidth=services.bandwidth, poll_timeout=d.poll_timeout,
            ), None
        # Staging goes through the file space's own transports (chunk protocol, SFTP fallback).
        primary, fallback = services.file_destinations(transport)
        # Files are confirmed while others are still being staged: the emptied staging folder is
        # dropped by finish() at the end of a run, never by a confirmation.
        staged = StagedDatahubDestination(
            services.datahub(), primary, keep_staging=d.keep_staging,
            folders=services.folders, import_batch=d.import_batch, poll_timeout=d.poll_timeout,
        )
        if fallback is None:
            return staged, None
        return staged, _FallbackStaged(staged, fallback)


async def finish(services: Services, target: Target, via: str) -> str | None:
    """After a run (nothing else staged for the version): remove the staging folders it left
    empty; returns a warning when one could not be removed."""
    if isinstance(target.space, DatahubSpace) and via == "staged" and not services.config.datahub.keep_staging:
        staged = StagedDatahubDestination(services.datahub(), services.http_destination(), folders=services.folders)
        return await staged.drop_staging(target.space)
    return None


class _FallbackStaged(StagedDatahubDestination):
    """The same staged destination, staging over the file space's fallback transport (SFTP)."""

    def __init__(self, staged: StagedDatahubDestination, files: Destination) -> None:
        super().__init__(staged.datahub, files, keep_staging=staged.keep_staging,
                         folders=staged.folders,
                         import_batch=staged.import_batch, poll_timeout=staged.poller.timeout)
        self.transport = f"datahub-staged-{files.transport}"


async def resolve(services: Services, remote: Remote, *, create_version: str | None = None,
                  parent: str | None = None) -> Target:
    """Resolve names to ids (asset and version), creating the version when asked."""
    if isinstance(remote, FileRemote):
        if create_version or parent:
            raise ConfigError("--create-version and --parent apply to datahub remotes only")
        return Target(remote.space, remote.path, str(remote))
    assert isinstance(remote, DatahubRemote)
    if create_version is not None and create_version != remote.version:
        raise ConfigError(
            f"--create-version {create_version!r} does not match the remote's version {remote.version!r};"
            f" name the version to create in both, e.g. {remote.kind}:{remote.asset}@{create_version}"
        )
    if parent is not None and create_version is None:
        raise ConfigError("--parent applies only with --create-version")
    resolver = services.resolver()
    space = await resolver.resolve(remote.kind, remote.asset, remote.version,
                                   create=create_version is not None, parent=parent)
    return Target(space, remote.path, str(remote))


def created_note(services: Services, target: Target) -> str | None:
    """'created version v2 of dataset cifar (from v1)' when this run created the target's version."""
    space = target.space
    if not isinstance(space, DatahubSpace) or space not in services.resolver().created:
        return None
    parent = services.resolver().created[space]
    return (f"created version {space.version_name} of {space.kind} {space.asset_name}"
            + (f" (from {parent})" if parent else ""))


def explain(exc: Exception) -> str:
    """An engine error as the CLI tells it: with the option that fixes it, where one does."""
    if isinstance(exc, VersionNotFound):
        return f"{exc}; use --create-version {exc.version} to create it"
    if isinstance(exc, ParentNotFound):
        return f"--parent {exc.parent!r}: {exc}"
    if isinstance(exc, ParentNotApplicable):
        return f"--parent does not apply here: {exc}"
    return str(exc)


def summary_fields(target: Target) -> dict[str, Any]:
    fields: dict[str, Any] = {"remote": str(target)}
    if isinstance(target.space, DatahubSpace):
        fields.update(asset_id=target.space.asset_id, version_id=target.space.version_id)
    return fields


__all__ = ["Target", "created_note", "explain", "resolve", "summary_fields", "DatahubApi", "Resolver"]
