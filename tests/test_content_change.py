"""A file rewritten in place while it is sent, its size and mtime restored (issue 11, case 6).

stat cannot see such a change, and neither can the sampled fingerprint when the rewritten bytes
lie outside its samples (head, middle, tail). Over HTTP the platform's md5 checks refuse the mix:
uploadFile's chunkMd5 (the chunk md5s come from the read that hashed the file, and a chunk is not
hashed again while it is sent), and mergeFile's fileMd5 where a chunk was hashed later than the
file (a resume from a cached digest); over SFTP only the md5 of the bytes actually written shows
it. Either way the run must send the new content and never end with exit 0 while the remote
holds a mix.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from emulator.sftp_server import sftp_write_log
from emulator.testing import EmulatorThread
from transfer.agenttag import load_tag
from transfer.api import PlatformClient
from transfer.destinations.chunked import ChunkedDestination
from transfer.engine import Engine, SendItem
from transfer.folders import RemoteFolders
from transfer.hashing import hash_file, md5_hex, stat_file
from transfer.journal import Journal
from transfer.models import RemoteTarget, Space
from transfer.remotepath import part_name

from .conftest import ALICE, KEY, REPO, hubsync_cmd, json_lines, md5_of, user_env, wait_for, write_random

MiB = 1 << 20


def rewrite_in_place(path: Path, offset: int, length: int, seed: int) -> None:
    """Overwrite `length` bytes at `offset` without changing the size, then restore the mtime."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(length) if seed < 0 else bytes([seed % 256]) * length)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def env_with(emu: EmulatorThread, tmp_path: Path, transfer: str) -> dict[str, str]:
    config = tmp_path / "hubsync.toml"
    config.write_text(f"[transfer]\n{transfer}\n")
    env = user_env(emu, tmp_path)
    env["HUBSYNC_CONFIG"] = str(config)
    return env


