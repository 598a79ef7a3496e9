"""One bounded pool of workers over a file's chunk indices, for every chunked destination."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable


async def run_workers(indices: Iterable[int], work: Callable[[int], Awaitable[None]], workers: int) -> None:
    """Run `work(i)` for each index with at most `workers` at a time, in index order.

    `workers` tasks take indices from one shared iterator, so a file of any size costs
    `workers` tasks, not one per chunk. The first failure cancels the other workers and is
    raised as it is (not wrapped in an ExceptionGroup), so callers catch the error they expect.
    """
    pending = iter(indices)

    async def worker() -> None:
        for index in pending:  # next() never runs concurrently: one event loop
            await work(index)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
