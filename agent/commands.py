"""The commands of product.md, as coroutines returning an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from transfer.engine import FAILURES_KEPT, Batch, Engine, RunSummary, SendItem, each_batch
from transfer.errors import ConfigError, TransferError, VersionNotFound
from transfer.models import DatahubSpace
from transfer.progress import Event, FanoutSink, ProgressSink
from transfer.remotepath import display

from .config import Config
from .daemon.status import SyncLock
from .deleteguard import count_refusal, source_refusal
from .output import EXIT_FAILED, EXIT_OK, Output
from .remotes import DatahubRemote, FileRemote, Remote, parse_remote
from .render import PlainLines, RichProgress, human_size
from .runlog import recorded_run
from .scanner import Excludes, source_root
from .service import Services, part_tag
from .syncwalk import SyncWalk
from .targets import Target, created_note, finish, resolve, summary_fields


# -- login ---------------------------------------------------------------------------------
async def cmd_login(config: Config, out: Output) -> int:
    services = await Services.open(config, on_retry=out.retry)
    try:
        user = await services.api.user()
        expiry = await services.api.token_expiry()
    finally:
        await services.close()
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(expiry)) if expiry else "unknown"
    out.result(
        {"event": "login", "user": user.user_name, "userId": user.user_id, "tenantId": user.tenant_id,
         "token_expires": expiry},
        f"logged in as {user.user_name} (userId {user.user_id}, tenant {user.tenant_id}); token valid until {when}",
    )
    return EXIT_OK


# -- ls ------------------------------------------------------------------------------------
async def cmd_ls(config: Config, out: Output, remote_text: str) -> int:
    remote = parse_remote(remote_text)
    services = await Services.open(config, on_retry=out.retry)
    try:
        target = await resolve(services, remote)
        entries = await target.listing(services, target.path)
    finally:
        await services.close()
    for e in sorted(entries, key=lambda e: (not e.is_dir, e.name)):
        if out.json:
            out.jsonl.print({"event": "entry", "name": e.name, "path": e.path, "dir": e.is_dir, "size": e.size,
                             "mtime_ms": e.mtime_ms}, flush=False)
        else:
            print(f"{'d' if e.is_dir else '-'} {e.size:>14} {e.name}{'/' if e.is_dir else ''}")
    if out.json:
        files = [e for e in entries if not e.is_dir]
        out.jsonl.print({"event": "ls", "remote": str(target), "folders": len(entries) - len(files),
                         "files": len(files), "bytes": sum(e.size for e in files)})
    return EXIT_OK


# -- sync ----------------------------------------------------------------------------------
# An unreadable folder would look empty and cause deletes of what it holds: refuse them all.
DELETE_REFUSED = "--delete skipped: the source had unreadable or special entries"
LINK_SKIPPED = "symbolic link to a place outside SRC: not followed (--follow-symlinks follows it)"


async def _source_key(services: Services, target: Target, source: Path) -> str:
    """Where the journal keeps the source's file system for this remote."""
    real = await asyncio.to_thread(os.path.realpath, source)
    return f"{await services.namespace()}{target.prefix()} {real}"


async def _delete_verdict(services: Services, target: Target, walk: SyncWalk, source: Path,
                          max_delete: int | None, failed: int = 0) -> tuple[str | None, list[str], int | None]:
    """(why the delete pass deletes nothing, or None; what it deletes; the source's device now),
    once `walk` has been iterated (it compared each folder with the remote's); `failed` files of
    the sync did not reach the remote."""
    if walk.problems:
        return DELETE_REFUSED, [], None
    key = await _source_key(services, target, source)
    reason, device = await asyncio.to_thread(source_refusal, source, await services.journal.source_device(key))
    if reason is not None:
        return f"delete pass refused: {reason}; nothing was deleted", [], device
    too_many = count_refusal(len(walk.extra), walk.remote_after(failed), max_delete)
    if too_many is not None:
        return f"delete pass refused: {too_many}", [], device
    return None, sorted(walk.extra), device


async def _record_source(services: Services, target: Target, source: Path, device: int | None) -> None:
    if device is not None:
        await services.journal.record_source_device(await _source_key(services, target, source), device)