def test_http_chunk_refused_for_md5_rehashes_and_sends_the_new_content(emu: EmulatorThread, tmp_path: Path) -> None:
    src = write_random(tmp_path / "src" / "table.db", 4 * MiB, seed=3)
    original = md5_of(src)
    # One chunk in flight at a time, each call slowed: the last chunk is read well after chunk 0
    # landed (three slowed calls later: a margin for a loaded machine).
    emu.faults.latency = 0.2
    env = env_with(emu, tmp_path, 'chunks_per_file = 1\nchunk_size = "1MiB"')
    proc = subprocess.Popen(
        hubsync_cmd("--json", "sync", "--transport", "http", str(src.parent), "private:/db"),
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: any(e["path"].endswith("/uploadFile") and e.get("index") == 0 for e in emu.log_entries()),
                 timeout=60, interval=0.005)
        # Inside chunk 3, clear of the fingerprint's tail sample (its last 64 KiB).
        rewrite_in_place(src, 3 * MiB + 128 * 1024, 256 * 1024, seed=-1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert md5_of(src) != original
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert md5_of(emu.private_path("db/table.db")) == md5_of(src)
    log = emu.log_entries()
    # The platform refused chunk 3 of the old version (its bytes were of the new one); no
    # merge of the old version was tried; the new version went in full.
    refused = [e for e in log if e["path"].endswith("/uploadFile") and not e["ok"]]
    assert [(e["index"], e["fileMd5"]) for e in refused] == [(3, original)]
    merges = [e for e in log if e["path"].endswith("/mergeFile")]
    assert [(m["fileMd5"], m["ok"]) for m in merges] == [(md5_of(src), True)]
    assert any("changed" in o.get("message", "") for o in json_lines(out) if o.get("event") == "info")


async def test_http_merge_refused_for_md5_rehashes_and_sends_the_new_content(
    emu: EmulatorThread, tmp_path: Path
) -> None:
    """A resume from a cached digest hashes each chunk as it goes: chunks of the new version
    pass the platform's chunk check, and only the merge's fileMd5 shows the mix."""
    cs = MiB
    src = write_random(tmp_path / "src" / "f.bin", 4 * cs, seed=11)
    local = stat_file(src, "f.bin")
    original = hash_file(local, chunk_size=cs)
    target = RemoteTarget(Space.PRIVATE, "v", "f.bin")
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        try:
            # An earlier run hashed the file and failed; then the file was rewritten in place,
            # clear of the fingerprint's samples: the cached digest still looks valid.
            await journal.begin(local, str(target), md5=original.md5, chunk_size=cs, transport="http",
                                digest=original)
            rewrite_in_place(src, 3 * cs - 256 * 1024, 128 * 1024, seed=-1)
            folders = RemoteFolders(api)
            engine = Engine(journal, ChunkedDestination(api, folders, chunk_size=cs), chunk_size=cs,
                            settle_seconds=0.05)
            summary = await engine.run([SendItem(local, target)])
        finally:
            await journal.close()
    assert (summary.files_sent, summary.files_failed) == (1, 0), summary.failures
    assert md5_of(emu.private_path("v/f.bin")) == md5_of(src) != original.md5
    merges = [(m["fileMd5"], m["ok"]) for m in emu.log_entries() if m["path"].endswith("/mergeFile")]
    assert merges == [(original.md5, False), (md5_of(src), True)]


def test_sftp_does_not_place_bytes_that_differ_from_the_files_md5(tmp_path: Path) -> None:
    with EmulatorThread(tmp_path / "platform", sftp=True) as emu:
        size = 6 * MiB
        src = write_random(tmp_path / "src" / "table.db", size, seed=4)
        original = md5_of(src)
        # 2 MiB/s after a 2 MiB burst: the transfer takes ~2 s, the tail is read last.
        env = env_with(emu, tmp_path, 'chunk_size = "1MiB"\nbandwidth_limit = "2MiB/s"')
        part_file = part_name("table.db", load_tag(tmp_path / "state"))  # the CLI's state dir (user_env)
        part = emu.private_path("db/" + part_file)
        target = emu.private_path("db/table.db")
        seen: set[str] = set()
        proc = subprocess.Popen(
            hubsync_cmd("--json", "sync", "--transport", "sftp", str(src.parent), "private:/db"),
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_for(lambda: part.exists() and part.stat().st_size >= 2 * MiB + 512 * 1024, timeout=60,
                     interval=0.005)
            # One region already written, one not yet (both clear of the fingerprint's samples):
            # what the old code placed was a mix of the two versions.
            rewrite_in_place(src, 1 * MiB, 512 * 1024, seed=-1)
            rewrite_in_place(src, 5 * MiB, 512 * 1024, seed=-1)

            def placed_or_done() -> bool:
                if target.exists():
                    seen.add(md5_of(target))
                return proc.poll() is not None

            wait_for(placed_or_done, timeout=120, interval=0.01)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        now = md5_of(src)
        assert now != original
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert md5_of(target) == now
        assert seen <= {now}, "the target held bytes that were never one version of the file"
        assert not part.exists()
        # Sent twice: the first pass was not renamed into place, the second sent the new content.
        writes = [w for w in sftp_write_log(emu.root) if w["path"].endswith(part_file)]
        assert sum(w["bytes"] for w in writes) >= size + 2 * MiB, writes
        assert any("changed" in o.get("message", "") for o in json_lines(out) if o.get("event") == "info")


async def test_a_held_chunk_of_another_version_is_verified_again_after_a_refused_merge(
    emu: EmulatorThread, tmp_path: Path
) -> None:
    """The journal acked chunk 1 and the platform holds it, but with bytes of another version
    (as a run that read the file mid-rewrite leaves it): trusting the ack fails every merge."""
    cs = MiB
    src = write_random(tmp_path / "src" / "f.bin", 3 * cs, seed=9)
    local = stat_file(src, "f.bin")
    digest = hash_file(local)
    target = RemoteTarget(Space.PRIVATE, "v", "f.bin")
    other = os.urandom(cs)
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        journal = await Journal(tmp_path / "j.sqlite3").open()
        try:
            folders = RemoteFolders(api)
            await folders.ensure(Space.PRIVATE, "v")
            await api.upload_chunk(Space.PRIVATE, "v", "f.bin", file_md5=digest.md5, index=1, total=3, data=other,
                                   chunk_md5=md5_hex(other))
            record = await journal.begin(local, str(target), md5=digest.md5, chunk_size=cs, transport="http",
                                         digest=digest)
            await journal.ack_chunk(record.id, digest.md5, cs, 1, md5_hex(other), cs)
            engine = Engine(journal, ChunkedDestination(api, folders, chunk_size=cs), chunk_size=cs)
            summary = await engine.run([SendItem(local, target)])
        finally:
            await journal.close()
    assert (summary.files_sent, summary.files_failed) == (1, 0), summary.failures
    assert md5_of(emu.private_path("v/f.bin")) == digest.md5
    chunk1 = [e for e in emu.log_entries() if e["path"].endswith("/uploadFile") and e.get("index") == 1]
    assert len(chunk1) == 2  # ours above, then the file's own chunk 1 after the refused merge
