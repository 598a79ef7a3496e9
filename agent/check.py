"""`hubsync check SRC REMOTE [--download]`: compare without sending (product.md). Quiet when all is
well (one summary line at most), one line per difference when not; exit 0 identical, 1 different.

Names and sizes come from the remote listing. `--download` also reads back every file of one
size on both sides and compares md5s: the local md5 computed fresh from the file (a check
trusts no journal) in a thread, the remote bytes streamed into an md5 sink (SFTP for the file
spaces, the datahub download for a version), never held whole; `transfers` files at a time,
every read within its deadline and through the one retry policy. A file that cannot be read,
here or there, is a difference; a service that cannot be used at all (a refused login, retries
spent, the call missing) ends the check with one line, since it would fail every file alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from transfer.engine import SendItem
from transfer.errors import AuthFailed, ConfigError, EndpointUnavailable, GaveUp, TransferError
from transfer.hashing import hash_file
from transfer.readback import Md5Sink
from transfer.remotepath import display
from transfer.scope import RunScope

from .output import EXIT_AUTH, EXIT_FAILED
from .remotes import parse_remote
from .render import CheckProgress, human_size
from .scanner import Excludes, scan, source_root
from .service import Services, part_tag
from .targets import Target, explain, resolve

EXIT_OK, EXIT_DIFFERENT = 0, 1
KINDS = ("missing", "size", "only_remote", "refused", "unreadable", "content")
#: Failures that would hit every file alike: they end a --download check.
RUN_LEVEL = (AuthFailed, GaveUp, EndpointUnavailable)


@dataclass(frozen=True)
class Difference:
    """One way SRC and REMOTE differ at one path."""

    kind: str  # one of KINDS
    path: str
    detail: str = ""


@dataclass(frozen=True)
class Verified:
    """A file whose bytes on the remote have the local file's md5."""

    path: str
    size: int
    md5: str


def compare(local: dict[str, int], remote: dict[str, int], refused: list[tuple[str, str]],
            unreadable: list[tuple[str, str]]) -> list[Difference]:
    """Pure: the differences between local and remote files (relative path -> size)."""
    found = [Difference("refused", path, why) for path, why in refused]
    found += [Difference("unreadable", path, why) for path, why in unreadable]
    for rel, size in sorted(local.items()):
        there = remote.get(rel)
        if there is None:
            found.append(Difference("missing", rel, "not on the remote"))
        elif there != size:
            found.append(Difference("size", rel, f"{size} bytes here, {there} on the remote"))
    found += [Difference("only_remote", rel, "only on the remote") for rel in sorted(set(remote) - set(local))]
    return found


class ContentCheck:
    """Reads back files of `target` and compares their md5 with the local files'."""

    def __init__(
        self, services: Services, target: Target, *, transfers: int,
        on_result: Callable[[Verified | Difference], None], on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.services = services
        self.target = target
        self.transfers = max(1, transfers)
        self.on_result = on_result
        self.on_bytes = on_bytes
        self.bytes_read = 0
        self.files_read = 0

    async def run(self, items: list[SendItem]) -> None:
        """Check every item (a file of one size on both sides); results go to `on_result` as they come."""
        if not items:
            return
        scope = RunScope()
        await self.target.open_reader(self.services, scope)
        pending = iter(items)  # shared by the workers: next() never awaits, so no two take one item
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.transfers, len(items))):
                    group.create_task(self._worker(pending, scope))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _worker(self, pending: Iterator[SendItem], scope: RunScope) -> None:
        for item in pending:
            self.on_result(await self._one(item, scope))

    async def _one(self, item: SendItem, scope: RunScope) -> Verified | Difference:
        local = item.local
        sink = Md5Sink(self._count)
        here, there = await asyncio.gather(
            asyncio.to_thread(hash_file, local),
            self.target.read_into(self.services, item.target, local.size, sink, scope),
            return_exceptions=True,
        )
        for outcome in (there, here):
            if isinstance(outcome, RUN_LEVEL) or (
                isinstance(outcome, BaseException) and not isinstance(outcome, TransferError | OSError)
            ):
                raise outcome
        if isinstance(here, OSError):
            return Difference("unreadable", local.rel, f"not read here: {here.strerror or here}")
        if isinstance(here, BaseException):
            return Difference("unreadable", local.rel, f"not read here: {here}")
        if isinstance(there, BaseException):
            return Difference("unreadable", local.rel, f"not read from the remote: {there}")
        self.files_read += 1
        remote_md5 = await sink.hexdigest()
        if remote_md5 != here.md5 or sink.position != local.size:
            held = f" (it held {sink.position} bytes when read)" if sink.position != local.size else ""
            return Difference("content", local.rel, f"md5 differs: local {here.md5}, remote {remote_md5}{held}")
        return Verified(local.rel, local.size, remote_md5)

    def _count(self, delta: int) -> None:
        self.bytes_read += delta
        if self.on_bytes is not None:
            self.on_bytes(delta)


