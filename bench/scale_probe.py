"""Peak RSS and wall of the plans that touch every file, at scale (issue 15's memory rows).

    python -m bench.scale_probe --files 50000 200000 [--per-folder 500]

For each size: a tree of N 8-byte files in folders of --per-folder, the emulator (its own
process) holding the same files (hard links into its storage: what a first sync leaves), and a
journal recording every file as sent (written directly, in the shape a real sync of one file
gave: a first sync of 200,000 files takes minutes and is not what is measured). Then, each its
own `hubsync` process: the dry run (journal + remote listings), the no-op with --trust-journal
(journal only) and the no-op (journal + listings). Prints one line per run.

Set PYTHONPATH to another checkout to measure its code with the same data (the console script
is used, so the checkout's modules come first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .harness import EmulatorProcess, hubsync_argv, hubsync_env, run_measured


def make_tree(root: Path, n: int, per_folder: int) -> None:
    for i in range(n):
        path = root / f"d{i // per_folder:05d}" / f"f{i:07d}.dat"
        if i % per_folder == 0:
            path.parent.mkdir(parents=True)
        path.write_bytes(b"12345678")


def tree_files(root: Path) -> Iterator[os.DirEntry[str]]:
    """The files of a tree made by make_tree, a folder at a time: this process holds none of them
    (a measured child's peak RSS starts from this process's, which it is forked from)."""
    for folder in sorted(os.scandir(root), key=lambda e: e.name):
        yield from sorted(os.scandir(folder.path), key=lambda e: e.name)


def mirror(tree: Path, remote_root: Path) -> None:
    """The remote side of a finished first sync: the same files, hard-linked (same size and mtime)."""
    for entry in tree_files(tree):
        target = remote_root / Path(entry.path).relative_to(tree)
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True)
        os.link(entry.path, target)


def seed_journal(journal: Path, tree: Path, remote: str) -> None:
    """Every file of `tree` recorded done, copied from the row a real sync wrote for one file
    (either schema: the account in its own column, or in front of the remote)."""
    conn = sqlite3.connect(journal)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
        split = "account" in columns
        row = conn.execute(f"SELECT {'account' if split else chr(39) * 2}, remote, job, md5, chunk_size, transport,"
                           " created_at, updated_at, done_at FROM files WHERE state='done'").fetchone()
        account, seeded, *rest = row
        if not split:
            account = seeded[: seeded.index(" ") + 1]
        sql = (f"INSERT INTO files(local_path, {'account, ' if split else ''}remote, size, mtime_ns, inode, device,"
               f" job, md5, chunk_size, transport, created_at, updated_at, done_at, state)"
               f" VALUES({','.join('?' * (len(rest) + (7 if split else 6)))},'done')")
        rows: list[tuple[object, ...]] = []
        for entry in tree_files(tree):
            st = entry.stat()
            key = f"{remote}/{Path(entry.path).relative_to(tree).as_posix()}"
            rows.append((entry.path, *((account, key) if split else (account + key,)), st.st_size, st.st_mtime_ns,
                         st.st_ino, st.st_dev, *rest))
            if len(rows) == 10_000:
                with conn:
                    conn.executemany(sql, rows)
                rows = []
        with conn:
            conn.executemany(sql, rows)
    finally:
        conn.close()


def probe(n: int, per_folder: int, work: Path) -> None:
    tree = work / "tree"
    make_tree(tree, n, per_folder)
    with EmulatorProcess(work / "platform", sftp=False) as emu:
        state = work / "state"
        env = hubsync_env(emu, state)
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        seed = work / "seed"
        seed.mkdir()
        (seed / "seed.txt").write_bytes(b"seed")
        run_measured([*hubsync_argv(), "-q", "sync", str(seed), "private:/seed"], env=env).check()
        mirror(tree, emu.private_path("scale"))
        seed_journal(state / "journal.sqlite3", tree, "private:/scale")
        runs = [("dry run", ["--dry-run"]), ("no-op --trust-journal", ["--trust-journal"]), ("no-op", []),
                ("no-op again", [])]
        for label, flags in runs:
            m = run_measured([*hubsync_argv(), "--json", "sync", *flags, str(tree), "private:/scale"],
                             env=env, emulator=emu).check()
            summary = json.loads(m.lines[-1][1])
            unchanged = summary.get("files_unchanged", summary.get("files_skipped"))
            if unchanged != n:
                raise RuntimeError(f"{label}: {unchanged} of {n} unchanged: {summary}")
            print(f"{n:>9,} files  {label:<22} wall {m.wall:6.2f} s  client CPU {m.cpu:6.2f} s"
                  f"  peak RSS {m.maxrss_mib:6.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--per-folder", type=int, default=500)
    args = parser.parse_args()
    for n in args.files:
        work = Path(tempfile.mkdtemp(prefix="hubsync-scale-"))
        try:
            probe(n, args.per_folder, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