def _sync_options(remote: Remote, args: Any) -> None:
    """Refuse datahub-only options on file remotes before anything is contacted."""
    datahub_only = {"--via": getattr(args, "via", None), "--create-version": getattr(args, "create_version", None),
                    "--parent": getattr(args, "parent", None)}
    used = [flag for flag, value in datahub_only.items() if value]
    if isinstance(remote, FileRemote) and used:
        raise ConfigError(f"{', '.join(used)} apply to datahub remotes (KIND:ASSET@VERSION) only")


async def cmd_sync(config: Config, out: Output, args: Any) -> int:
    remote = parse_remote(args.remote)
    _sync_options(remote, args)
    source = source_root(args.source)
    if not await asyncio.to_thread(os.path.lexists, source):
        raise ConfigError(f"source does not exist: {source}")
    excludes = Excludes(list(args.exclude or []), part_tag=await part_tag(config))
    follow = bool(getattr(args, "follow_symlinks", False))
    transport = args.transport or config.transfer.transport
    via = getattr(args, "via", None) or config.datahub.via
    services = await Services.open(config, on_retry=out.retry)
    try:
        if args.dry_run and isinstance(remote, DatahubRemote) and args.create_version:
            # A dry run creates nothing: plan against the version if it exists, else everything is new.
            target = await _dry_run_target(services, remote, args)
        else:
            target = await resolve(services, remote, create_version=args.create_version, parent=args.parent)
        engine = await services.engine(transport, FanoutSink(), target.destinations(services, transport, via))
        sinks: list[ProgressSink] = []
        if out.json:
            sinks.append(out.jsonl)
        created = created_note(services, target)
        if created is not None:
            if out.json:
                out.jsonl.emit(Event("info", remote=str(target), message=created))
            elif not out.quiet:
                out.warn(f"note    {created}")
        rich = plain = None
        if not args.dry_run:
            rich = RichProgress(verbose=out.verbose) if (not out.json and not out.quiet and sys.stderr.isatty()) else None
            plain = PlainLines(quiet=out.quiet, verbose=out.verbose) if rich is None and not out.json else None
        tallies = [s.tally for s in (rich, plain) if s is not None]
        walk_failures: list[tuple[str, str]] = []

        def on_problem(rel: str, problem: str) -> None:  # the walk's, one line each as found
            if out.json:
                out.jsonl.emit(Event("failed", rel, str(target), message=problem))
            else:
                out.warn(f"FAILED  {rel}: {problem}")
            if len(walk_failures) < FAILURES_KEPT:
                walk_failures.append((rel, problem))
            for tally in tallies:
                tally.files_total += 1
                tally.errors += 1

        def on_link(link: str) -> None:  # once each; not a failure (its remote copy is kept)
            if out.json:
                out.jsonl.emit(Event("info", display(link), message=LINK_SKIPPED))
            else:
                out.warn(f"note    {display(link)}: {LINK_SKIPPED}")

        new_version = isinstance(target.space, DatahubSpace) and target.space.version_id == "(new)"
        walk = SyncWalk(services, target, source, excludes, follow_symlinks=follow,
                        deletes=bool(args.delete) and not new_version, on_problem=on_problem, on_link=on_link)
        if args.dry_run:
            return await _dry_run(services, engine, walk, target, args, out)
        sinks += [s for s in (rich, plain) if s is not None]
        engine.progress = FanoutSink(*sinks)
        # Not a terminal (a log, journalctl, CI): a stats line every --stats seconds, as rclone does.
        ticker = asyncio.ensure_future(_tick(services, plain, getattr(args, "stats", 30.0))) if plain else None
        try:
            # The platform is the truth: unless --trust-journal, what the journal calls done is
            # checked against the remote's listings before it is skipped.
            verify = None if getattr(args, "trust_journal", False) else target.list_folder(services)
            async with recorded_run(services.journal, target, await services.namespace()) as run:
                with SyncLock(config.state_dir()):
                    with rich if rich is not None else contextlib.nullcontext():
                        summary = await engine.run(walk.batches(), remote_prefix=target.prefix(), verify=verify)
                run.ended(summary, walk.problems)  # the walk's failures count as in the summary below
        finally:
            if ticker is not None:
                ticker.cancel()
        refusal = None
        if args.delete:
            refusal = await _delete_extra(services, target, walk, engine, summary, source,
                                          getattr(args, "max_delete", None))
        elif not walk.problems:
            # A good pass records the source's file system (a run without --delete is also how a
            # source moved to another disk on purpose is accepted).
            reason, device = await asyncio.to_thread(source_refusal, source, None)
            if reason is None:
                await _record_source(services, target, source, device)
        kept = await finish(services, target, via)
        if kept is not None:
            out.warn(f"warning {kept}")
        await _remove_stale_parts(services, out)
    finally:
        await services.close()
    # A file the walk could not take is one of the source's files all the same.
    summary.files_total += walk.problems
    for rel, problem in walk_failures:
        summary.fail(rel, problem)
    summary.files_failed += walk.problems - len(walk_failures)
    summary.failures_unlisted += walk.problems - len(walk_failures)
    _print_summary(out, summary, target, refusal)
    return EXIT_FAILED if summary.files_failed or refusal else EXIT_OK


