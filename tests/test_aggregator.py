"""The aggregator on a fake clock: settling, bursts, renames, ignores, overflow (no sleeps, no files)."""

from __future__ import annotations

from pathlib import Path

from agent.daemon.aggregator import Aggregator
from agent.daemon.events import FileStat, FsEvent, Gone, Rescan, Send
from agent.scanner import Excludes

ROOT = Path("/data/in")
SETTLE = 5.0
WALL0 = 1_000_000.0  # wall-clock seconds at fake time 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def wall(self) -> float:
        return WALL0 + self.now


def changed(rel: str, is_dir: bool = False) -> FsEvent:
    return FsEvent("changed", f"{ROOT}/{rel}", is_dir=is_dir)


TAG = "0123abcd"  # the agent's part tag (transfer.agenttag)


def make(excludes: list[str] | None = None, **kw: object) -> tuple[Aggregator, Clock]:
    return Aggregator(ROOT, Excludes(excludes or [], part_tag=TAG), SETTLE, **kw), Clock()  # type: ignore[arg-type]


def step(agg: Aggregator, clock: Clock, stats: dict[str, FileStat | None]) -> list[object]:
    """One tick as the job runs it: stat what is due (from `stats`), then poll."""
    due = agg.due(clock.now)
    return agg.poll(clock.now, clock.wall(), {rel: stats.get(rel) for rel in due})


def written_at(clock: Clock, size: int) -> FileStat:
    return FileStat(size, int(clock.wall() * 1e9))


def test_a_file_written_slowly_is_sent_once_after_it_settles() -> None:
    agg, clock = make()
    stats: dict[str, FileStat | None] = {}
    for i in range(10):  # a write every 2 s for 18 s: never quiet for 5 s
        clock.now = 2.0 * i
        agg.add(changed("slow.bin"), clock.now)
        stats["slow.bin"] = written_at(clock, 1000 * (i + 1))
        assert step(agg, clock, stats) == []
    last_write = clock.now
    clock.now = last_write + SETTLE - 0.01
    assert step(agg, clock, stats) == []
    clock.now = last_write + SETTLE
    assert step(agg, clock, stats) == [Send("slow.bin")]
    clock.now += 100
    assert step(agg, clock, stats) == [] and agg.pending == 0


def test_a_fresh_mtime_without_events_must_show_the_same_stat_twice() -> None:
    agg, clock = make()
    agg.add(changed("f"), 0.0)
    clock.now = SETTLE
    fresh = written_at(clock, 10)  # written just now (an event was missed, or polling is slow)
    assert step(agg, clock, {"f": fresh}) == []
    clock.now = 2 * SETTLE - 0.1
    assert step(agg, clock, {"f": fresh}) == []
    clock.now = 2 * SETTLE
    grown = written_at(clock, 20)  # still growing: the quiet period starts again
    assert step(agg, clock, {"f": grown}) == []
    clock.now = 3 * SETTLE
    assert step(agg, clock, {"f": grown}) == [Send("f")]


def test_a_file_with_a_future_mtime_settles_by_unchanged_stat() -> None:
    agg, clock = make()
    agg.add(changed("future"), 0.0)
    clock.now = SETTLE
    future = FileStat(5, int((clock.wall() + 3600) * 1e9))
    assert step(agg, clock, {"future": future}) == []
    clock.now = 2 * SETTLE
    assert step(agg, clock, {"future": future}) == [Send("future")]


def test_a_burst_in_one_folder_becomes_one_rescan_of_that_folder() -> None:
    agg, clock = make(burst=128)
    for i in range(2000):
        agg.add(changed(f"drop/f{i:04d}"), clock.now)
        agg.add(changed(f"drop/f{i:04d}"), clock.now)  # created + closed: one path, one entry
    agg.add(changed("elsewhere.txt"), clock.now)
    assert agg.pending == 2  # the folder and the one other file, not 2,000 entries
    clock.now = SETTLE - 1
    agg.add(changed("drop/deeper/late.bin"), clock.now)  # below the folder: keeps it unsettled
    clock.now = SETTLE
    old = FileStat(1, int((clock.wall() - 60) * 1e9))
    assert step(agg, clock, {"elsewhere.txt": old}) == [Send("elsewhere.txt")]
    clock.now = 2 * SETTLE - 1
    assert step(agg, clock, {}) == [Rescan("drop")]
    assert agg.pending == 0


def test_too_many_pending_files_in_all_collapse_to_a_tree_rescan() -> None:
    agg, clock = make(burst=1000, max_pending=50)
    for i in range(60):
        agg.add(changed(f"d{i}/f"), 0.0)
    assert agg.pending == 1
    clock.now = SETTLE
    assert step(agg, clock, {}) == [Rescan("")]


def test_a_busy_folder_is_rescanned_after_the_hard_cap_even_if_never_quiet() -> None:
    agg, clock = make(burst=2, max_delay=30.0)
    for i in range(3):
        agg.add(changed(f"busy/f{i}"), 0.0)
    actions = []
    while clock.now < 40 and not actions:
        clock.now += 1.0
        agg.add(changed("busy/f0"), clock.now)  # an event every second, forever
        actions = step(agg, clock, {})
    assert actions == [Rescan("busy")] and clock.now == 30.0


