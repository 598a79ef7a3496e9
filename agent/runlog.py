"""The journal's `runs` table from the application's side: one row per run of a remote (a
one-shot sync, or one batch a daemon job sends), with its start, end, result and counts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from transfer.engine import RunSummary
from transfer.journal import RUN_COUNTS, Journal

from .targets import Target


@dataclass
class RunRecord:
    """How a recorded run ended: `error` unless told otherwise (a run that raised)."""

    result: str = "error"
    counts: dict[str, int] = field(default_factory=dict)

    def ended(self, summary: RunSummary, walk_failures: int = 0) -> None:
        """The run's summary (plus the files its walk could not take, counted as failed)."""
        self.counts = {name: int(getattr(summary, name)) for name in RUN_COUNTS}
        self.counts["files_total"] += walk_failures
        self.counts["files_failed"] += walk_failures
        self.result = "failed" if self.counts["files_failed"] else "ok"


@contextlib.asynccontextmanager
async def recorded_run(journal: Journal, target: Target, namespace: str, job: str = "") -> AsyncIterator[RunRecord]:
    """Record a run of `target` around the block: started now, ended with what the block set on
    the record (`interrupted` when cancelled, `error` when it raised before saying how it ended)."""
    run_id = await journal.run_started(job, str(target), namespace + target.prefix(), target.shown_prefix())
    record = RunRecord()
    try:
        yield record
    except asyncio.CancelledError:
        record.result, record.counts = "interrupted", {}
        raise
    finally:
        await asyncio.shield(journal.run_ended(run_id, record.result, record.counts))
