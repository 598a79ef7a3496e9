"""The resumable md5 chunk protocol (protocol.md §3 steps 1-6)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import aiohttp
import pytest

from emulator.testing import EmulatorThread

from .conftest import Api, md5, ok, refused, snapshot, split

DATA = random.Random(1).randbytes(2500)
CHUNK = 1000  # -> chunks of 1000, 1000, 500


async def test_check_upload_merge(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("dir"))
    assert ok(await api.check("f.bin", DATA, "dir")) == {"fileStatus": 2, "chunks": []}
    pieces = split(DATA, CHUNK)
    answers = await asyncio.gather(
        *(api.chunk("f.bin", md5(DATA), p, i, len(pieces), "dir") for i, p in enumerate(pieces))
    )
    for answer in answers:
        ok(answer)
    assert not emu.private_path("dir/f.bin").exists()  # nothing visible before the merge
    ok(await api.merge("f.bin", DATA, len(pieces), "/dir/"))
    assert hashlib.md5(emu.private_path("dir/f.bin").read_bytes()).hexdigest() == md5(DATA)
    assert not (emu.root / "chunks" / "private-5" / md5(DATA)).exists()  # chunks dropped after merge
    assert ok(await api.check("f.bin", DATA, "dir")) == {"fileStatus": 1, "chunks": []}
    assert await api.names("dir") == ["f.bin"]
    assert list((emu.root / "tmp").iterdir()) == []


async def test_chunks_listed_and_kept_across_restart(emu: EmulatorThread, api: Api, session) -> None:
    pieces = split(DATA, CHUNK)
    ok(await api.chunk("f", md5(DATA), pieces[0], 0, 3))
    ok(await api.chunk("f", md5(DATA), pieces[2], 2, 3))
    expected = [{"index": 0, "md5": md5(pieces[0])}, {"index": 2, "md5": md5(pieces[2])}]
    assert ok(await api.check("f", DATA)) == {"fileStatus": 2, "chunks": expected}
    emu.stop()
    with EmulatorThread(emu.root) as again:
        caller = Api(session, again.url)
        caller.token = api.token
        _, answer = await caller.get("/prod-api/getInfo")
        assert answer["code"] == 401  # the old token died with the old run
        await caller.login()
        assert ok(await caller.check("f", DATA)) == {"fileStatus": 2, "chunks": expected}
        # A sidecar lost (or stale) is recomputed from the chunk itself.
        (again.root / "chunks" / "private-5" / md5(DATA) / "2.md5").unlink()
        assert ok(await caller.check("f", DATA))["chunks"] == expected
        ok(await caller.chunk("f", md5(DATA), pieces[1], 1, 3))
        ok(await caller.merge("f", DATA, 3))
        assert again.private_path("f").read_bytes() == DATA


async def test_bad_chunks_refused_and_not_stored(emu: EmulatorThread, api: Api) -> None:
    piece = DATA[:CHUNK]
    before = snapshot(emu.root)
    assert "chunkMd5" in refused(await api.chunk("f", md5(DATA), piece, 0, 3, chunkMd5=md5(b"other")))
    assert "chunkSize" in refused(await api.chunk("f", md5(DATA), piece, 0, 3, chunkSize=str(CHUNK + 1)))
    assert "chunkSize" in refused(await api.chunk("f", md5(DATA), piece[:-1], 0, 3, chunkSize=str(CHUNK)))
    refused(await api.chunk("f", md5(DATA), b"", 0, 3))  # an empty chunk
    refused(await api.chunk("f", md5(DATA), piece, 3, 3))  # index out of range
    refused(await api.chunk("f", md5(DATA), piece, 0, 3, "missing"))  # currentPath must exist
    assert snapshot(emu.root) == before
    assert ok(await api.check("f", DATA, "missing")) == {
        "fileStatus": 2,
        "chunks": [],
    }  # check does not need it
    assert list((emu.root / "tmp").iterdir()) == []


async def test_resending_an_index_replaces_it(emu: EmulatorThread, api: Api) -> None:
    pieces = split(DATA, CHUNK)
    ok(await api.chunk("f", md5(DATA), pieces[1], 0, 3))  # wrong content under index 0
    ok(await api.chunk("f", md5(DATA), pieces[0], 0, 3))
    ok(await api.chunk("f", md5(DATA), pieces[1], 1, 3))
    ok(await api.chunk("f", md5(DATA), pieces[2], 2, 3))
    ok(await api.merge("f", DATA, 3))
    assert emu.private_path("f").read_bytes() == DATA


async def test_failed_merges_keep_the_chunks(emu: EmulatorThread, api: Api) -> None:
    pieces = split(DATA, CHUNK)
    ok(await api.chunk("f", md5(DATA), pieces[0], 0, 3))
    ok(await api.chunk("f", md5(DATA), pieces[2], 2, 3))
    assert "1" in refused(await api.merge("f", DATA, 3))  # chunk 1 missing
    refused(await api.merge("f", DATA, 3, fileSize=2499))  # size mismatch
    refused(await api.merge("f", DATA, 3, "missing"))  # currentPath must exist
    assert not emu.private_path("f").exists()
    assert [c["index"] for c in ok(await api.check("f", DATA))["chunks"]] == [0, 2]
    ok(await api.chunk("f", md5(DATA), pieces[1], 1, 3))
    ok(await api.merge("f", DATA, 3))
    assert emu.private_path("f").read_bytes() == DATA


async def test_merge_verifies_the_file_md5(emu: EmulatorThread, api: Api) -> None:
    claimed = md5(b"something else")
    pieces = split(DATA, CHUNK)
    for i, p in enumerate(pieces):
        ok(await api.chunk("f", claimed, p, i, 3))
    assert "MD5" in refused(await api.merge("f", DATA, 3, fileMd5=claimed))
    assert not emu.private_path("f").exists()
    kept = ok(await api.check("f", b"something else"))["chunks"]  # chunks are keyed by the claimed md5
    assert [c["md5"] for c in kept] == [md5(p) for p in pieces]


async def test_unequal_chunk_sizes_refused_at_merge(emu: EmulatorThread, api: Api) -> None:
    pieces = [DATA[:1000], DATA[1000:1600], DATA[1600:]]  # 1000, 600, 900: not the house layout
    for i, p in enumerate(pieces):
        ok(await api.chunk("f", md5(DATA), p, i, 3))
    assert "分片大小" in refused(await api.merge("f", DATA, 3))
    assert not emu.private_path("f").exists()


async def test_instant_upload(emu: EmulatorThread, api: Api) -> None:
    await api.upload("first", DATA, CHUNK)
    ok(await api.add_folder("other"))
    assert ok(await api.check("copy", DATA, "other"))["fileStatus"] == 1
    before = emu.log_entries()
    ok(await api.merge("copy", DATA, 3, "other"))  # no chunk sent
    assert emu.private_path("other/copy").read_bytes() == DATA
    assert [e["path"] for e in emu.log_entries()[len(before) :]] == ["/api/file/file/mergeFile"]
    assert emu.log_entries()[-1]["instant"] is True
    # Content held in the private space also deduplicates into the public space.
    ok(await api.merge("pub", DATA, 3, public=True))
    assert emu.public_path("pub").read_bytes() == DATA


async def test_rewritten_file_is_no_longer_held(emu: EmulatorThread, api: Api) -> None:
    await api.upload("f", DATA, CHUNK)
    await asyncio.to_thread(_rewrite_in_place, emu.private_path("f"))
    assert ok(await api.check("g", DATA))["fileStatus"] == 2


def _rewrite_in_place(path: Path) -> None:
    """Change a file's first byte without replacing it, as an SFTP client could."""
    with open(path, "r+b") as f:
        f.write(b"X")


