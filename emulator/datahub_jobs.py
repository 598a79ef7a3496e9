"""The datahub's asynchronous work: version creation, chunk assembly and imports.

Each job is a task on the emulator's loop that waits its configured delay (faults.py), then
does its disk work through `asyncio.to_thread`. A caller sees the result only by querying, as on
the platform. Jobs are cancelled when the app shuts down; creations and assemblies still pending
are resumed by the next run on the same root, imports are not (the platform's copy was lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .datahub_files import SubmitStore, copy_in, place_file
from .datahub_store import FINISHED, DatahubStore
from .faults import Faults


class DatahubJobs:
    """Starts and tracks the background jobs of one running emulator."""

    def __init__(self, store: DatahubStore, submits: SubmitStore, faults: Faults) -> None:
        self.store = store
        self.submits = submits
        self.faults = faults
        self._tasks: set[asyncio.Task[None]] = set()

    def resume(self) -> None:
        """Restart the creations and assemblies an earlier run left unfinished."""
        for asset, version in self.store.pending_versions():
            self.create_version(asset.id, version.id, fail=False)
        for submit_id in self.submits.assembling():
            self.assemble(submit_id)

    async def close(self) -> None:
        """Cancel every job still waiting or running."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def create_version(self, asset_id: str, version_id: str, *, fail: bool) -> None:
        """Finish a version in creation after `datahub_create_delay` (status 2 if `fail`)."""
        delay = self.faults.datahub_create_delay
        self._spawn(self._later(delay, self.store.finish_version, asset_id, version_id, fail))

    def assemble(self, submit_id: str) -> None:
        """Assemble a complete submitId into its version after `datahub_assemble_delay`."""
        self._spawn(self._later(self.faults.datahub_assemble_delay, self._assemble, submit_id))

    def import_files(
        self, asset_id: str, version_id: str, folder: tuple[str, ...], sources: list[Path]
    ) -> None:
        """Copy `sources` into `folder` of a version after `datahub_import_delay`.

        The sources are read when the job runs, not when it was asked for: one removed in
        between is silently not imported (protocol.md §6). With `datahub_import_drop` the job is
        never started.
        """
        if self.faults.datahub_import_drop:
            return
        delay = self.faults.datahub_import_delay
        self._spawn(self._later(delay, self._import, asset_id, version_id, folder, sources))

    # -- the jobs' bodies (blocking, run in a worker thread) ----------------------------------

    def _assemble(self, submit_id: str) -> None:
        plan = self.submits.plan(submit_id)
        if plan is None:
            return
        asset = self.store.asset(plan.asset_id)
        version = asset.version(plan.version_id) if asset else None
        if asset is None or version is None or version.status != FINISHED:
            self.submits.set_state(submit_id, "failed")  # the version is gone
            return
        try:
            joined = self.submits.concatenate(submit_id, plan.total, self.store.tmp_dir)
        except OSError:
            self.submits.set_state(submit_id, "failed")
            return
        try:
            place_file(self.store.files_dir(asset, version.id), plan.current_path, plan.file_path, joined)
        except Exception:
            # E.g. a folder took the target's name meanwhile: the file never appears.
            joined.unlink(missing_ok=True)
            self.submits.set_state(submit_id, "failed")
            return
        self.submits.set_state(submit_id, "assembled")

    def _import(self, asset_id: str, version_id: str, folder: tuple[str, ...], sources: list[Path]) -> None:
        asset = self.store.asset(asset_id)
        version = asset.version(version_id) if asset else None
        if asset is None or version is None or version.status != FINISHED:
            return
        files_dir = self.store.files_dir(asset, version_id)
        for source in sources:
            if not source.exists():
                continue  # removed before the job ran: lost
            try:
                copy_in(source, files_dir, folder, self.store.tmp_dir)
            except Exception:
                continue  # e.g. a folder in the way: this source does not appear

    # -- plumbing ---------------------------------------------------------------------------------

    @staticmethod
    async def _later(delay: float, work: Any, *args: Any) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.to_thread(work, *args)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
