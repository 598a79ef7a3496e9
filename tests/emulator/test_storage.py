"""Storage rules without HTTP: path checks (property-based) and merge atomicity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.storage import Space, Storage, StorageError, split_path

ALICE = Space("private", 5)


@given(st.text(alphabet=st.sampled_from(["a", "é", "/", ".", "\\", "\x00", "\n", " ", "图"]), max_size=12))
def test_split_path_never_yields_unsafe_parts(path: str) -> None:
    try:
        parts = split_path(path)
    except StorageError:
        assert (
            "\\" in path or any(ord(c) < 32 for c in path) or any(p in (".", "..") for p in path.split("/"))
        )
        return
    assert all(p and p not in (".", "..") and "/" not in p and "\\" not in p for p in parts)
    assert "/".join(parts) == "/".join(p for p in path.split("/") if p)


def test_symlink_out_of_a_space_is_refused(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, storage.space_root(ALICE) / "link")
    with pytest.raises(StorageError):
        storage.folder(ALICE, ("link",))
    with pytest.raises(StorageError):
        storage.list_folder(ALICE, ("link",))


def test_failed_merge_leaves_target_untouched(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    target = storage.space_root(ALICE) / "f"
    target.write_bytes(b"previous version")
    writer = storage.new_writer()
    writer.write(b"abc")
    chunk = writer.finish()
    storage.store_chunk(ALICE, "0" * 32, 0, chunk)
    with pytest.raises(StorageError, match="MD5"):
        storage.merge(ALICE, (), "f", "0" * 32, 3, 1)
    assert target.read_bytes() == b"previous version"
    assert storage.received_chunks(ALICE, "0" * 32) == {0: "900150983cd24fb0d6963f7d28e17f72"}
    assert list(storage.tmp_dir.iterdir()) == []
