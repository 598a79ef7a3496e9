"""The bounded worker pool both chunked destinations send their chunks through."""

from __future__ import annotations

import asyncio

import pytest

from transfer.destinations.workers import run_workers


async def test_many_chunks_cost_only_the_workers() -> None:
    """Tasks stay at `workers` however many indices; each index runs once, taken in order."""
    baseline = len(asyncio.all_tasks())
    seen: list[int] = []
    running = peak = tasks_peak = 0

    async def work(index: int) -> None:
        nonlocal running, peak, tasks_peak
        running += 1
        peak = max(peak, running)
        tasks_peak = max(tasks_peak, len(asyncio.all_tasks()) - baseline)
        seen.append(index)
        if index % 100 == 0:
            await asyncio.sleep(0)  # let the others in
        running -= 1

    await run_workers(range(131_072), work, 4)  # a 1 TiB file in 8 MiB chunks
    assert seen == list(range(131_072))
    assert peak <= 4 and tasks_peak <= 4
    assert peak > 1  # and they do run side by side


async def test_the_first_failure_is_raised_as_is_and_stops_the_others() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    gate = asyncio.Event()

    async def work(index: int) -> None:
        started.append(index)
        if index == 2:
            raise ValueError("chunk 2 refused")
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(index)
            raise

    with pytest.raises(ValueError, match="chunk 2 refused"):
        await run_workers(range(100), work, 3)
    assert sorted(started) == [0, 1, 2] and sorted(cancelled) == [0, 1]


async def test_no_indices_and_one_worker() -> None:
    seen: list[int] = []

    async def work(index: int) -> None:
        seen.append(index)

    await run_workers([], work, 4)
    await run_workers(range(5), work, 0)  # at least one worker
    assert seen == [0, 1, 2, 3, 4]
