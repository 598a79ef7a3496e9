"""Group commit: the writes of many files in flight share one transaction (issue 15).

A real SQLite journal; its statements are counted with SQLite's own trace callback.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from transfer.errors import JournalError
from transfer.journal import Journal
from transfer.models import LocalFile


def local(i: int) -> LocalFile:
    return LocalFile(path=f"/src/f{i}", rel=f"f{i}", size=8, mtime_ns=i, inode=i, device=1)


def traced(journal: Journal) -> list[str]:
    statements: list[str] = []
    assert journal._conn is not None
    journal._conn.set_trace_callback(statements.append)
    return statements


async def test_writes_queued_meanwhile_go_in_one_transaction(tmp_path: Path) -> None:
    journal = await Journal(tmp_path / "j.sqlite3").open()
    try:
        statements = traced(journal)
        records = await asyncio.gather(*(journal.begin(local(i), f"private:/f{i}", md5="0" * 32) for i in range(50)))
        # Queued in the same turn of the event loop: one transaction for all 50.
        assert statements.count("BEGIN IMMEDIATE") == 1
        await asyncio.gather(*(journal.update(r.id, state="merged") for r in records))
        assert statements.count("BEGIN IMMEDIATE") == 2
        for i, record in enumerate(records):
            got = await journal.get(f"/src/f{i}", f"private:/f{i}")
            assert got is not None and got.id == record.id and got.state == "merged"
    finally:
        await journal.close()


async def test_a_group_that_fails_fails_each_of_its_writes_and_keeps_none(tmp_path: Path) -> None:
    journal = await Journal(tmp_path / "j.sqlite3").open()
    try:
        await journal.begin(local(0), "private:/f0")
        # One group: a begin and a write that fails.
        second = asyncio.ensure_future(journal.begin(local(1), "private:/f1"))

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        third = asyncio.ensure_future(journal._write(broken))
        for failed in (second, third):
            with pytest.raises(JournalError):
                await failed
        assert await journal.get("/src/f1", "private:/f1") is None  # rolled back with its group
        assert await journal.get("/src/f0", "private:/f0") is not None
        await journal.begin(local(2), "private:/f2")  # the next group goes in as usual
    finally:
        await journal.close()


async def test_close_waits_for_the_writes_queued_before_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = await Journal(path).open()
    writes = [asyncio.ensure_future(journal.begin(local(i), f"private:/f{i}")) for i in range(20)]
    await asyncio.sleep(0)  # every write queued (one loop turn, no waiting on time)
    await journal.close()
    assert all(w.done() and w.exception() is None for w in writes)
    again = await Journal(path).open()
    try:
        assert all([await again.get(f"/src/f{i}", f"private:/f{i}") for i in range(20)])
    finally:
        await again.close()
