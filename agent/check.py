"""`hubsync check SRC REMOTE`: compare without sending (product.md). Quiet when all is well
(one summary line at most), one line per difference when not; exit 0 identical, 1 different."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.errors import ConfigError
from transfer.remotepath import display

from .remotes import parse_remote
from .scanner import Excludes, scan
from .service import Services, part_tag
from .targets import resolve

EXIT_OK, EXIT_DIFFERENT = 0, 1


@dataclass(frozen=True)
class Difference:
    """One way SRC and REMOTE differ at one path."""

    kind: str  # missing | size | only_remote | refused | unreadable
    path: str
    detail: str = ""


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


async def cmd_check(config: Any, out: Any, args: Any) -> int:
    remote = parse_remote(args.remote)
    source = Path(args.source)
    if not await asyncio.to_thread(os.path.lexists, source):
        raise ConfigError(f"source does not exist: {source}")
    excludes = Excludes(list(getattr(args, "exclude", None) or []), part_tag=await part_tag(config))
    scanned = await asyncio.to_thread(scan, source, excludes)
    services = await Services.open(config, on_retry=out.retry)
    try:
        target = await resolve(services, remote)
        items, refused = target.items(scanned)
        remote_files = await target.files(services, excludes)
    finally:
        await services.close()
    local = {item.local.rel: item.local.size for item in items}
    remote_files = {rel: size for rel, size in remote_files.items() if not scanned.under_link(rel)}
    differences = compare(local, remote_files, [(r.rel, r.reason) for r in refused], list(scanned.problems))
    counts = {kind: sum(1 for d in differences if d.kind == kind)
              for kind in ("missing", "size", "only_remote", "refused", "unreadable")}
    for d in differences:
        if out.json:
            out.jsonl.print({"event": "difference", "kind": d.kind, "path": display(d.path), "detail": d.detail})
        else:
            print(f"{d.kind:<11} {display(d.path)}" + (f": {d.detail}" if d.detail else ""))
    summary = {"event": "check", "remote": str(target), "files_checked": len(local), "identical": not differences,
               **counts}
    text = (f"{len(local)} files identical on {target}" if not differences
            else f"{len(differences)} differences between {source} and {target}")
    if out.json:
        out.jsonl.print(summary)
    elif not (out.quiet and not differences):
        print(text)
    return EXIT_DIFFERENT if differences else EXIT_OK