async def test_simple_upload_content_is_held(emu: EmulatorThread, api: Api) -> None:
    ok(await api.simple_upload("s", DATA))
    assert ok(await api.check("t", DATA))["fileStatus"] == 1


async def test_chunked_upload_needs_a_non_empty_file(api: Api) -> None:
    assert "fileSize" in refused(await api.check("f", b""))
    assert "fileSize" in refused(await api.merge("f", b"", 1))


async def test_public_space_chunks(emu: EmulatorThread, api: Api) -> None:
    ok(await api.add_folder("pub", public=True))
    await api.upload("f", DATA, 1024, "pub", public=True)
    assert emu.public_path("pub/f").read_bytes() == DATA
    assert not emu.private_path("pub/f").exists()


async def test_chunk_part_filename_is_free(emu: EmulatorThread, api: Api) -> None:
    form = aiohttp.FormData()  # default quoting: the chunk's filename is percent-encoded
    fields = {"userId": "5", "isPublic": "false", "currentPath": "", "fileName": "图.bin",
              "fileMd5": md5(DATA), "chunkSize": str(len(DATA)), "chunkMd5": md5(DATA), "index": "0", "total": "1"}  # fmt: skip
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("chunk", DATA, filename="图.bin", content_type="application/octet-stream")
    ok(await api.form("/api/file/file/uploadFile", form))
    ok(await api.merge("图.bin", DATA, 1))
    assert emu.private_path("图.bin").read_bytes() == DATA
    [entry] = [e for e in emu.log_entries() if e["path"].endswith("/uploadFile")]
    assert entry["fileName"] == "图.bin" and entry["chunk_bytes"] == len(DATA)
    assert entry["index"] == 0 and entry["total"] == 1 and entry["isPublic"] is False


async def test_big_chunks_stream(emu: EmulatorThread, api: Api) -> None:
    data = random.Random(2).randbytes(9 * 1024 * 1024 + 17)
    await api.upload("big", data, 8 * 1024 * 1024)
    assert hashlib.md5(emu.private_path("big").read_bytes()).hexdigest() == md5(data)


async def test_oversized_chunk_refused(tmp_path, session) -> None:
    with EmulatorThread(tmp_path / "p", max_chunk_bytes=1024) as emu:
        caller = Api(session, emu.url)
        await caller.login()
        refused(await caller.chunk("f", md5(DATA), DATA[:1025], 0, 3))
        ok(await caller.chunk("f", md5(DATA), DATA[:1024], 0, 3))
        assert list((emu.root / "tmp").iterdir()) == []


async def test_client_gone_mid_chunk_leaves_nothing(emu: EmulatorThread, api: Api) -> None:
    async def dying_body():
        yield b"x" * 100_000
        raise RuntimeError("the client dies mid-chunk")

    form = aiohttp.FormData()
    for key, value in {"userId": "5", "currentPath": "", "fileName": "f", "fileMd5": md5(DATA)}.items():
        form.add_field(key, value)
    form.add_field("chunk", dying_body(), filename="f")
    with pytest.raises(aiohttp.ClientError):
        await api.form("/api/file/file/uploadFile", form)
    deadline = asyncio.get_running_loop().time() + 5
    while not emu.log_entries() or emu.log_entries()[-1]["path"] != "/api/file/file/uploadFile":
        assert asyncio.get_running_loop().time() < deadline, "the aborted upload was never logged"
        await asyncio.sleep(0.01)
    assert emu.log_entries()[-1]["status"] is None
    assert list((emu.root / "tmp").iterdir()) == []
    assert ok(await api.check("f", DATA))["chunks"] == []
