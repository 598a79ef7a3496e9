"""The one mapping from local names to remote paths (transfer.remotepath), by example and by property."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.errors import ConfigError
from transfer.models import DatahubSpace, Space
from transfer.remotepath import (
    MAX_NAME_BYTES,
    RefusedName,
    RemoteFolder,
    display,
    display_values,
    is_part_name,
    join,
    parse_folder,
    part_name,
)

ROOT = RemoteFolder(Space.PRIVATE, "projects/incoming")


def test_ordinary_names_map_as_they_are() -> None:
    t = ROOT.target("中文 目录/a b/f.txt")
    assert (t.space, t.folder, t.name) == (Space.PRIVATE, "projects/incoming/中文 目录/a b", "f.txt")
    assert t.path == "projects/incoming/中文 目录/a b/f.txt"
    assert ROOT.target("top.bin").path == "projects/incoming/top.bin"
    assert RemoteFolder(Space.PUBLIC, "").target("a/b").path == "a/b"


@pytest.mark.parametrize("rel, why", [
    ("..\\important.db", "'\\'"),
    ("a\\b/f.txt", "'\\'"),
    ("win\\path/report.txt", "'\\'"),
    (os.fsdecode(b"\xff\xfe.bin"), "not valid UTF-8"),
    (os.fsdecode(b"dir\xff/f.txt"), "not valid UTF-8"),
    ("line\nbreak.txt", "control character"),
    ("cr\r.txt", "control character"),
    ("tab\t.txt", "control character"),
    ("del\x7f.txt", "control character"),
    ("c1\x85.txt", "control character"),
    ("nul\x00", "control character"),
    ("..", "'..'"),
    ("a/../b", "'..'"),
    ("./b", "'.'"),
    ("a//b", "empty"),
    ("", "empty"),
    ("a/", "empty"),
])
def test_names_the_platform_cannot_hold_are_refused_with_the_reason(rel: str, why: str) -> None:
    with pytest.raises(RefusedName) as refused:
        ROOT.target(rel)
    assert why in str(refused.value)
    display(str(refused.value)).encode("utf-8")  # the reason itself always prints


def test_a_backslash_is_never_turned_into_a_slash() -> None:
    """Old issue case 2: `a\\b/f.txt` and `a/b/f.txt` both became `a/b/f.txt` (one content lost)."""
    assert ROOT.target("a/b/f.txt").path == "projects/incoming/a/b/f.txt"
    with pytest.raises(RefusedName):
        ROOT.target("a\\b/f.txt")
    assert join("a\\b", "c") == "a\\b/c"  # remote pieces are joined, never translated


def test_remote_listings_names_that_no_local_file_maps_to_are_left_alone() -> None:
    assert ROOT.child("", "f.txt") == "f.txt" and ROOT.child("a", "f.txt") == "a/f.txt"
    for name in ("..", ".", "", "a\\b", "x\ny", "a/b"):
        assert ROOT.child("a", name) is None


@pytest.mark.parametrize("typed, canonical", [
    ("/projects/incoming", "projects/incoming"), ("projects//incoming/", "projects/incoming"),
    ("/", ""), ("", ""), ("//a///b//", "a/b"),
])
def test_remote_folders_typed_by_the_user_are_canonicalised(typed: str, canonical: str) -> None:
    assert parse_folder(typed) == canonical


@pytest.mark.parametrize("typed", ["/projects/../etc", "..", "a/./b", "a\\b", "a\nb", "x\x7f"])
def test_remote_folders_typed_by_the_user_are_checked_with_the_same_rules(typed: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_folder(typed)
    display(str(refused.value)).encode("utf-8")


def test_display_escapes_what_cannot_be_printed_and_keeps_the_rest() -> None:
    assert display(os.fsdecode(b"\xff\xfe.bin")) == "\\xff\\xfe.bin"
    assert display("a\nb\rc\td\x7f\x01") == "a\\nb\\rc\\td\\x7f\\x01"
    assert display("中文 名字.txt") == "中文 名字.txt"
    assert display("\u00a0nbsp") == "\u00a0nbsp"  # not printable by str.isprintable, but harmless
    assert display_values({"a": [os.fsdecode(b"\xff")], "n": 3}) == {"a": ["\\xff"], "n": 3}


def test_part_names_carry_the_tag_and_fit_the_name_limit() -> None:
    tag = "0123abcd"
    assert part_name("f.bin", tag) == ".f.bin.0123abcd.hubsync-part"
    assert is_part_name(part_name("f.bin", tag), tag)
    for not_ours in ("f.bin.hubsync-part", ".f.bin.hubsync-part", ".f.bin.ffff0000.hubsync-part", f".{tag}.hubsync-part"):
        assert not is_part_name(not_ours, tag), not_ours
    for name in ("a" * 255, "é" * 127, "名" * 85, "x" * 230):
        assert len(name.encode()) <= MAX_NAME_BYTES
        part = part_name(name, tag)
        assert len(part.encode()) <= MAX_NAME_BYTES and is_part_name(part, tag)
    # two long names that share their first 200 bytes still get two part files
    assert part_name("a" * 200 + "1" * 55, tag) != part_name("a" * 200 + "2" * 55, tag)


def test_datahub_versions_map_the_same_way() -> None:
    space = DatahubSpace("dataset", "a" * 32, "b" * 32)
    t = RemoteFolder(space, "train").target("x/y.jpg")
    assert (t.space, t.folder, t.name) == (space, "train/x", "y.jpg")
    with pytest.raises(RefusedName):
        RemoteFolder(space, "train").target("..\\y.jpg")


# -- properties ------------------------------------------------------------------------------
# Local names as the OS gives them: any bytes but '/' and NUL, decoded the way os.scandir does.
_component = st.one_of(
    st.binary(min_size=0, max_size=12).filter(lambda b: b"/" not in b).map(os.fsdecode),
    st.sampled_from([".", "..", "a\\b", "..\\x", "x\ny", "\\", "a"]),
    st.text(max_size=8).filter(lambda s: "/" not in s),
)
_rel = st.lists(_component, min_size=1, max_size=5).map("/".join)
_root = st.sampled_from(["", "projects/incoming", "a", "deep/er/still"])


def _accepted(remote: RemoteFolder, rel: str) -> str | None:
    try:
        return remote.target(rel).path
    except RefusedName:
        return None


@settings(max_examples=400, deadline=None)
@given(root=_root, rel=_rel)
def test_every_accepted_path_stays_inside_the_remote_folder_untranslated(root: str, rel: str) -> None:
    remote = RemoteFolder(Space.PRIVATE, root)
    path = _accepted(remote, rel)
    if path is None:
        return
    inside = path[len(root) + 1:] if root else path
    assert path.startswith(root + "/") if root else True
    assert inside == rel  # exactly the local path: nothing translated, nothing dropped
    assert posixpath.normpath("/" + path) == "/" + path  # no '.', '..' or empty component anywhere
    assert "\\" not in path
    path.encode("utf-8")  # valid UTF-8
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in path)


@settings(max_examples=200, deadline=None)
@given(root=_root, rels=st.lists(_rel, min_size=2, max_size=12, unique=True))
def test_no_two_local_paths_map_to_one_remote_path(root: str, rels: list[str]) -> None:
    remote = RemoteFolder(Space.PRIVATE, root)
    paths = [p for p in (_accepted(remote, rel) for rel in rels) if p is not None]
    assert len(paths) == len(set(paths))


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.binary(max_size=20).map(os.fsdecode), st.text(max_size=20)))
def test_display_always_encodes(name: str) -> None:
    shown = display(name)
    shown.encode("utf-8")
    assert "\n" not in shown and "\r" not in shown
    if name.isprintable():
        assert shown == name
