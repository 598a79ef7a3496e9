"""SFTP channels sized from the measured round trip × throughput (transfer/destinations/sftp_channels.py).

The rule on a fake clock, then the real thing: the emulator's SFTP server behind the bench's
delay proxy, far enough away that one channel's window binds; and on loopback, where it does not.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.delayproxy import DelayProxy
from emulator.testing import EmulatorThread
from transfer import remotepath
from transfer.api import PlatformClient
from transfer.destinations.base import ConfirmItem, ResumeState
from transfer.destinations.sftp import SftpDestination
from transfer.destinations.sftp_channels import WINDOW_BOUND, Ramp
from transfer.hashing import hash_file, stat_file
from transfer.journal import Journal
from transfer.models import RemoteTarget, Space

from .conftest import ALICE, KEY, md5_of, write_random

MiB = 1 << 20
CS = 8 * MiB


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _feed(ramp: Ramp, clock: Clock, acked: int, rate: float, channels: int, seconds: float) -> tuple[int, bool]:
    """Acknowledge at `rate` bytes/s for `seconds`, a chunk at a time; True if the ramp asked for a channel."""
    asked = False
    step = CS / rate
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        acked += CS
        asked = ramp.grow(acked, channels) or asked
        if asked:
            break
    return acked, asked


def test_a_window_bound_channel_asks_for_more_until_one_more_does_not_pay() -> None:
    clock = Clock()
    ramp = Ramp(0.020, 4, 0, span=2 * CS, clock=clock)
    # 44 MiB/s at 20 ms: 0.88 MiB in flight per round trip, past the window bound
    assert 44 * MiB * 0.020 >= WINDOW_BOUND
    acked, asked = _feed(ramp, clock, 0, 44 * MiB, 1, 2.0)
    assert asked
    acked, asked = _feed(ramp, clock, acked, 85 * MiB, 2, 2.0)  # it paid: one more
    assert asked and not ramp.done
    acked, asked = _feed(ramp, clock, acked, 90 * MiB, 3, 2.0)  # +6 %: the CPUs are the bound now
    assert not asked and ramp.done
    assert not _feed(ramp, clock, acked, 200 * MiB, 3, 2.0)[1]  # and it stays so for this file


def test_no_channel_is_added_near_zero_latency_nor_past_the_limit() -> None:
    clock = Clock()
    lan = Ramp(0.0003, 4, 0, span=2 * CS, clock=clock)  # 300 µs: a few KiB in flight per round trip
    assert not _feed(lan, clock, 0, 150 * MiB, 1, 5.0)[1]
    capped = Ramp(0.020, 2, 0, span=2 * CS, clock=clock)
    acked, asked = _feed(capped, clock, 0, 44 * MiB, 1, 2.0)
    assert asked
    assert not _feed(capped, clock, acked, 88 * MiB, 2, 2.0)[1] and capped.done
    assert Ramp(float("inf"), 4, 0, span=CS, clock=clock).done  # no round trip measured: nothing to size from


def test_a_measured_span_lasts_several_round_trips() -> None:
    """Acks come in bursts of what is in flight: a span shorter than MIN_RTTS round trips is not judged."""
    clock = Clock()
    ramp = Ramp(0.100, 4, 0, span=2 * CS, clock=clock)
    clock.now = 0.05
    assert not ramp.grow(4 * CS, 1)  # 32 MiB in 50 ms (a burst): too short to tell
    clock.now = 1.0
    assert ramp.grow(6 * CS, 1)  # 48 MiB/s over 1 s at 100 ms: window bound


@pytest.fixture
async def far_sftp(emu_sftp: EmulatorThread) -> AsyncIterator[EmulatorThread]:
    """The emulator's SFTP service 100 ms away: queryUserInfo reports a delay proxy's port."""
    async with DelayProxy(("127.0.0.1", emu_sftp.sftp_port), 0.050) as proxy:
        emu_sftp.config.sftp_port = proxy.port
        yield emu_sftp


async def _send(emu: EmulatorThread, tmp_path: Path, size: int) -> int:
    """Send one file of `size` bytes (md5-exact, no part file left); the channels it went through."""
    src = write_random(tmp_path / "src" / "big.bin", size, seed=7)
    local = stat_file(src, "big.bin")
    digest = hash_file(local)
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS)
        try:
            record = await journal.begin(local, "k", md5=digest.md5, chunk_size=CS, transport="sftp")
            await dest.send(local, digest, RemoteTarget(Space.PRIVATE, "far", "big.bin"),
                            ResumeState(journal, record, digest.md5, CS), lambda n, crossed: None)
            channels = dest.channels(Space.PRIVATE)
        finally:
            await dest.close()
            await journal.close()
    assert md5_of(emu.private_path("far/big.bin")) == digest.md5
    assert not list(emu.private_path("far").glob("*" + remotepath.PART_SUFFIX))
    return channels


async def test_far_away_a_large_file_goes_through_more_channels(far_sftp: EmulatorThread, tmp_path: Path) -> None:
    assert await _send(far_sftp, tmp_path, 64 * MiB + 5) >= 2


async def test_on_loopback_one_channel_is_enough(emu_sftp: EmulatorThread, tmp_path: Path) -> None:
    assert await _send(emu_sftp, tmp_path, 48 * MiB + 5) == 1


async def test_far_away_confirming_keeps_a_round_trip_of_stats_in_flight(far_sftp: EmulatorThread,
                                                                         tmp_path: Path) -> None:
    """128 files 100 ms away: with 8 stats in flight their confirmation took 16 round trips (1.6 s)."""
    src = write_random(tmp_path / "src" / "one.bin", 1000, seed=1)
    local = stat_file(src, "one.bin")
    digest = hash_file(local)
    for i in range(128):  # as if sent by this run: on the platform's disk
        write_random(far_sftp.private_path(f"many/f{i}.bin"), 100 + i, seed=i)
    async with PlatformClient(far_sftp.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        dest = SftpDestination(api, pin_file=tmp_path / "known_hosts", chunk_size=CS)
        try:
            record = await journal.begin(local, "k", md5=digest.md5, chunk_size=CS, transport="sftp")
            await dest.send(local, digest, RemoteTarget(Space.PRIVATE, "many", "one.bin"),  # measures the round trip
                            ResumeState(journal, record, digest.md5, CS), lambda n, crossed: None)
            items = [ConfirmItem(RemoteTarget(Space.PRIVATE, "many", f"f{i}.bin"), 100 + i) for i in range(128)]
            started = time.perf_counter()
            confirmations = await dest.confirm(items)
            seconds = time.perf_counter() - started
        finally:
            await dest.close()
            await journal.close()
    assert [c.error for c in confirmations] == [None] * 128
    assert seconds < 1.0  # 64 in flight: 2 round trips of stats (and 8 md5 probes over HTTP, direct)
