"""Small files are read on the event loop only while such reads are fast (issue 15)."""

from __future__ import annotations

import pytest

from transfer.hashing import INLINE_MAX, InlineReads


def test_a_slow_read_sends_the_next_small_files_to_a_thread_then_the_loop_is_tried_again() -> None:
    clock = [0.0]

    def read(seconds: float) -> str:
        clock[0] += seconds
        return "digest"

    reads = InlineReads(lambda: clock[0], slow=0.002, backoff=3)
    assert not reads.inline(INLINE_MAX + 1)  # a large file: always a thread
    assert reads.inline(INLINE_MAX) and reads.timed(lambda: read(0.0001)) == "digest"
    assert reads.inline(10)  # fast reads keep the loop
    assert reads.timed(lambda: read(0.05)) == "digest"  # a cold disk, a network file system
    assert [reads.inline(10) for _ in range(4)] == [False, False, False, True]


def test_a_read_that_fails_slowly_counts_too() -> None:
    clock = [0.0]
    reads = InlineReads(lambda: clock[0], slow=0.002, backoff=1)

    def failing() -> None:
        clock[0] += 1.0  # a hung NFS server, then an error
        raise OSError("stale file handle")

    with pytest.raises(OSError):
        reads.timed(failing)
    assert not reads.inline(10)