class _Report:
    """Prints each difference (and, with --json, each verified file) as it is found."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.differences: list[Difference] = []
        self.progress: CheckProgress | None = None

    def result(self, found: Verified | Difference) -> None:
        if self.progress is not None:
            self.progress.file_done()
        if isinstance(found, Verified):
            if self.out.json:
                self.out.jsonl.print({"event": "checked", "path": display(found.path), "bytes": found.size,
                                      "md5": found.md5}, flush=False)
            return
        self.differences.append(found)
        if self.out.json:
            self.out.jsonl.print({"event": "difference", "kind": found.kind, "path": display(found.path),
                                  "detail": found.detail})
        else:
            line = f"{found.kind:<11} {display(found.path)}" + (f": {found.detail}" if found.detail else "")
            if self.progress is not None:
                self.progress.print(line)
            else:
                print(line, flush=True)


async def cmd_check(config: Any, out: Any, args: Any) -> int:
    remote = parse_remote(args.remote)
    source = source_root(args.source)
    download = bool(getattr(args, "download", False))
    if not await asyncio.to_thread(os.path.lexists, source):
        raise ConfigError(f"source does not exist: {source}")
    excludes = Excludes(list(getattr(args, "exclude", None) or []), part_tag=await part_tag(config))
    scanned = await asyncio.to_thread(scan, source, excludes)
    report = _Report(out)
    services = await Services.open(config, on_retry=out.retry)
    try:
        target = await resolve(services, remote)
        items, refused = target.items(scanned)
        remote_files = await target.files(services, excludes)
        remote_files = {rel: size for rel, size in remote_files.items() if not scanned.under_link(rel)}
        local = {item.local.rel: item.local.size for item in items}
        for d in compare(local, remote_files, [(r.rel, r.reason) for r in refused], list(scanned.problems)):
            report.result(d)
        checker: ContentCheck | None = None
        if download:
            same = [item for item in items if remote_files.get(item.local.rel) == item.local.size]
            checker = ContentCheck(services, target, transfers=config.transfer.transfers, on_result=report.result)
            try:
                await _read_back(checker, same, report, out)
            except TransferError as exc:
                code = EXIT_AUTH if isinstance(exc, AuthFailed) else EXIT_FAILED
                return out.error(f"hubsync: check --download stopped after {checker.files_read} of {len(same)}"
                                 f" files: cannot read {target}: {explain(exc)}", code)
    finally:
        await services.close()
    differences = report.differences
    counts = {kind: sum(1 for d in differences if d.kind == kind) for kind in KINDS}
    summary: dict[str, Any] = {"event": "check", "remote": str(target), "files_checked": len(local),
                               "identical": not differences, **counts}
    read = ""
    if checker is not None:
        summary.update(download=True, files_downloaded=checker.files_read, bytes_downloaded=checker.bytes_read)
        read = f" (md5 compared: {checker.files_read} files, {human_size(checker.bytes_read)} read)"
    text = (f"{len(local)} files identical on {target}{read}" if not differences
            else f"{len(differences)} differences between {source} and {target}{read}")
    if out.json:
        out.jsonl.print(summary)
    elif not (out.quiet and not differences):
        print(text)
    return EXIT_DIFFERENT if differences else EXIT_OK


async def _read_back(checker: ContentCheck, items: list[SendItem], report: _Report, out: Any) -> None:
    """Run the content check, with a progress bar when the output is a terminal (text mode, not -q)."""
    if out.json or out.quiet or not (sys.stdout.isatty() and sys.stderr.isatty()) or not items:
        await checker.run(items)
        return
    with CheckProgress(files=len(items), size=sum(item.local.size for item in items)) as progress:
        report.progress = progress
        checker.on_bytes = progress.advance
        try:
            await checker.run(items)
        finally:
            report.progress = None
