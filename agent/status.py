"""`hubsync status`: what the journal holds, one row per job and remote, each with its last run.

A row is the remote a run covered (the journal's `runs` keep each run's key prefix and the same
folder by name), so a datahub version shows once, by name, however many subfolders it has.
Files under no recorded run (a journal from before runs were kept) group by their first folder
(a whole version for the datahub). Blocking SQLite is fine here: status runs no event loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from transfer.errors import JournalError, JournalUnusable
from transfer.journal import JournalView

from .config import journal_path
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .render import human_size

if TYPE_CHECKING:
    from .config import Config
    from .output import Output


# What a run row carries that is the journal's business (keys with the account), not the user's.
_RUN_INTERNALS = ("prefix", "shown_prefix")


class RemoteNames:
    """Journal keys ('host#5 dataset:<id>@<id>:/a/b.bin') -> the remote row they count in, and
    the key as people read it ('dataset:cifar@v2:/a/b.bin')."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        # Newest first, so a remote renamed since keeps its newest name; longest prefix wins.
        known: dict[str, tuple[str, str]] = {}
        for run in runs:
            if run.get("prefix"):
                known.setdefault(run["prefix"], (run.get("shown_prefix") or "", run["remote"]))
        self._prefixes = sorted(known.items(), key=lambda item: -len(item[0]))

    def _run_of(self, key: str) -> tuple[str, str, str] | None:
        for prefix, (shown, remote) in self._prefixes:
            if key.startswith(prefix):
                return prefix, shown, remote
        return None

    def remote(self, key: str) -> str:
        """The row `key` counts in: the remote of the longest recorded run above it, else its root."""
        run = self._run_of(key)
        return run[2] if run is not None else _root(key)

    def shown(self, key: str) -> str:
        """`key` without the account, a datahub version by its names where a run recorded them."""
        run = self._run_of(key)
        if run is not None and run[1]:
            return run[1] + key[len(run[0]):]
        return key.split(" ", 1)[-1]


def _root(key: str) -> str:
    """'host#5 private:/a/b/c.txt' -> 'private:/a'; 'host#5 dataset:<id>@<id>:/a/b' -> 'dataset:<id>@<id>'."""
    target = key.split(" ", 1)[-1]
    space, _, path = target.partition(":/")
    if "@" in space:
        return space  # a datahub version: one row, not one per subfolder
    top = path.split("/", 1)[0] if "/" in path else ""
    return f"{space}:/{top}"


def _runs_by_remote(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["job"], r["remote"]): {k: v for k, v in r.items() if k not in _RUN_INTERNALS} for r in runs}


def remote_rows(files: list[dict[str, Any]], runs: list[dict[str, Any]], in_flight: str) -> list[dict[str, Any]]:
    """One row per (job, remote): files done/active/interrupted/queued/failed, bytes, the last run."""
    names = RemoteNames(runs)
    last = _runs_by_remote(runs)
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(job: str, remote: str) -> dict[str, Any]:
        return rows.setdefault((job, remote), {
            "job": job, "remote": remote, "done": 0, "queued": 0, "active": 0, "interrupted": 0, "failed": 0,
            "bytes_done": 0, "bytes_total": 0, "last_run": last.get((job, remote))})

    for run in runs:  # newest first: rows in the order their remotes last ran
        row(run["job"], run["remote"])
    for f in files:
        g = row(f["job"], names.remote(f["remote"]))
        state = f["state"]
        g[{"done": "done", "failed": "failed", "sending": in_flight, "merged": in_flight}.get(state, "queued")] += 1
        g["bytes_total"] += f["size"]
        if state == "done":
            g["bytes_done"] += f["size"]
    return list(rows.values())


def cmd_status(config: Config, out: Output) -> int:
    from .daemon.status import daemon_running, read_snapshot, render_snapshot, sync_running

    daemon = read_snapshot(config.state_dir())  # None unless a daemon runs on this state dir
    # Files left `sending` are in flight only while some process holds the state dir; else a run was interrupted.
    live = daemon_running(config.state_dir()) or sync_running(config.state_dir())
    in_flight = "active" if live else "interrupted"
    view = JournalView(journal_path(config))
    aside = [str(p) for p in view.corrupt_copies()]
    notes = [f"note: a damaged journal was moved aside to {aside[-1]} and a new one started"
             + (f" ({len(aside)} such copies)" if len(aside) > 1 else "")] if aside else []
    if not view.exists():
        out.result({"event": "status", "remotes": [], "daemon": daemon, "journal_moved_aside": aside},
                   "\n".join([f"no journal yet at {view.path}", *notes]))
        return EXIT_OK
    try:
        view.check()
        files = view.summary()
        failures = view.failures()
        runs = view.last_runs()
    except JournalError as exc:
        out.result({"event": "status", "remotes": [], "daemon": daemon, "journal_error": str(exc),
                    "journal_moved_aside": aside}, "\n".join([f"journal: {exc}", *notes]))
        return EXIT_USAGE if isinstance(exc, JournalUnusable) else EXIT_FAILED
    names = RemoteNames(runs)
    rows = remote_rows(files, runs, in_flight)
    errors = [{"path": f["local_path"], "remote": names.shown(f["remote"]), "error": f["last_error"],
               "attempts": f["attempts"]} for f in failures]
    if out.json:
        out.jsonl.print({"event": "status", "remotes": rows, "errors": errors,
                         "runs": list(_runs_by_remote(runs).values()), "daemon": daemon,
                         "journal_moved_aside": aside})
        return EXIT_OK
    if daemon is not None:
        print("\n".join(render_snapshot(daemon)))
    print(f"journal: {view.path}")
    for note in notes:
        print(note)
    for g in rows:
        job = f"[{g['job']}] " if g["job"] else ""
        interrupted = f" {g['interrupted']} interrupted (run the same command to resume)," if g["interrupted"] else ""
        print(f"{job}{g['remote']}: {g['done']} done, {g['active']} active,{interrupted} {g['queued']} queued,"
              f" {g['failed']} failed; {human_size(g['bytes_done'])} of {human_size(g['bytes_total'])}")
        if g["last_run"] is not None:
            print(f"  last run: {run_line(g['last_run'])}")
    if errors:
        print("last errors:")
        for e in errors:
            print(f"  {e['path']} -> {e['remote']}: {e['error']}")
    return EXIT_OK


def run_line(run: dict[str, Any]) -> str:
    """'2026-12-02 21:09:43 to 21:09:44 (1.2s) ok, 2 sent, 0 unchanged, 0 failed of 2 files, 1.5 MiB sent'."""
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started_at"]))
    if run["ended_at"] is None:
        return f"started {start}, still running (or killed)"
    end = time.strftime("%H:%M:%S", time.localtime(run["ended_at"]))
    text = f"{start} to {end} ({run['ended_at'] - run['started_at']:.1f}s) {run['result']}"
    if run["result"] in ("ok", "failed"):
        text += (f", {run['files_sent']} sent, {run['files_skipped']} unchanged, {run['files_failed']} failed"
                 f" of {run['files_total']} files, {human_size(run['bytes_sent'])} sent")
    return text