async def _remove_stale_parts(services: Services, out: Output) -> None:
    """SFTP part files this agent left behind longer than [sftp] stale_part_age ago."""
    if services.config.transfer.transport == "http" and services.sftp is None:
        return
    try:
        namespace = await services.namespace()
        # Only a journal that names a part file costs an SFTP connection (and asyncssh's import).
        if services.sftp is None and not await services.journal.resume_parts(namespace, "sftp"):
            return
        removed = await services.sftp_destination().remove_stale_parts(services.journal, namespace)
    except TransferError as exc:
        out.warn(f"note    could not clean up stale SFTP part files: {exc}")
        return
    for where in removed:
        out.warn(f"note    removed stale partial upload {where}")


async def _dry_run_target(services: Services, remote: DatahubRemote, args: Any) -> Target:
    try:
        return await resolve(services, remote)
    except VersionNotFound:
        # Only a missing version is expected here; an unknown asset is still an error.
        asset = await services.resolver().asset(remote.kind, remote.asset)
        return Target(DatahubSpace(remote.kind, asset.id, "(new)", asset.name, remote.version), remote.path,
                      str(remote))


async def _delete_extra(services: Services, target: Target, walk: SyncWalk, engine: Engine, summary: RunSummary,
                        source: Path, max_delete: int | None) -> str | None:
    """Delete what SRC no longer has, unless a guard refuses the pass; returns the refusal."""
    progress = engine.progress
    refusal, extra, device = await _delete_verdict(services, target, walk, source, max_delete, summary.files_failed)
    if refusal is not None:
        progress.emit(Event("info", message=refusal))
        return None if refusal == DELETE_REFUSED else refusal  # unreadable entries already failed the run
    await _record_source(services, target, source, device)
    for start in range(0, len(extra), 100):
        batch = extra[start : start + 100]
        try:
            await target.delete(services, batch)
        except TransferError as exc:
            for rel in batch:
                summary.fail(rel, f"delete failed: {exc}")
            continue
        # Forgotten by the journal: not done any more, and sent again should SRC have it again.
        await engine.forget_many([target.key_of(rel) for rel in batch])
        for rel in batch:
            progress.emit(Event("deleted", rel, target.remote_of(rel)))
    return None


