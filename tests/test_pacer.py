"""Retry policy: what is retried, how long it waits (counted with a fake sleep, not timed)."""

import pytest

from tests.clocks import FakeClock
from transfer.envelope import classify
from transfer.errors import AuthExpired, EndpointUnavailable, Fatal, GaveUp, Retryable
from transfer.pacer import Pacer


async def test_retries_until_success_with_growing_backoff() -> None:
    clock = FakeClock()
    pacer = Pacer(give_up_after=100, base_delay=1.0, max_delay=100.0, clock=clock, rng=lambda: 1.0)
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise Retryable("HTTP 500")
        return "ok"

    assert await pacer.call(flaky) == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    pacer = Pacer(base_delay=0.1, clock=clock, rng=lambda: 0.0)
    calls = []

    async def busy() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise Retryable("HTTP 503", retry_after=7)
        return 1

    await pacer.call(busy)
    assert clock.sleeps == [7]


async def test_gives_up_once_the_budget_is_spent_and_says_so() -> None:
    clock = FakeClock()
    pacer = Pacer(give_up_after=20, base_delay=1.0, max_delay=8.0, clock=clock, rng=lambda: 1.0)

    async def down() -> None:
        raise Retryable("reset", endpoint="/x")

    with pytest.raises(GaveUp, match=r"/x: reset \(gave up after 15s, 5 attempts\)") as gave_up:
        await pacer.call(down)
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # the next pause (8 s) would end past 20 s
    assert isinstance(gave_up.value.last, Retryable)
    assert not isinstance(gave_up.value, Retryable)  # no other pacer retries it: retries never nest


async def test_a_refused_connection_is_retried_only_for_its_patience() -> None:
    clock = FakeClock()
    pacer = Pacer(give_up_after=300, base_delay=1.0, max_delay=8.0, clock=clock, rng=lambda: 1.0)

    async def refused() -> None:
        raise Retryable("connection refused", patience=10)

    with pytest.raises(GaveUp):
        await pacer.call(refused)
    assert clock.elapsed <= 10 and clock.sleeps == [1.0, 2.0, 4.0]


async def test_retry_after_slows_every_call_of_the_pacer() -> None:
    clock = FakeClock()
    pacer = Pacer(base_delay=0.1, clock=clock, rng=lambda: 0.0)
    calls = []

    async def busy() -> None:
        calls.append(clock.now())
        if len(calls) == 1:
            raise Retryable("HTTP 503", retry_after=5)

    await pacer.call(busy)

    async def other() -> float:
        return clock.now()

    # A second call right after still honours the server's 5 s (shared back-off state).
    assert await pacer.call(other) >= calls[0] + 5


async def test_poll_until_meets_the_predicate_or_the_deadline() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    seen = []

    async def third_time() -> bool:
        seen.append(clock.now())
        return len(seen) == 3

    assert await pacer.poll_until(third_time, pacer.deadline(60))
    assert len(seen) == 3

    async def never() -> bool:
        return False

    start = clock.now()
    assert not await pacer.poll_until(never, pacer.deadline(30))
    assert 30 <= clock.now() - start < 30.001  # never sleeps past the deadline


@pytest.mark.parametrize("error", [Fatal("400"), AuthExpired("401"), EndpointUnavailable("404")])
async def test_non_retryable_errors_are_not_retried(error: Exception) -> None:
    clock = FakeClock()
    calls = []

    async def refuse() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        await Pacer(clock=clock).call(refuse)
    assert calls == [1] and clock.sleeps == []


def test_classification_of_envelopes() -> None:
    ok = classify(200, b'{"success":true,"errorCode":200,"result":[1]}', None, endpoint="/x")
    assert ok.result == [1]
    assert classify(200, b'{"code":0,"success":true,"data":"x"}', None, endpoint="/x").data == "x"
    assert classify(200, b'{"code":200,"msg":"ok","token":"t"}', None, endpoint="/x").ok
    with pytest.raises(AuthExpired):
        classify(200, b'{"code":401,"msg":"auth"}', None, endpoint="/x")
    with pytest.raises(AuthExpired):
        classify(200, b'{"success":false,"errorCode":401}', None, endpoint="/x")
    with pytest.raises(AuthExpired):
        classify(401, b"", None, endpoint="/x")
    with pytest.raises(Fatal, match="bad"):
        classify(200, b'{"success":false,"errorCode":400,"message":"bad"}', None, endpoint="/x")
    with pytest.raises(Retryable) as busy:
        classify(503, b"", "12", endpoint="/x")
    assert busy.value.retry_after == 12
    with pytest.raises(Retryable):
        classify(429, b"", "Wed, 21 Oct 2015 07:28:00 GMT", endpoint="/x")
    with pytest.raises(EndpointUnavailable):
        classify(404, b"", None, endpoint="/x")
    with pytest.raises(Fatal):
        classify(400, b'{"success":false,"errorCode":400}', None, endpoint="/x")
