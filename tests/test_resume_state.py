"""Each destination's typed resume state, and journal records written before the types existed."""

from __future__ import annotations

from pathlib import Path

from transfer.destinations.base import ResumeState
from transfer.destinations.datahub import DirectResume, StagedResume
from transfer.destinations.sftp import SftpResume
from transfer.hashing import stat_file
from transfer.journal import Journal

from .conftest import write_random


async def _state(tmp_path: Path, blob: object) -> tuple[Journal, ResumeState]:
    """A real journal record whose resume column holds `blob`, as an older hubsync left it."""
    journal = await Journal(tmp_path / "j.sqlite3").open()
    local = stat_file(write_random(tmp_path / "f.bin", 10), "f.bin")
    record = await journal.begin(local, "k", md5="0" * 32, chunk_size=1 << 20, transport="datahub-direct")
    await journal.update(record.id, resume=blob)
    again = await journal.begin(local, "k", md5="0" * 32, chunk_size=1 << 20, transport="datahub-direct")
    return journal, ResumeState(journal, again, "0" * 32, 1 << 20)


async def test_old_records_load_into_the_types(tmp_path: Path) -> None:
    sid = "4f1c0c2e-0000-4000-8000-000000000000"
    old = {"stage": "imported", "submitId": sid, "uploaded": True,
           "transport": "sftp", "part": "a/.f.bin.hubsync-part", "offset": 4096}
    journal, resume = await _state(tmp_path, old)
    try:
        assert resume.load(StagedResume) == StagedResume("imported")
        assert resume.load(DirectResume) == DirectResume(sid, uploaded=True)
        assert resume.load(SftpResume) == SftpResume("sftp", "", "a/.f.bin.hubsync-part", "", 4096)
        # Saving one destination's state keeps what another keeps in the same blob.
        await resume.save(StagedResume("confirmed"))
        record = await journal.get(str(tmp_path / "f.bin"), "k")
        assert record is not None and record.resume == {**old, "stage": "confirmed"}
    finally:
        await journal.close()


async def test_a_misread_record_restarts_the_file(tmp_path: Path) -> None:
    journal, resume = await _state(tmp_path, {"submitId": 17, "uploaded": "yes", "stage": None})
    try:
        assert resume.load(DirectResume) == DirectResume()  # a new upload, never a wrong submitId
        assert resume.load(StagedResume) == StagedResume()  # null: as if never recorded
    finally:
        await journal.close()


def test_old_sftp_records_after_the_rename_and_damaged_ones() -> None:
    done = {"transport": "sftp", "space": "private", "part": None, "md5": "a" * 32, "offset": 0}
    assert SftpResume.from_blob(done) == SftpResume("sftp", "private", "", "a" * 32, 0)
    damaged = {**done, "part": "x/.f.hubsync-part", "offset": "4096"}
    assert SftpResume.from_blob(damaged) == SftpResume()  # offset not a number: start the part again


async def test_a_resume_column_that_is_not_an_object_is_no_state(tmp_path: Path) -> None:
    journal, resume = await _state(tmp_path, ["not", "a", "dict"])
    try:
        assert resume.load(DirectResume) == DirectResume() and resume.load(StagedResume).stage == ""
    finally:
        await journal.close()


async def test_new_records_round_trip(tmp_path: Path) -> None:
    journal, resume = await _state(tmp_path, {})
    try:
        assert resume.load(DirectResume) == DirectResume()
        await resume.save(DirectResume("4f1c0c2e-0000-4000-8000-000000000001", uploaded=True, rechecked=True))
        record = await journal.get(str(tmp_path / "f.bin"), "k")
        assert record is not None
        assert record.resume == {"submitId": "4f1c0c2e-0000-4000-8000-000000000001", "uploaded": True,
                                 "rechecked": True}
        reread = ResumeState(journal, record, "0" * 32, 1 << 20)
        assert reread.load(DirectResume).submit_id.endswith("0001")
    finally:
        await journal.close()
