"""`hubsync check --download` (#11): remote bytes read back (SFTP, datahub download) and compared by md5."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from emulator.testing import EmulatorThread
from transfer.datahub import DatahubApi
from transfer.models import DatahubSpace
from transfer.readback import Md5Sink

from .clocks import FakeClock
from .conftest import json_lines, md5_of, run_cli, write_random
from .test_client import client_for


def _tamper(path: Path) -> None:
    """Other bytes of the same size, written later than any sync (as a colleague's edit would be)."""
    size = path.stat().st_size
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    assert path.stat().st_size == size
    later = time.time() + 60
    os.utime(path, (later, later))


def _lines(stdout: str) -> list[tuple[str, str]]:
    """(kind, path) of each difference line of a text check."""
    found = []
    for line in stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("missing", "size", "only_remote", "refused", "unreadable", "content"):
            found.append((kind, rest.strip().split(":")[0]))
    return found


def _tree(src: Path) -> None:
    write_random(src / "a.bin", 300_000, seed=1)
    write_random(src / "sub/b.bin", 5_000, seed=2)
    write_random(src / "sub/c.bin", 2 << 20, seed=3)
    (src / "empty").write_bytes(b"")


def test_download_sees_a_same_size_change_over_sftp(emu_sftp: EmulatorThread, sftp_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    assert run_cli(["sync", str(src), "private:/d"], sftp_env).returncode == 0
    clean = run_cli(["-q", "check", str(src), "private:/d", "--download"], sftp_env)
    assert clean.returncode == 0 and clean.stdout == "", clean.stdout + clean.stderr
    _tamper(emu_sftp.private_path("d/sub/c.bin"))
    names_only = run_cli(["check", str(src), "private:/d"], sftp_env)
    assert names_only.returncode == 0, names_only.stdout + names_only.stderr  # names and sizes agree
    text = run_cli(["check", str(src), "private:/d", "--download"], sftp_env)
    assert text.returncode == 1, text.stderr
    assert _lines(text.stdout) == [("content", "sub/c.bin")], text.stdout
    assert f"local {md5_of(src / 'sub/c.bin')}, remote {md5_of(emu_sftp.private_path('d/sub/c.bin'))}" in text.stdout
    result = run_cli(["--json", "check", str(src), "private:/d", "--download", "--transfers", "2"], sftp_env)
    assert result.returncode == 1, result.stderr
    events = json_lines(result.stdout)
    assert [(e["kind"], e["path"]) for e in events if e["event"] == "difference"] == [("content", "sub/c.bin")]
    # The other files were read back: the md5 of the bytes read is the local file's.
    checked = {e["path"]: e["md5"] for e in events if e["event"] == "checked"}
    assert checked == {rel: md5_of(src / rel) for rel in ("a.bin", "sub/b.bin", "empty")}
    summary = events[-1]
    assert summary["event"] == "check" and summary["content"] == 1 and summary["files_downloaded"] == 4
    assert summary["bytes_downloaded"] == 300_000 + 5_000 + (2 << 20) and summary["identical"] is False
    # None of it was read over HTTP: the file spaces are read back over SFTP.
    assert not [e for e in emu_sftp.log_entries() if e["path"].startswith("/api/aiosFile/")]


def _datahub_tree(emu: EmulatorThread, src: Path) -> tuple[str, str]:
    asset, (v1,) = emu.datahub_create_asset("model", "weights")
    for rel, size in (("w.bin", 1_500_000), ("cfg/a.json", 700), ("cfg/b.json", 900)):
        data = write_random(src / rel, size, seed=size).read_bytes()
        target = emu.datahub_path("model", asset, v1, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return asset, v1


def test_download_sees_a_same_size_change_in_a_datahub_version(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    asset, v1 = _datahub_tree(emu, src)
    assert run_cli(["check", str(src), "model:weights@v1", "--download"], hub_env).returncode == 0
    _tamper(emu.datahub_path("model", asset, v1, "cfg/b.json"))
    assert run_cli(["check", str(src), "model:weights@v1"], hub_env).returncode == 0
    emu.clear_log()
    result = run_cli(["check", str(src), "model:weights@v1", "--download"], hub_env)
    assert result.returncode == 1, result.stderr
    assert _lines(result.stdout) == [("content", "cfg/b.json")], result.stdout
    downloads = [e for e in emu.log_entries() if e["path"].startswith("/api/aiosFile/")]
    assert sorted(e["filePath"] for e in downloads) == ["cfg/a.json", "cfg/b.json", "w.bin"]
    assert all(e["status"] == 200 and e["user_id"] == 5 for e in downloads)


def test_download_rides_through_500s_and_cut_connections(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _datahub_tree(emu, src)
    emu.faults.seed = 11
    emu.faults.download_error_rate = 1.0  # every download answers 500 three times in a row, then works
    result = run_cli(["--json", "check", str(src), "model:weights@v1", "--download", "--transfers", "1"], hub_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json_lines(result.stdout)[-1]["files_downloaded"] == 3
    log = [e for e in emu.log_entries() if e["path"].startswith("/api/aiosFile/")]
    assert [e["status"] for e in log] == [500, 500, 500, 200] * 3
    # A connection cut midway: the next attempt asks for the rest only (Range), and the md5 is exact.
    emu.faults.download_error_rate = 0.0
    emu.faults.download_cut_rate = 1.0
    emu.clear_log()
    cut = run_cli(["-q", "check", str(src), "model:weights@v1", "--download", "--transfers", "1"], hub_env)
    assert cut.returncode == 0 and cut.stdout == "", cut.stdout + cut.stderr
    big = [e for e in emu.log_entries() if e.get("filePath") == "w.bin" and e["path"].startswith("/api/aiosFile/")]
    assert [e["fault"] for e in big] == ["download_cut"] * 3 + [None]
    assert big[0]["range"] is None
    starts = [int(e["range"].removeprefix("bytes=").removesuffix("-")) for e in big[1:]]
    assert 0 < starts[0] < starts[1] < starts[2] < 1_500_000, starts  # each attempt goes on from the last


def test_remote_drift_reported_repaired_then_clean(emu_sftp: EmulatorThread, sftp_env: dict, tmp_path: Path) -> None:
    """#11's Done-when: one remote file deleted, another replaced with other bytes of its size."""
    src = tmp_path / "src"
    _tree(src)
    assert run_cli(["sync", str(src), "private:/drift"], sftp_env).returncode == 0
    emu_sftp.private_path("drift/a.bin").unlink()
    _tamper(emu_sftp.private_path("drift/sub/b.bin"))
    before = run_cli(["check", str(src), "private:/drift", "--download"], sftp_env)
    assert before.returncode == 1, before.stderr
    assert sorted(_lines(before.stdout)) == [("content", "sub/b.bin"), ("missing", "a.bin")], before.stdout
    assert run_cli(["sync", str(src), "private:/drift"], sftp_env).returncode == 0
    for rel in ("a.bin", "sub/b.bin", "sub/c.bin"):
        assert md5_of(emu_sftp.private_path(f"drift/{rel}")) == md5_of(src / rel)
    after = run_cli(["-q", "check", str(src), "private:/drift", "--download"], sftp_env)
    assert after.returncode == 0 and after.stdout == "" and after.stderr == "", after.stdout + after.stderr


def test_sftp_unavailable_is_one_line(emu_sftp: EmulatorThread, sftp_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    assert run_cli(["sync", str(src), "private:/d", "--transport", "http"], sftp_env).returncode == 0
    config = tmp_path / "hubsync.toml"
    config.write_text("[transfer]\nconnect_timeout = 0.5\n")
    emu_sftp.stop_sftp()
    result = run_cli(["--config", str(config), "check", str(src), "private:/d", "--download"], sftp_env)
    assert result.returncode == 1
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hubsync: check --download stopped after 0 of 4 files"), lines
    assert "connection refused" in lines[0]
    # Without --download the same check needs no SFTP: names and sizes agree.
    assert run_cli(["--config", str(config), "check", str(src), "private:/d"], sftp_env).returncode == 0


async def test_datahub_download_logs_in_again_on_a_plain_401(emu: EmulatorThread) -> None:
    asset, (v1,) = emu.datahub_create_asset("dataset", "d")
    data = os.urandom(3 << 20)
    emu.datahub_path("dataset", asset, v1, "x.bin").write_bytes(data)
    space = DatahubSpace("dataset", asset, v1)
    async with client_for(emu) as client:
        datahub = DatahubApi(client)
        await client.user()
        assert client.tokens.logins == 1
        emu.faults.auth_error_form = "http"
        emu.expire_tokens()
        progress: list[int] = []
        sink = Md5Sink(progress.append)
        await datahub.download(space, "x.bin", len(data), sink)
        assert await sink.hexdigest() == hashlib.md5(data).hexdigest()
        assert sum(progress) == len(data) and client.tokens.logins == 2


async def test_a_file_shorter_than_the_bytes_read_is_read_again(emu: EmulatorThread) -> None:
    """A resumed read past the end (the file got shorter meanwhile) answers 416: the sink starts over."""
    asset, (v1,) = emu.datahub_create_asset("dataset", "d")
    data = os.urandom(200_000)
    emu.datahub_path("dataset", asset, v1, "y.bin").write_bytes(data)
    async with client_for(emu, sleep=FakeClock()) as client:
        progress: list[int] = []
        sink = Md5Sink(progress.append)
        await sink.write(bytes(300_000))  # what an earlier attempt read of a longer version of the file
        await DatahubApi(client).download(DatahubSpace("dataset", asset, v1), "y.bin", len(data), sink)
        assert await sink.hexdigest() == hashlib.md5(data).hexdigest() and sink.position == len(data)
        assert sum(progress) == len(data)  # the forgotten bytes were taken back from the progress
    statuses = [e["status"] for e in emu.log_entries() if e["path"].startswith("/api/aiosFile/")]
    assert statuses == [416, 200]
