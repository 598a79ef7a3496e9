"""A file's progress events come in groups of pieces, not one per piece (issue 15)."""

from __future__ import annotations

from transfer.progress import ByteProgress, Event

KiB, MiB = 1 << 10, 1 << 20


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_pieces_are_reported_per_step_and_the_rest_at_flush() -> None:
    sink = Recorder()
    progress = ByteProgress(sink, "a.bin", "private:/a.bin", 10 * MiB + 5, step=MiB, seconds=60, now=lambda: 0.0)
    for _ in range(40):  # 10 MiB in SFTP-sized blocks
        progress.add(256 * KiB)
    progress.add(5)
    assert [e.bytes for e in sink.events] == [MiB] * 10
    progress.flush()
    progress.flush()  # nothing pending: nothing more
    assert [e.bytes for e in sink.events] == [MiB] * 10 + [5]
    assert {(e.kind, e.path, e.remote, e.size) for e in sink.events} == {("progress", "a.bin", "private:/a.bin",
                                                                          10 * MiB + 5)}


def test_a_slow_transfer_still_reports_every_few_seconds() -> None:
    sink, clock = Recorder(), [0.0]
    progress = ByteProgress(sink, "a", "r", MiB, step=MiB, seconds=0.5, now=lambda: clock[0])
    for _ in range(6):
        clock[0] += 0.3
        progress.add(KiB)
    assert [e.bytes for e in sink.events] == [2 * KiB] * 3


def test_a_rewind_goes_out_at_once_after_what_was_pending() -> None:
    sink = Recorder()
    progress = ByteProgress(sink, "a", "r", 4 * MiB, step=MiB, seconds=60, now=lambda: 0.0)
    progress.add(300 * KiB)
    progress.add(-300 * KiB)  # the piece is sent again: a negative delta
    progress.add(MiB)
    assert [e.bytes for e in sink.events] == [300 * KiB, -300 * KiB, MiB]
