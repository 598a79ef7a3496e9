"""The token bucket, with a fake clock: the average rate holds, bursts are bounded."""

from transfer.bandwidth import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


async def test_average_rate_is_enforced() -> None:
    t = FakeTime()
    bucket = TokenBucket(1000, clock=t.clock, sleep=t.sleep)
    for _ in range(10):
        await bucket.consume(500)
    # 5000 bytes at 1000 B/s with a 1000-byte initial burst: 4 s of waiting
    assert abs(t.now - 4.0) < 1e-9


async def test_request_larger_than_burst_goes_through_in_debt() -> None:
    t = FakeTime()
    bucket = TokenBucket(100, burst=100, clock=t.clock, sleep=t.sleep)
    await bucket.consume(1000)  # admitted with a full bucket, leaves 900 bytes of debt
    assert t.now == 0.0
    await bucket.consume(100)
    assert abs(t.now - 10.0) < 1e-9
