"""More SFTP channels for a large file when the round-trip time, not the link, bounds one channel.

An SSH channel carries at most its window (the server's; OpenSSH's is 2 MiB) per round trip,
however many SFTP writes are outstanding: at 20 ms that is ~45 MiB/s measured against OpenSSH,
a quarter of what the same channel does at ~0 ms. Each channel has its own window, so a part
file written through k channels of the one connection (each with its own handle on the file)
moves k windows per round trip.

How many: sized from what is measured, not fixed. The session keeps the shortest round trip of
a small request it saw (`rtt`); while a large file is written, the throughput of each chunk is
measured, and when the bytes one channel has in flight per round trip (throughput × rtt ÷
channels, the bandwidth-delay product per channel) reach WINDOW_BOUND, the channel is window
bound and one more is opened. It stops growing at `max_channels`, or as soon as one more channel
did not raise the throughput by GAIN (the link or the CPUs are the bound then). At ~0 ms the
product is a few KiB and no channel is ever added. Channels, once opened, stay with the
connection for the next files (connection reuse), so only the first large file ramps up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh

log = logging.getLogger("hubsync.sftp")

WINDOW_BOUND = 512 << 10  # bytes in flight per channel and round trip from which a window binds
GAIN = 1.15  # one more channel must raise the throughput by this much to try the next
MIN_RTTS = 8  # round trips a measured span lasts at least


@dataclass
class Session:
    """One SSH connection to a space: its first SFTP channel, those added for large files, its round trip."""

    conn: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    extra: list[asyncssh.SFTPClient] = field(default_factory=list)
    rtt: float = math.inf  # seconds: the shortest round trip of a small request seen on this connection

    def observe(self, seconds: float) -> None:
        self.rtt = min(self.rtt, seconds)

    @property
    def channels(self) -> int:
        return 1 + len(self.extra)


class Ramp:
    """Decides, as acknowledgements come in, whether one more channel would pay.

    Throughput is measured over spans of at least `span` bytes and MIN_RTTS round trips: acks
    come in bursts as large as what is in flight, so a shorter span measures the bursts.
    """

    def __init__(self, rtt: float, max_channels: int, start: int, span: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.rtt = rtt
        self.max_channels = max_channels
        self.span = span
        self.clock = clock
        self.at_time = clock()
        self.at_bytes = start
        self.before = 0.0  # bytes/s measured just before the last channel was asked for
        self.grew = False  # the last measurement asked for one more channel
        self.done = max_channels <= 1 or not math.isfinite(rtt)

    def restart(self, acked: int) -> None:
        """Measure from here (a channel was being opened until now)."""
        self.at_time, self.at_bytes = self.clock(), acked

    def grow(self, acked: int, channels: int) -> bool:
        """True when one more channel should be opened (at most once per measured span)."""
        if self.done:
            return False
        now = self.clock()
        if acked - self.at_bytes < self.span or now - self.at_time < MIN_RTTS * self.rtt:
            return False
        rate = (acked - self.at_bytes) / max(now - self.at_time, 1e-6)
        self.restart(acked)
        if self.grew and rate < self.before * GAIN:  # the channel just added did not pay: stop here
            self.done = True
            return False
        self.grew = channels < self.max_channels and rate / channels * self.rtt >= WINDOW_BOUND
        self.before = rate
        self.done = channels >= self.max_channels
        return self.grew


class PartWriters:
    """A part file open on every channel of a session; each write goes to the least busy one."""

    def __init__(self, session: Session, part: str, first: asyncssh.SFTPClientFile, flags: int) -> None:
        self.session = session
        self.part = part
        self.flags = flags
        self.files: list[asyncssh.SFTPClientFile] = [first]
        self.busy: list[int] = [0]
        self.opening: asyncio.Task[None] | None = None
        self.refused = False  # the server opens no more channels

    async def open_known(self) -> None:
        """Open the part on the channels the connection has already (one round trip, together)."""
        files = await asyncio.gather(*(sftp.open(self.part, self.flags, encoding=None) for sftp in self.session.extra))
        self.files += files
        self.busy += [0] * len(files)

    def add_channel(self) -> None:
        """Open one more channel and the part on it, in the background: writes go on meanwhile."""
        if not self.refused and (self.opening is None or self.opening.done()):
            self.opening = asyncio.ensure_future(self._add())

    async def _add(self) -> None:
        try:
            sftp = await self.session.conn.start_sftp_client()
        except (asyncssh.Error, OSError) as exc:  # e.g. OpenSSH's MaxSessions: make do with those open
            self.refused = True
            log.info("no more SFTP channels on this connection (%s); going on with %d", exc, len(self.files))
            return
        self.session.extra.append(sftp)
        file = await sftp.open(self.part, self.flags, encoding=None)
        self.files.append(file)
        self.busy.append(0)

    @property
    def growing(self) -> bool:
        return self.opening is not None and not self.opening.done()

    async def write(self, data: bytes, offset: int) -> int:
        i = min(range(len(self.files)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            return await self.files[i].write(data, offset)
        finally:
            self.busy[i] -= 1

    async def close(self) -> None:
        """Close every handle, the first one too (a channel still opening is given up)."""
        opening, self.opening = self.opening, None
        failed: BaseException | None = None
        if opening is not None:
            opening.cancel()
            (failed,) = await asyncio.gather(opening, return_exceptions=True)
        await asyncio.gather(*(f.close() for f in self.files))
        if isinstance(failed, Exception):
            raise failed  # the part could not be opened on the new channel: the transfer's failure
