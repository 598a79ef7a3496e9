"""Case 6 of issue 7: what a SIGKILL at 50 % of a large file costs the run that follows."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .cases import CHUNK_SIZE, CHUNKS_PER_FILE, Bench, sent_all
from .data import MiB, human
from .report import CaseResult, Row


class LogTail:
    """Reads the emulator's request log (requests.jsonl) incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.entries: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self.entries += new
        return new


def _uploads(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("path") == "/api/file/file/uploadFile"]


def case_resume(b: Bench) -> CaseResult:
    path = b.data.big
    size = path.stat().st_size
    total = math.ceil(size / CHUNK_SIZE)
    result = CaseResult(6, f"Resume cost: SIGKILL at 50 % of the {human(size)} file, then the same command again")
    with b.emulator() as emu:
        state = b.state("state-resume")
        tail = LogTail(emu.log_path)
        at_kill: dict[str, Any] = {}

        def kill_at_half(pid: int, finished: threading.Event) -> None:
            while not finished.wait(0.01):
                tail.poll()
                stored = sum(1 for e in _uploads(tail.entries) if e.get("ok"))
                if stored >= total // 2:
                    # Chunks being received sit in the platform's tmp/ as up-* files: those are the
                    # requests the kill cuts (the request log has no line for a cut request). Look just
                    # before the kill: the platform deletes them as soon as the connections drop.
                    at_kill.update(stored=stored, receiving=_receiving(emu.root / "tmp"))
                    os.kill(pid, signal.SIGKILL)
                    return

        first = b.hubsync(emu, state, path, "private:/large", "--transport", "http",
                          label="hubsync sync (killed at 50 %, then run again)", watch=kill_at_half)
        first.check(kill_expected=True)
        if not first.killed:
            raise RuntimeError("hubsync finished before it could be killed at 50 %")
        # The emulator logs a request when its handler ends: let the ones under way finish first.
        seen = -1
        while seen != len(tail.entries):
            seen = len(tail.entries)
            time.sleep(0.5)
            tail.poll()
        before = list(tail.entries)
        second = b.hubsync(emu, state, path, "private:/large", "--transport", "http")
        sent_all(second, 1)
        tail.poll()
        after = tail.entries[len(before):]
    stored = {e["index"]: e.get("chunk_bytes", 0) for e in _uploads(before) if e.get("ok")}
    # A request being received at the kill that still completed is stored, not cut.
    finished_late = len(stored) - at_kill["stored"]
    receiving: list[int] = at_kill["receiving"]
    cut = max(0, len(receiving) - finished_late)
    cut_bytes = max(0, sum(receiving) - finished_late * CHUNK_SIZE)
    rerun = [e for e in _uploads(after) if e.get("ok")]
    resent_stored = sum(e.get("chunk_bytes", 0) for e in rerun if e["index"] in stored)
    needed = size - sum(stored.values())
    sent_again = sum(e.get("chunk_bytes", 0) for e in rerun)
    resent = resent_stored + cut_bytes
    aim = CHUNKS_PER_FILE * CHUNK_SIZE / MiB
    result.rows.append(Row("bytes sent twice (stored chunks sent again + what the kill cut)", "MiB",
                           [resent / MiB], aim=aim, aim_kind="max", emu_hubsync=[second.emulator_share]))
    result.notes += [
        f"{total} chunks of {human(CHUNK_SIZE)}; hubsync was killed {first.wall:.1f} s in, once the platform had"
        f" stored {at_kill['stored']} chunks; {cut} uploadFile requests were cut, the platform had received"
        f" {cut_bytes / MiB:.1f} MiB of them (upper bound: {cut} × {human(CHUNK_SIZE)}).",
        f"The second run (same command, same journal) sent {sent_again / MiB:.0f} MiB in {len(rerun)} chunks"
        f" where {needed / MiB:.0f} MiB were missing; stored chunks sent again: {resent_stored / MiB:.0f} MiB;"
        f" it took {second.wall:.1f} s.",
        f"Aim: at most chunks_per_file × chunk_size = {CHUNKS_PER_FILE} × {human(CHUNK_SIZE)}.",
    ]
    return result


def _receiving(tmp: Path) -> list[int]:
    """Sizes of the upload bodies the platform is receiving (its tmp/up-* files)."""
    sizes = []
    for entry in os.scandir(tmp):
        if entry.name.startswith("up-"):
            try:
                sizes.append(entry.stat().st_size)
            except FileNotFoundError:
                continue
    return sizes


