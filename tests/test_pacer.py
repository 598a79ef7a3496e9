"""Retry policy: what is retried, how long it waits (counted with a fake sleep, not timed)."""

import pytest

from transfer.envelope import classify
from transfer.errors import AuthExpired, EndpointUnavailable, Fatal, Retryable
from transfer.pacer import Pacer


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_retries_until_success_with_growing_backoff() -> None:
    sleep = FakeSleep()
    pacer = Pacer(attempts=6, base_delay=1.0, max_delay=100.0, sleep=sleep, rng=lambda: 1.0)
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise Retryable("HTTP 500")
        return "ok"

    assert await pacer.call(flaky) == "ok"
    assert sleep.delays == [1.0, 2.0, 4.0]


async def test_retry_after_is_honoured() -> None:
    sleep = FakeSleep()
    pacer = Pacer(base_delay=0.1, sleep=sleep, rng=lambda: 0.0)
    calls = []

    async def busy() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise Retryable("HTTP 503", retry_after=7)
        return 1

    await pacer.call(busy)
    assert sleep.delays == [7]


async def test_gives_up_after_attempts() -> None:
    sleep = FakeSleep()
    pacer = Pacer(attempts=3, sleep=sleep)

    async def down() -> None:
        raise Retryable("reset")

    with pytest.raises(Retryable):
        await pacer.call(down)
    assert len(sleep.delays) == 2


@pytest.mark.parametrize("error", [Fatal("400"), AuthExpired("401"), EndpointUnavailable("404")])
async def test_non_retryable_errors_are_not_retried(error: Exception) -> None:
    sleep = FakeSleep()
    calls = []

    async def refuse() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        await Pacer(sleep=sleep).call(refuse)
    assert calls == [1] and sleep.delays == []


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
