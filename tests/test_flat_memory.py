"""The sync pipeline's memory does not grow with the tree (issue 15).

The CLI runs in this process (tracemalloc sees every Python allocation of the walk, the plan, the
journal reads and the summary) against the emulator on loopback: a dry run and a no-op re-sync
with --trust-journal of 10,000 files peak within a small constant of the same runs over 1,000.
The journal's records of the unchanged files are written directly (a real first sync of 11,000
files would take minutes), in the shape a real sync of one file gave them (bench.scale_probe).
"""

from __future__ import annotations

import contextlib
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from agent import cli
from bench.scale_probe import make_tree, seed_journal
from emulator.testing import EmulatorThread

from .conftest import user_env

PER_FOLDER = 100
# What the 9,000 more files may add to the peak: the old pipeline (the whole tree in lists, its
# journal rows in a dict) added about 1 KiB a file, 9 MiB here; a folder's batch of 100 files
# is a few tens of KiB.
ALLOWED_GROWTH = 1 << 20


def peak_of(argv: list[str], out: Path) -> tuple[int, dict]:
    """(peak traced bytes, the summary object) of one in-process CLI run with --json."""
    with open(out, "w") as stdout, open(os.devnull, "w") as stderr, \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        tracemalloc.start()
        try:
            code = cli.main(["--json", *argv])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    lines = out.read_text().splitlines()
    assert code == 0, lines[-3:]
    return peak, json.loads(lines[-1])


def test_dry_run_and_no_op_peak_flat_in_the_number_of_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmulatorThread(tmp_path / "platform") as emu:
        for key, value in user_env(emu, tmp_path).items():
            monkeypatch.setenv(key, value)
        seed = tmp_path / "seed"
        seed.mkdir()
        (seed / "seed.txt").write_bytes(b"seed")
        assert cli.main(["-q", "sync", str(seed), "private:/seed"]) == 0
        journal = tmp_path / "state" / "journal.sqlite3"
        peaks = {}
        for n in (1_000, 10_000):
            src = tmp_path / f"src{n}"
            make_tree(src, n, PER_FOLDER)
            remote = f"private:/m{n}"
            dry, planned = peak_of(["sync", "--dry-run", str(src), remote], tmp_path / "out.jsonl")
            assert planned["files_to_send"] == n and planned["files_unchanged"] == 0, planned
            seed_journal(journal, src, remote)
            noop, summary = peak_of(["sync", "--trust-journal", str(src), remote], tmp_path / "out.jsonl")
            assert summary["files_skipped"] == n and summary["files_sent"] == 0, summary
            peaks[n] = (dry, noop)
    (dry_small, noop_small), (dry_large, noop_large) = peaks[1_000], peaks[10_000]
    assert dry_large - dry_small < ALLOWED_GROWTH, peaks
    assert noop_large - noop_small < ALLOWED_GROWTH, peaks
