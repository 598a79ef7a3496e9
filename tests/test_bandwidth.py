"""The token bucket, with a fake clock: the average rate holds, bursts are bounded."""

from tests.clocks import FakeClock
from transfer.bandwidth import TokenBucket


async def test_average_rate_is_enforced() -> None:
    t = FakeClock(0.0)
    bucket = TokenBucket(1000, clock=t)
    for _ in range(10):
        await bucket.consume(500)
    # 5000 bytes at 1000 B/s with a 1000-byte initial burst: 4 s of waiting
    assert abs(t.now() - 4.0) < 1e-9


async def test_request_larger_than_burst_goes_through_in_debt() -> None:
    t = FakeClock(0.0)
    bucket = TokenBucket(100, burst=100, clock=t)
    await bucket.consume(1000)  # admitted with a full bucket, leaves 900 bytes of debt
    assert t.now() == 0.0
    await bucket.consume(100)
    assert abs(t.now() - 10.0) < 1e-9