async def _dry_run(services: Services, engine: Engine, walk: SyncWalk, target: Target, args: Any, out: Output) -> int:
    """What the real run would do, folder by folder, the same listings asked; nothing recorded."""
    new_version = isinstance(target.space, DatahubSpace) and target.space.version_id == "(new)"
    trust = bool(getattr(args, "trust_journal", False))
    if new_version and isinstance(target.space, DatahubSpace):
        out.warn(f"note    version {target.space.version_name!r} does not exist yet: the real run creates it")
    counts = {"total": 0, "sending": 0, "repairing": 0, "unchanged": 0, "refused": 0, "bytes": 0}

    async def plan(batch: Batch) -> None:
        items = batch.items
        confirmed: dict[str, int | None] = {}
        todo, unchanged = (items, []) if new_version else await engine.pending(items, target.prefix(), confirmed)
        repairs: list[tuple[SendItem, str]] = []
        if unchanged and not trust:
            # The same listings as the real run: what it would send again is shown, nothing recorded.
            repairs = await engine.drifted(unchanged, target.list_folder(services), confirmed, adopt=False)
        for item in todo:
            if out.json:
                out.jsonl.print({"event": "would_send", "path": item.local.rel,
                                 "remote": target.remote_of(item.local.rel), "size": item.local.size}, flush=False)
            else:
                print(f"would send   {item.local.rel} -> {target.remote_of(item.local.rel)} ({item.local.size} bytes)")
        for item, reason in repairs:
            if out.json:
                out.jsonl.print({"event": "would_repair", "path": item.local.rel,
                                 "remote": target.remote_of(item.local.rel), "size": item.local.size,
                                 "reason": reason}, flush=False)
            else:
                print(f"would repair {item.local.rel} -> {target.remote_of(item.local.rel)} ({reason})")
        for r in batch.refused:
            if out.json:
                out.jsonl.print({"event": "would_fail", "path": r.rel, "error": r.reason}, flush=False)
            else:
                print(f"would fail   {r.rel}: {r.reason}")
        counts["total"] += len(items)
        counts["sending"] += len(todo) + len(repairs)  # a repair is sent like any other file
        counts["repairing"] += len(repairs)
        counts["unchanged"] += len(unchanged) - len(repairs)
        counts["refused"] += len(batch.refused)
        counts["bytes"] += sum(i.local.size for i in todo) + sum(i.local.size for i, _ in repairs)

    await each_batch(walk.batches(), plan)
    sending, repairing, unchanged_count = counts["sending"], counts["repairing"], counts["unchanged"]
    deletes: list[str] = []
    refusal = None
    if args.delete and not new_version:
        # The same verdict as the real pass: a refusal is shown, and the dry run exits 1 as it would.
        refusal, deletes, _ = await _delete_verdict(services, target, walk, source_root(args.source),
                                                    getattr(args, "max_delete", None))
        if refusal is not None:
            out.warn(f"note    {refusal}")
            if refusal == DELETE_REFUSED:
                refusal = None
    for rel in deletes:
        where = target.remote_of(rel)
        if out.json:
            out.jsonl.print({"event": "would_delete", "remote": where}, flush=False)
        else:
            print(f"would delete {where}")
    summary = {"event": "summary", "dry_run": True, "files_total": counts["total"], "files_to_send": sending,
               "files_to_repair": repairing, "files_unchanged": unchanged_count,
               "bytes_to_send": counts["bytes"], "files_to_delete": len(deletes), "files_refused": counts["refused"]}
    if refusal is not None:
        summary["delete_refused"] = refusal
    repairs_note = f" ({repairing} repairs)" if repairing else ""
    out.result(summary, f"dry run: {sending} to send{repairs_note}, {unchanged_count} unchanged,"
                        f" {len(deletes)} to delete; nothing was sent")
    return EXIT_FAILED if refusal else EXIT_OK


def _print_summary(out: Output, summary: RunSummary, target: Target, delete_refused: str | None = None) -> None:
    d = summary.as_dict()
    d["event"] = "summary"
    if delete_refused is not None:
        d["delete_refused"] = delete_refused
        if not out.json:
            out.warn(f"FAILED  {delete_refused}")
    d.update(summary_fields(target))
    rate = summary.bytes_sent / summary.seconds if summary.seconds else 0.0
    # Each failure was named once, in its FAILED line as it happened: the summary only counts them.
    text = (
        f"{summary.files_sent} sent"
        + (f" ({summary.files_repaired} repaired: missing or changed on the remote)" if summary.files_repaired else "")
        + f", {summary.files_skipped} unchanged, {summary.files_failed} failed"
        f" of {summary.files_total} files; {human_size(summary.bytes_sent)} of {human_size(summary.bytes_total)}"
        f" sent in {summary.seconds:.1f}s ({human_size(rate)}/s)"
        + (f" via {', '.join(sorted(summary.transports))}" if summary.transports else "")
    )
    out.result(d, text)


async def _tick(services: Services, plain: PlainLines, every: float) -> None:
    clock = services.api.pacer.clock
    while True:
        await clock.sleep(every)
        plain.stats()
