"""One suite, every destination (rclone's fstests idea): HTTP chunks, SFTP, datahub staged and direct.

Every case runs against every destination through `Rig` (conformance_rigs.py); where a
destination lacks a feature (instant upload) the case states what it must do instead.
"""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from emulator.faults import Faults
from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.destinations.sftp import SftpDestination
from transfer.journal import Journal
from transfer.models import DatahubSpace
from transfer.progress import Event

from .conformance_rigs import CS, KINDS, Platform, Rig, build_destination
from .conftest import ALICE, KEY, json_lines, md5_of, summary_of, wait_for, write_random


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with EmulatorThread(tmp_path_factory.mktemp("conformance") / "platform", sftp=True) as server:
        asset_id, (v1,) = server.datahub_create_asset("model", "conformance")
        yield Platform(server, DatahubSpace("model", asset_id, v1, "conformance", "v1"))


@pytest.fixture(params=KINDS)
async def rig(request: pytest.FixtureRequest, platform: Platform, tmp_path: Path) -> AsyncIterator[Rig]:
    async with PlatformClient(platform.emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        destination = build_destination(request.param, api, tmp_path)
        journal = await Journal(tmp_path / "journal.sqlite3").open()
        try:
            yield Rig(request.param, platform, api, destination, journal, f"conf/{tmp_path.name}", tmp_path)
        finally:
            platform.emu.faults.update(Faults().public_fields())  # every switch back off
            if isinstance(destination, SftpDestination):
                await destination.close()
            await journal.close()


def _seed(rig: Rig, n: int) -> int:
    """Content unique to this rig and case: the platform deduplicates by md5 across tests."""
    return zlib.crc32(f"{rig.kind}/{rig.root}/{n}".encode())


class _Sink:
    """A progress sink that calls `hook(bytes seen so far)` on every progress event (in the loop)."""

    def __init__(self, hook: object) -> None:
        self.hook = hook
        self.seen = 0

    def emit(self, event: Event) -> None:
        if event.kind == "progress":
            self.seen += int(event.bytes or 0)
            self.hook(self.seen)  # type: ignore[operator]


class _Interrupted(Exception):
    pass


# -- awkward names and sizes ----------------------------------------------------------------------

NAMES = {
    "zero.bin": 0,
    "one.bin": 1,
    "cs-1.bin": CS - 1,
    "a/cs.bin": CS,
    "a/b/cs+1.bin": CS + 1,
    "中文目录/数据 文件.bin": 3 * CS + 17,
    "with space/ lead and trail .dat": 100,
    "odd/#hash?&=+%20;,'@!$.txt": 7,
    "odd/-dash ~tilde [brackets] {braces}.txt": 8,
    "odd/.hidden": 9,
    "odd/emoji 😀 ünïcödé.txt": 10,
    "long/" + "l" * 180 + ".bin": 11,
}


async def test_awkward_names_and_sizes(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, (rel, size) in enumerate(NAMES.items()):
        write_random(src / rel, size, seed=_seed(rig, i))
    summary = await rig.run(src, list(NAMES))
    assert summary.failures == [] and summary.files_sent == len(NAMES)
    assert summary.transports == {rig.destination.transport}
    for rel in NAMES:
        assert md5_of(rig.on_disk(rel)) == md5_of(src / rel), rel
    again = await rig.run(src, list(NAMES))
    assert again.files_skipped == len(NAMES) and again.bytes_sent == 0


# -- resume -------------------------------------------------------------------------------------


async def test_resume_after_a_partial_attempt(rig: Rig, tmp_path: Path) -> None:
    size = 12 * CS + 5
    src = tmp_path / "src"
    write_random(src / "resume.bin", size, seed=_seed(rig, 0))

    def crash(seen: int) -> None:
        if seen >= 6 * CS:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        await rig.run(src, ["resume.bin"], _Sink(crash))
    assert not rig.on_disk("resume.bin").exists()  # nothing partial at the target
    summary = await rig.run(src, ["resume.bin"])
    assert summary.failures == [] and summary.files_sent == 1
    assert 0 < summary.bytes_sent <= size - 3 * CS, summary.bytes_sent  # most of the first half was kept
    assert md5_of(rig.on_disk("resume.bin")) == md5_of(src / "resume.bin")


def test_resume_after_sigkill(rig: Rig, tmp_path: Path) -> None:
    """A CLI killed mid-transfer, then run again: at most the chunks in flight are sent twice."""
    size = 24 * CS + 17
    src = tmp_path / "src"
    path = write_random(src / "killed.bin", size, seed=_seed(rig, 0))
    start = rig.mark()
    proc = rig.popen(src, "512KiB/s")
    try:
        wait_for(lambda: rig.taken_in(start, "killed.bin") >= size // 3 or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, "the transfer ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not rig.on_disk("killed.bin").exists()
    if rig.kind == "sftp":  # the server logs a handle's writes when it sees the connection drop
        wait_for(lambda: rig.accepted(start), timeout=30)
    first = rig.accepted(start)
    assert 0 < sum(first.values()) < size
    middle = rig.mark()
    result = rig.cli(src)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert md5_of(rig.on_disk("killed.bin")) == md5_of(path)
    second = rig.accepted(middle)
    if rig.kind == "sftp":
        # The part file is continued: only what was in flight at the kill is written twice — at
        # this chunk size one block of the CLI's 256 KiB (offsets persist as blocks are acked) —
        # plus, if the verify window before the offset differed, that window.
        resent = sum(first.values()) + sum(second.values()) - size
        assert resent <= (256 << 10) + CS, resent
    else:
        again = [key for key in second if key in first]
        assert len(again) <= 4, again  # chunks_per_file: acknowledged by the platform, not yet by the journal
        # Every chunk was taken by one run or the other; the chunks taken by both are the ones in
        # flight at the kill. (A chunk the second run sent twice, a retry after an answer that came
        # too late on a loaded machine, counts once: it is one chunk, not a resent one.)
        assert len(set(first) | set(second)) == -(-size // CS)
        assert sum(first.values()) - sum(first[k] for k in again) + sum(second.values()) >= size
    if rig.kind == "direct":
        assert len({key[0] for key in (*first, *second)}) == 1  # one submitId: the same upload, resumed


async def test_overwrite_with_new_content(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    path = write_random(src / "over.bin", 3 * CS + 1, seed=_seed(rig, 1))
    assert (await rig.run(src, ["over.bin"])).files_sent == 1
    first = md5_of(rig.on_disk("over.bin"))
    write_random(path, 2 * CS + 7, seed=_seed(rig, 2))  # shorter and different
    summary = await rig.run(src, ["over.bin"])
    assert summary.failures == [] and summary.files_sent == 1
    assert md5_of(rig.on_disk("over.bin")) == md5_of(path) != first


# -- instant upload ---------------------------------------------------------------------------


async def test_instant_upload_where_the_destination_has_it(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    size = 3 * CS + 5
    original = write_random(src / "a.bin", size, seed=_seed(rig, 0))
    (src / "copy").mkdir()
    (src / "copy" / "b.bin").write_bytes(original.read_bytes())
    assert (await rig.run(src, ["a.bin"])).files_sent == 1
    before = rig.mark()
    summary = await rig.run(src, ["copy/b.bin"])
    assert summary.failures == [] and summary.files_sent == 1
    assert md5_of(rig.on_disk("copy/b.bin")) == md5_of(original)
    sent = sum(rig.accepted(before).values())
    if rig.instant:
        assert sent == 0 and summary.bytes_sent == 0  # placed from what the platform holds
    else:
        assert sent >= size and summary.bytes_sent == size  # no instant upload here: every byte goes


# -- the local file changes --------------------------------------------------------------------


async def test_a_file_changed_while_sent_is_sent_again_never_mixed(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    size = 8 * CS + 3
    path = write_random(src / "moving.bin", size, seed=_seed(rig, 0))
    new = write_random(tmp_path / "new.bin", size, seed=_seed(rig, 1)).read_bytes()
    target = rig.on_disk("moving.bin")
    seen_at_target: set[str] = set()

    def edit(seen: int) -> None:
        if target.exists():
            seen_at_target.add(md5_of(target))
        if seen >= 2 * CS and path.read_bytes() != new:
            st = path.stat()
            with open(path, "r+b") as f:  # same size, new bytes, a later mtime: an edit in place
                f.write(new)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    summary = await rig.run(src, ["moving.bin"], _Sink(edit))
    assert summary.failures == [] and summary.files_sent == 1
    assert md5_of(target) == md5_of(path) == md5_of(tmp_path / "new.bin")
    assert seen_at_target <= {md5_of(path)}  # the old or a mixed content never showed


# -- faults ---------------------------------------------------------------------------------------


async def test_rides_through_500s_resets_and_3_second_tokens(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    rels = [f"f{i}.bin" for i in range(6)]
    for i, rel in enumerate(rels):
        write_random(src / rel, (i * 37_003) % (4 * CS) + 1, seed=_seed(rig, i))
    rig.emu.faults.update({"seed": 5, "chunk_error_rate": 0.2, "reset_rate": 0.1, "busy_rate": 0.1,
                           "retry_after": 0, "token_lifetime": 3})
    expired = False

    def expire_once(seen: int) -> None:  # tokens also expire between any two calls
        nonlocal expired
        if not expired and seen >= CS:
            expired = True
            rig.emu.expire_tokens()

    summary = await rig.run(src, rels, _Sink(expire_once))
    assert summary.failures == [] and summary.files_sent == len(rels)
    for rel in rels:
        assert md5_of(rig.on_disk(rel)) == md5_of(src / rel), rel
    faults = {e["fault"] for e in rig.emu.log_entries() if e.get("fault")}
    assert {"chunk_error", "busy"} <= faults or rig.kind == "sftp", faults
    assert expired


# -- nothing partial is visible --------------------------------------------------------------


async def test_no_partial_file_is_ever_visible(rig: Rig, tmp_path: Path) -> None:
    """While a new version of a file is sent (and when the sending crashes) the target shows the old one."""
    src = tmp_path / "src"
    path = write_random(src / "p.bin", 4 * CS + 9, seed=_seed(rig, 0))
    assert (await rig.run(src, ["p.bin"])).files_sent == 1
    old = md5_of(path)
    write_random(path, 10 * CS + 1, seed=_seed(rig, 1))
    new = md5_of(path)
    target = rig.on_disk("p.bin")
    shown: list[str] = []

    def look(seen: int) -> None:
        shown.append(md5_of(target))
        if seen >= 5 * CS:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        await rig.run(src, ["p.bin"], _Sink(look))
    assert set(shown) == {old} and md5_of(target) == old
    summary = await rig.run(src, ["p.bin"], _Sink(lambda seen: shown.append(md5_of(target))))
    assert summary.failures == [] and md5_of(target) == new
    assert set(shown) <= {old, new}


# -- --delete -----------------------------------------------------------------------------------


def test_delete_removes_only_what_the_source_lacks(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, rel in enumerate(("keep.bin", "sub/keep2.bin")):
        write_random(src / rel, 1000 + i, seed=_seed(rig, i))
    for rel in ("extra.bin", "sub/deep/extra2.bin"):  # files someone else put there
        rig.on_disk(rel).parent.mkdir(parents=True, exist_ok=True)
        rig.on_disk(rel).write_bytes(b"not ours")
    plain = rig.cli(src)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert rig.on_disk("extra.bin").exists()  # nothing deleted without --delete
    result = rig.cli(src, "--delete")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    deleted = sorted(o["remote"] for o in json_lines(result.stdout) if o.get("event") == "deleted")
    assert len(deleted) == 2, result.stdout[-2000:]
    assert not rig.on_disk("extra.bin").exists() and not rig.on_disk("sub/deep/extra2.bin").exists()
    for rel in ("keep.bin", "sub/keep2.bin"):
        assert md5_of(rig.on_disk(rel)) == md5_of(src / rel)
    assert summary_of(result)["files_skipped"] == 2
