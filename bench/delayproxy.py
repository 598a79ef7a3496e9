"""A delaying TCP proxy on loopback: each direction held back by a one-way delay (RTT = 2 × delay).

netem is not available in this kernel, so the bench puts this in front of the emulator and of
sshd to play a platform far away. It delays, it does not serialize: every read is timestamped
and forwarded once `delay` has passed since it arrived, while later reads keep arriving, so a
client that keeps enough bytes in flight sees the throughput of the loopback and the
round-trip time of a long link (a long fat network with no loss). Each direction holds at most
`buffer` bytes not yet forwarded; past that it stops reading, and TCP pushes back on the sender.

    python -m bench.delayproxy --target 127.0.0.1:8700 --delay 0.010   # prints "delayproxy on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import deque
from collections.abc import Callable

READ_SIZE = 256 << 10  # what asyncio's socket transport reads at most at once
DEFAULT_BUFFER = 64 << 20  # per direction: throughput up to buffer / delay (6.4 GiB/s at 10 ms)
WRITE_HIGH = 4 << 20  # a destination slower than that pauses the source too
LOOPBACK = "127.0.0.1"


class _Direction:
    """Bytes read from `source`, each piece held until `delay` after it arrived, then written to `sink`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, buffer: int, done: Callable[[], None]) -> None:
        self.loop = loop
        self.delay = delay
        self.buffer = buffer
        self.done = done
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes | None]] = deque()  # (due, data); None = end of stream
        self.held = 0
        self.peak = 0  # most bytes held at once: at most buffer + READ_SIZE
        self.sink_full = False
        self.paused = False
        self.ended = False
        self.timer: asyncio.TimerHandle | None = None

    def push(self, data: bytes | None) -> None:
        if self.ended or (self.queue and self.queue[-1][1] is None):
            return
        self.queue.append((self.loop.time() + self.delay, data))
        if data:
            self.held += len(data)
            self.peak = max(self.peak, self.held)
        self._throttle()
        if self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self._deliver)

    def _deliver(self) -> None:
        """Write out everything whose time has come; arm the timer for the next."""
        self.timer = None
        if self.sink is None:  # not connected yet: hold on (connection_made arms the timer again)
            return
        now = self.loop.time()
        pieces: list[bytes] = []
        end = False
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is None:
                end = True
                break
            pieces.append(data)
        sink = self.sink
        if pieces:
            self.held -= sum(map(len, pieces))
            if sink is not None and not sink.is_closing():
                for piece in pieces:
                    sink.write(piece)
        if end:
            self.ended = True
            if sink is not None and not sink.is_closing():
                try:
                    if sink.can_write_eof():
                        sink.write_eof()
                    else:
                        sink.close()
                except OSError:  # the other end is gone already
                    sink.close()
            self.done()
            return
        self._throttle()
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._deliver)

    def _throttle(self) -> None:
        """Stop reading while the buffer is full or the sink does not keep up; read again once not."""
        stop = self.held >= self.buffer or self.sink_full
        if self.source is None or stop == self.paused or self.source.is_closing():
            return
        self.paused = stop
        if stop:
            self.source.pause_reading()
        else:
            self.source.resume_reading()

    def connected(self) -> None:
        """The sink is there: deliver what waited for it."""
        if self.queue and self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self._deliver)

    def sink_paused(self, full: bool) -> None:
        self.sink_full = full
        self._throttle()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: what it reads goes into `out`; `into` writes to it."""

    def __init__(self, out: _Direction, into: _Direction, lost: Callable[[], None]) -> None:
        self.out = out
        self.into = into
        self.lost = lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.out.source = transport
        self.into.sink = transport
        self.into.connected()

    def data_received(self, data: bytes) -> None:
        self.out.push(data)

    def eof_received(self) -> bool:
        self.out.push(None)
        return True  # keep the socket open: the other direction may still be sending (half close)

    def pause_writing(self) -> None:
        self.into.sink_paused(True)

    def resume_writing(self) -> None:
        self.into.sink_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.out.push(None)  # a reset reaches the other side as an end of stream, after the delay
        self.lost()


class _Connection:
    """A client's connection and the proxy's own to the target, both directions delayed."""

    def __init__(self, proxy: DelayProxy) -> None:
        loop = asyncio.get_running_loop()
        self.proxy = proxy
        self.up = _Direction(loop, proxy.delay, proxy.buffer, self._check_done)  # client -> target
        self.down = _Direction(loop, proxy.delay, proxy.buffer, self._check_done)  # target -> client
        self.client = _Side(self.up, self.down, self._check_done)
        self.server = _Side(self.down, self.up, self._check_done)

    def _check_done(self) -> None:
        """Close both sockets once both directions delivered their end of stream."""
        if self.up.ended and self.down.ended:
            self.close()

    def close(self) -> None:
        self.proxy.peak_held = max(self.proxy.peak_held, self.up.peak, self.down.peak)
        self.proxy.open.discard(self)
        for d in (self.up, self.down):
            d.cancel()
            if d.source is not None:
                d.source.close()


class DelayProxy:
    """Listens on loopback and forwards every connection to `target`, each direction delayed."""

    def __init__(self, target: tuple[str, int], delay: float, *, buffer: int = DEFAULT_BUFFER, port: int = 0) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.target = target
        self.delay = delay
        self.buffer = buffer
        self.port = port
        self.connections = 0
        self.peak_held = 0  # most bytes one direction of one connection held at once
        self.open: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> DelayProxy:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, LOOPBACK, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.open):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> DelayProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _accept(self) -> _Side:
        conn = _Connection(self)
        self.connections += 1
        self.open.add(conn)
        asyncio.ensure_future(self._dial(conn))
        return conn.client

    async def _dial(self, conn: _Connection) -> None:
        """Connect to the target; until then the client's bytes wait in `up` (held, so bounded)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: conn.server, *self.target)
        except OSError:
            conn.close()


def _target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or LOOPBACK, int(port)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with DelayProxy(args.target, args.delay, buffer=args.buffer, port=args.port) as proxy:
        print(f"delayproxy on {LOOPBACK}:{proxy.port} -> {args.target[0]}:{args.target[1]}"
              f" delay {args.delay * 1000:g} ms each way", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.delayproxy", description=__doc__.splitlines()[0])
    p.add_argument("--target", type=_target, required=True, help="HOST:PORT to forward to")
    p.add_argument("--delay", type=float, default=0.0, help="one-way delay in seconds (RTT = 2 × delay)")
    p.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (default: a free one)")
    p.add_argument("--buffer", type=int, default=DEFAULT_BUFFER, help="bytes held per direction at most")
    args = p.parse_args(argv)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
