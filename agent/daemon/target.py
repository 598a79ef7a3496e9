"""Where one job's files go: the only place the daemon knows what kind of remote it has.

Everything remote-specific — SendItems for scanned files, the journal prefix, listing,
deleting, the destinations — goes through `JobTarget`, a thin layer over the one-shot sync's
`agent.targets.Target`, which resolves datahub names to ids once, when the job opens.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from transfer.destinations.base import Destination
from transfer.engine import ListFolder, Refused, SendItem, Unreadable
from transfer.errors import ConfigError, Fatal
from transfer.models import LocalFile, RemoteEntry, RemoteTarget

from ..remotes import Remote, parse_remote
from ..scanner import Excludes
from ..service import Services
from ..targets import Target, finish, resolve


def parse_job_remote(text: str, where: str) -> Remote:
    """The remote of a [[watch]] job: a file space folder or a datahub version (resolved at start)."""
    try:
        return parse_remote(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}.remote: {exc}") from exc


@dataclass
class JobTarget:
    """One job's resolved remote folder, with the services that reach it."""

    target: Target
    services: Services

    @classmethod
    async def open(cls, remote: Remote, services: Services) -> JobTarget:
        return cls(await resolve(services, remote), services)

    def __str__(self) -> str:
        return str(self.target)

    def prefix(self) -> str:
        """The journal key prefix of every file of this job."""
        return self.target.prefix()

    def target_of(self, rel: str) -> RemoteTarget:
        """Where `rel` goes (RefusedName for a name the remote cannot hold as it is)."""
        return self.target.remote.target(rel)

    def remote_of(self, rel: str) -> str:
        """The journal's name for `rel` (ids, never display names)."""
        return self.target.key_of(rel)

    def unreadable(self, problems: list[tuple[str, str]], root: Path) -> list[Unreadable]:
        """A walk's problems as journal records (failed)."""
        return self.target.unreadable(problems, root)

    def shown(self, rel: str) -> str:
        """`rel` on the remote as people read it (a datahub version by its names)."""
        return self.target.remote_of(rel)

    def items(self, files: Iterable[LocalFile]) -> tuple[list[SendItem], list[Refused]]:
        """(to send, refused for their names)."""
        return self.target.items(list(files))

    def destinations(self, transport: str) -> tuple[Destination, Destination | None]:
        return self.target.destinations(self.services, transport, self.services.config.datahub.via)

    def list_folder(self) -> ListFolder:
        """How Engine.drifted lists this remote's folders (the remote check)."""
        return self.target.list_folder(self.services)

    async def listing(self, rel_folder: str) -> list[RemoteEntry]:
        """One level of the remote folder at `rel_folder` (relative to the job's root)."""
        return await self.target.listing(self.services, self.target.remote.folder(rel_folder))

    async def files(self, excludes: Excludes, under: str = "") -> dict[str, int]:
        """Every remote file below `under` (relative path -> size), walked level by level."""
        return await self.target.files(self.services, excludes, under)

    async def present(self, rels: Iterable[str]) -> dict[str, RemoteEntry]:
        """Which of `rels` exist remotely (one listing per parent folder); a missing parent = absent."""
        by_parent: dict[str, list[str]] = {}
        for rel in rels:
            by_parent.setdefault(posixpath.dirname(rel), []).append(rel)
        found: dict[str, RemoteEntry] = {}
        for parent, children in by_parent.items():
            try:
                entries = {e.name: e for e in await self.listing(parent)}
            except Fatal:
                continue  # the folder is not there (a transient failure raises Retryable instead)
            for rel in children:
                name = posixpath.basename(rel)
                entry = entries.get(name)
                # A name no local file maps to was never ours to delete (e.g. a local `a\\b` gone).
                if entry is not None and self.target.remote.child(parent, name) is not None:
                    found[rel] = entry
        return found

    async def finish(self) -> str | None:
        """Once no batch of the job is in flight: remove the staging folders left empty (a warning when one stays)."""
        return await finish(self.services, self.target, self.services.config.datahub.via)

    async def delete(self, rels: list[str]) -> None:
        """Delete files or folders (all or nothing, as the platform does)."""
        await self.target.delete(self.services, rels)
