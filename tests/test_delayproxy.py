"""bench/delayproxy.py: the round trip it adds, the bytes it passes, and that it delays without serializing.

Timing here has generous margins on the side load can push (a busy machine only adds time),
and exact bounds on the side it cannot: a reply can never come back sooner than 2 × delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator

import pytest

from bench.delayproxy import READ_SIZE, DelayProxy

from .conftest import REPO

MiB = 1 << 20


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _ping_pong(port: int, rounds: int) -> list[float]:
    """Seconds per round trip of one small message (the next one sent when the answer is back)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    try:
        for i in range(rounds):
            message = f"ping {i:04d}".encode()
            t = time.perf_counter()
            writer.write(message)
            await writer.drain()
            assert await reader.readexactly(len(message)) == message
            times.append(time.perf_counter() - t)
    finally:
        writer.close()
    return times


async def _stream(port: int, payload: bytes, piece: int = 1 << 16) -> tuple[bytes, float]:
    """Send `payload` in pieces without waiting for answers, read the echo back: (echo, seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t = time.perf_counter()

    async def send() -> None:
        for at in range(0, len(payload), piece):
            writer.write(payload[at:at + piece])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    got = await reader.read(-1)  # to the echo's end of stream
    await sender
    writer.close()
    return got, time.perf_counter() - t


async def test_adds_the_round_trip_it_is_set_to(echo: int) -> None:
    delay = 0.025
    direct = await _ping_pong(echo, 10)
    async with DelayProxy(("127.0.0.1", echo), delay) as proxy:
        delayed = await _ping_pong(proxy.port, 20)
    assert min(delayed) >= 2 * delay  # never sooner: each direction held back by the delay
    added = statistics.median(delayed) - statistics.median(direct)
    assert 2 * delay - 0.002 <= added <= 2 * delay + 0.030, (direct, delayed)


async def test_bytes_pass_unchanged_and_in_flight_together(echo: int) -> None:
    payload = os.urandom(16 * MiB + 12345)
    delay = 0.1
    async with DelayProxy(("127.0.0.1", echo), delay) as proxy:
        got, seconds = await _stream(proxy.port, payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest() and len(got) == len(payload)
    # 257 writes: held back one by one, they would take 257 × 2 × delay = 51 s. Delayed together,
    # the whole echo is back one round trip (0.2 s) after the last byte left.
    assert 2 * delay <= seconds < 2 * delay + 4.0
    assert proxy.connections == 1


async def test_holds_at_most_its_buffer(echo: int) -> None:
    """A small buffer bounds what is held, and so the throughput: about buffer / delay."""
    payload = os.urandom(8 * MiB)
    delay, buffer = 0.2, 1 * MiB
    async with DelayProxy(("127.0.0.1", echo), delay, buffer=buffer) as proxy:
        got, seconds = await _stream(proxy.port, payload)
    assert got == payload
    assert 0 < proxy.peak_held <= buffer + READ_SIZE
    # At most buffer + READ_SIZE bytes per delay go through one direction: 8 MiB need >= 4 delays.
    assert seconds >= len(payload) / (buffer + READ_SIZE) * delay


async def test_command_line_proxy_forwards(echo: int) -> None:
    """`python -m bench.delayproxy` prints its port and forwards until SIGTERM (how the bench runs it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.delayproxy", "--target", f"127.0.0.1:{echo}", "--delay", "0.005",
        cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("delayproxy on 127.0.0.1:"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        got, seconds = await _stream(port, b"hello through the proxy")
        assert got == b"hello through the proxy" and seconds >= 0.010
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