def test_rename_into_place_is_sent_once_and_the_temp_name_never() -> None:
    agg, clock = make(["*.tmp"])
    for t in range(3):
        agg.add(changed("report.csv.tmp"), float(t))  # excluded: writes to the temp name are ignored
    assert agg.pending == 0
    clock.now = 3.0
    agg.add(FsEvent("moved", f"{ROOT}/report.csv.tmp", f"{ROOT}/report.csv"), clock.now)
    clock.now += SETTLE
    st = FileStat(100, int((clock.wall() - SETTLE) * 1e9))
    assert step(agg, clock, {"report.csv": st}) == [Send("report.csv")]  # and no Gone for the temp name
    clock.now += SETTLE
    assert step(agg, clock, {"report.csv": st}) == []


def test_a_pending_file_renamed_is_sent_under_its_new_name_only() -> None:
    agg, clock = make()
    agg.add(changed("a.txt"), 0.0)
    agg.add(FsEvent("moved", f"{ROOT}/a.txt", f"{ROOT}/b.txt"), 1.0)
    clock.now = 1.0 + SETTLE
    st = FileStat(3, int((clock.wall() - 10) * 1e9))
    assert step(agg, clock, {"a.txt": st, "b.txt": st}) == [Send("b.txt"), Gone("a.txt", False)]


def test_own_temporary_names_excluded_paths_and_outside_paths_are_ignored() -> None:
    agg, clock = make([".git/", "*.swp"])
    for event in (changed(f".model.bin.{TAG}.hubsync-part"), changed(".git/objects/ab/cdef"), changed("x.swp"),
                  FsEvent("changed", "/elsewhere/file"), FsEvent("changed", "/data/input/x"),
                  changed("", is_dir=True), FsEvent("deleted", f"{ROOT}/.git/HEAD")):
        agg.add(event, 0.0)
    clock.now = 100.0
    assert agg.pending == 0 and step(agg, clock, {}) == []


def test_a_user_file_ending_in_hubsync_part_is_sent() -> None:
    """Only names with this agent's tag are its own part files; another agent's tag, or none, is a user file."""
    agg, clock = make()
    names = ["model.bin.hubsync-part", ".model.bin.hubsync-part", ".m.bin.ffff0000.hubsync-part"]
    for name in names:
        agg.add(changed(name), 0.0)
    clock.now = 1.0 + SETTLE
    st = FileStat(3, int((clock.wall() - 10) * 1e9))
    assert sorted(step(agg, clock, dict.fromkeys(names, st)), key=str) == sorted((Send(n) for n in names), key=str)


def test_overflow_means_a_rescan_of_the_tree() -> None:
    agg, clock = make()
    agg.add(changed("a"), 0.0)
    agg.add(FsEvent("overflow"), 1.0)
    assert agg.pending == 1  # the tree rescan absorbed the pending file
    clock.now = 1.0 + SETTLE
    assert step(agg, clock, {}) == [Rescan("")]


def test_a_new_folder_is_rescanned_and_a_deleted_one_is_gone_with_its_pending_files() -> None:
    agg, clock = make()
    agg.add(changed("new", is_dir=True), 0.0)
    agg.add(changed("old/a"), 0.0)
    agg.add(changed("old/b"), 0.0)
    agg.add(FsEvent("deleted", f"{ROOT}/old", is_dir=True), 0.5)
    clock.now = 0.5 + SETTLE
    assert step(agg, clock, {}) == [Rescan("new"), Gone("old", True)]
    assert agg.pending == 0


def test_a_file_deleted_then_written_again_is_not_gone() -> None:
    agg, clock = make()
    agg.add(FsEvent("deleted", f"{ROOT}/cfg.ini"), 0.0)
    agg.add(changed("cfg.ini"), 0.1)  # an editor's save: delete + create
    clock.now = 0.1 + SETTLE
    st = FileStat(9, int((clock.wall() - 10) * 1e9))
    assert step(agg, clock, {"cfg.ini": st}) == [Send("cfg.ini")]


def test_a_file_that_vanishes_before_it_settles_is_dropped() -> None:
    agg, clock = make()
    agg.add(changed("brief"), 0.0)
    clock.now = SETTLE
    assert step(agg, clock, {"brief": None}) == []
    assert agg.pending == 0 and agg.next_deadline() is None


def test_a_new_folder_written_into_steadily_is_walked_once_and_its_files_sent_one_by_one() -> None:
    agg, clock = make()
    agg.add(changed("incoming", is_dir=True), 0.0)
    sent: list[object] = []
    stats: dict[str, FileStat | None] = {}
    for i in range(30):  # a file every 2 s, for a minute: the folder is never quiet
        clock.now = 2.0 * i
        agg.add(changed(f"incoming/f{i}"), clock.now)
        stats[f"incoming/f{i}"] = written_at(clock, 10)
        sent += step(agg, clock, stats)
    assert sent.count(Rescan("incoming")) == 1 and sent.index(Rescan("incoming")) <= 2  # once, after SETTLE
    assert [a for a in sent if isinstance(a, Send)] == [Send(f"incoming/f{i}") for i in range(27)]
