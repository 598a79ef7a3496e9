"""The journal's account column (migration 6): old rows split, folder lookups served by an index."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from transfer.journal import MIGRATIONS, Journal, JournalView, split_key
from transfer.models import LocalFile

NS = "127.0.0.1#u42 "


def test_split_key_takes_the_account_only_where_there_is_one() -> None:
    assert split_key(NS + "private:/m/a b.txt") == (NS, "private:/m/a b.txt")
    assert split_key("private:/m/a b#1.txt") == ("", "private:/m/a b#1.txt")  # no namespace: all remote
    assert split_key(NS) == (NS, "")
    assert split_key("") == ("", "")


def _v5_journal(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:5]:
        for statement in migration.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version=5")
    rows = [(NS + "private:/m/a.txt", "/src/a.txt", "done"), ("other#7 private:/m/a.txt", "/src/a.txt", "done"),
            ("private:/bare b.txt", "/src/b.txt", "failed")]
    for i, (remote, local, state) in enumerate(rows, start=1):
        conn.execute("INSERT INTO files(id,local_path,remote,size,state,created_at,updated_at,remote_mtime_ms)"
                     " VALUES(?,?,?,?,?,0,0,?)", (i, local, remote, 10 * i, state, 1000 + i))
    conn.execute("INSERT INTO chunks VALUES(1,'m',8,0,'c0',0)")
    conn.close()


def test_migration_6_splits_existing_rows_and_keeps_their_chunks(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _v5_journal(path)

    async def main() -> None:
        journal = await Journal(path).open()
        try:
            done = await journal.plan_rows(NS + "private:/m/")
            assert list(done) == [("/src/a.txt", NS + "private:/m/a.txt")]
            assert done[("/src/a.txt", NS + "private:/m/a.txt")].remote_mtime_ms == 1001
            assert list(await journal.plan_rows("other#7 ")) == [("/src/a.txt", "other#7 private:/m/a.txt")]
            record = await journal.get("/src/b.txt", "private:/bare b.txt")
            assert record is not None and record.remote == "private:/bare b.txt" and record.state == "failed"
            assert await journal.acked_chunks(1, "m", 8) == {0: "c0"}
            rows = await journal.plan_rows_of([NS + "private:/m/a.txt", NS + "private:/m/none.txt"])
            assert list(rows) == [("/src/a.txt", NS + "private:/m/a.txt")]
        finally:
            await journal.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT account, remote FROM files ORDER BY id").fetchall() == [
        (NS, "private:/m/a.txt"), ("other#7 ", "private:/m/a.txt"), ("", "private:/bare b.txt")]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    assert {r["remote"] for r in JournalView(path).summary()} == {
        NS + "private:/m/a.txt", "other#7 private:/m/a.txt", "private:/bare b.txt"}


def test_folder_queries_are_answered_by_an_index(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"

    async def main() -> None:
        journal = await Journal(path).open()
        try:
            local = LocalFile(path="/src/a", rel="a", size=1, mtime_ns=1, inode=1, device=1)
            await journal.begin(local, NS + "private:/m/a")
        finally:
            await journal.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    plans = [
        conn.execute("EXPLAIN QUERY PLAN SELECT * FROM files WHERE account=? AND remote>=? AND remote<?",
                     (NS, "private:/m/", "private:/m0")).fetchall(),
        conn.execute("EXPLAIN QUERY PLAN SELECT * FROM files WHERE account=? AND remote IN (?,?)",
                     (NS, "private:/m/a", "private:/m/b")).fetchall(),
    ]
    conn.close()
    for plan in plans:
        detail = " ".join(str(row[-1]) for row in plan)
        assert "USING INDEX" in detail and "SCAN files" not in detail, detail
