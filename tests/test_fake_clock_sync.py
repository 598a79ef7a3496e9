"""A whole sync on a fake clock: every wait (back-off, Retry-After, settling, confirming) takes no real time.

The composition root's Services.open takes the clock; the engine and the chunk destination run
against the emulator with 500s and 503 + Retry-After injected, and one file changes while it is
sent (the engine waits for it to settle). The fake clock moves on by at least what the platform
asked for while the real clock barely moves.
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.config import Config
from agent.service import Services
from emulator.testing import EmulatorThread
from transfer.engine import SendItem
from transfer.hashing import stat_file
from transfer.models import RemoteTarget, Space
from transfer.progress import Event

from .clocks import FakeClock
from .conftest import ALICE, KEY, md5_of, write_random

RETRY_AFTER = 40  # seconds the platform asks for: far longer than the whole test may take


class _EditOnce:
    """A progress sink that appends to one file the moment its first send starts (a user editing it)."""

    def __init__(self, path: Path, rel: str) -> None:
        self.path, self.rel = path, rel
        self.edited = False
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if event.kind == "started" and event.path == self.rel and not self.edited:
            self.edited = True
            with open(self.path, "ab") as f:
                f.write(b"more")


def _folder_and_name(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition("/")
    return folder, name


async def test_a_full_sync_waits_on_the_fake_clock_only(emu: EmulatorThread, tmp_path: Path) -> None:
    emu.faults.update({"seed": 11, "chunk_error_rate": 0.3, "busy_rate": 0.2, "retry_after": RETRY_AFTER,
                       "max_consecutive_errors": 2})
    src = tmp_path / "src"
    sizes = {"a.bin": 3 << 20, "b.bin": (2 << 20) + 5, "c.txt": 10_000, "d/e.bin": (1 << 20) + 1}
    for i, (rel, size) in enumerate(sizes.items()):
        write_random(src / rel, size, seed=i)
    config = Config.model_validate({
        "platform": {"url": emu.url, "username": ALICE[0], "password": ALICE[1], "password_key": KEY},
        "transfer": {"chunk_size": "1MiB", "give_up_after": 600},  # fake time runs ahead with many sleepers
        "state": {"dir": str(tmp_path / "state")},
    })
    clock = FakeClock()
    sink = _EditOnce(src / "a.bin", "a.bin")
    started = time.monotonic()
    services = await Services.open(config, clock=clock)
    try:
        engine = await services.engine("http", sink)
        items = [SendItem(stat_file(str(src / rel), rel), RemoteTarget(Space.PRIVATE, *_folder_and_name("up/" + rel)))
                 for rel in sizes]
        summary = await engine.run(items, remote_prefix="private:/up/")
    finally:
        await services.close()
    real = time.monotonic() - started

    assert summary.files_failed == 0 and summary.files_sent == len(sizes), summary.failures
    for rel in sizes:
        assert md5_of(emu.private_path(f"up/{rel}")) == md5_of(src / rel)
    faults = [e.get("fault") for e in emu.log_entries()]
    assert "busy" in faults and "chunk_error" in faults, faults
    assert sink.edited and any("sending again once stable" in (e.message or "") for e in sink.events)
    # The platform's Retry-After, the back-off and the settle wait all went by on the fake clock...
    assert RETRY_AFTER in clock.sleeps
    assert clock.elapsed >= RETRY_AFTER + engine.settle_seconds
    # ...and none of it in real time.
    assert real < RETRY_AFTER / 2, real
