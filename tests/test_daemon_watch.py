"""`hubsync daemon` watching real folders (real watchdog) into the emulator on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path

from emulator.testing import EmulatorThread

from .conftest import md5_of, wait_for, write_random
from .daemon_support import DaemonProcess, arrived, daemon_config, sends, sends_logged, write_slowly


def _config(tmp_path: Path, jobs: list[dict], **daemon: object) -> Path:
    cfg = tmp_path / "hubsync.toml"
    cfg.write_text(daemon_config(tmp_path / "state", jobs, daemon or None))
    return cfg


def test_two_folders_into_private_and_public_slow_write_modify_and_rename(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "keep.txt").write_bytes(b"v1")
    cfg = _config(tmp_path, [
        {"source": str(a), "remote": "private:/A", "settle_seconds": 1.5, "exclude": ["*.tmp"]},
        {"source": str(b), "remote": "public:/B", "settle_seconds": 0.5},
    ])
    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        wait_for(lambda: arrived(emu.private_path("A/keep.txt"), b"v1"))
        (b / "pub.txt").write_bytes(b"for everyone")

        # Written over ~3 s with pauses well below settle_seconds: sent once, whole.
        pieces = [os.urandom(64 << 10) for _ in range(10)]
        write_slowly(a / "slow.bin", pieces, pause=0.33)
        wait_for(lambda: arrived(emu.private_path("A/slow.bin"), b"".join(pieces)))
        assert len(sends_logged(emu, "slow.bin", 1)) == 1
        wait_for(lambda: arrived(emu.public_path("B/pub.txt"), b"for everyone"))

        # A modified file is sent again.
        (a / "keep.txt").write_bytes(b"v2, longer")
        wait_for(lambda: arrived(emu.private_path("A/keep.txt"), b"v2, longer"))
        assert len(sends_logged(emu, "keep.txt", 2)) == 2

        # Renamed into place from an excluded temp name: the final name once, the temp name never.
        write_random(a / "report.csv.tmp", 5000, seed=3)
        os.rename(a / "report.csv.tmp", a / "report.csv")
        # A sent file renamed: it arrives under the new name; without delete the old copy stays.
        os.rename(a / "keep.txt", a / "kept.txt")
        wait_for(lambda: arrived(emu.private_path("A/report.csv"), md5_of(a / "report.csv")))
        wait_for(lambda: arrived(emu.private_path("A/kept.txt"), b"v2, longer"))
        assert len(sends_logged(emu, "report.csv", 1)) == 1 and not sends(emu, "report.csv.tmp")
        assert emu.private_path("A/keep.txt").exists()

        sent = daemon.wait_event("sent", lambda e: e.get("path") == "slow.bin")
        assert sent["job"] == "private:/A" and sent["bytes"] == 640 << 10 and sent["rate"] > 0
        assert daemon.stop() == 0


def test_two_thousand_files_dropped_at_once_all_arrive(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    cfg = _config(tmp_path, [{"source": str(src), "remote": "public:/drop", "settle_seconds": 0.5}])
    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        started = time.monotonic()
        for i in range(2000):
            folder = src / f"part{i % 4}"
            folder.mkdir(exist_ok=True)
            (folder / f"f{i:04d}.dat").write_bytes(f"file {i} ".encode() * (1 + i % 50))
        remote = emu.public_path("drop")
        wait_for(lambda: sum(1 for p in remote.rglob("*.dat")) == 2000, timeout=240, interval=0.25)  # generous: the suite shares two cores between parallel workers
        elapsed = time.monotonic() - started
        print(f"\n2,000 files dropped at once: all at the remote {elapsed:.1f}s after the first write")
        for i in (0, 1, 777, 1999):
            rel = f"part{i % 4}/f{i:04d}.dat"
            assert (remote / rel).read_bytes() == (src / rel).read_bytes()
        assert len(sends_logged(emu, None, 2000)) == 2000  # each file committed once
        walks = daemon.events("walk")
        assert any(w["path"] != "." for w in walks), "the burst should have collapsed into folder rescans"
        assert daemon.stop() == 0


def test_deletes_only_when_enabled_and_never_more_than_max_delete(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    on, off = tmp_path / "on", tmp_path / "off"
    for i in range(8):
        write_random(on / f"f{i}.bin", 100 + i, seed=i)
    write_random(on / "sub" / "x.bin", 10)
    write_random(on / "sub" / "y.bin", 11)
    write_random(off / "stays.bin", 12)
    cfg = _config(tmp_path, [
        {"source": str(on), "remote": "private:/on", "settle_seconds": 0.3, "delete": True},
        {"source": str(off), "remote": "private:/off", "settle_seconds": 0.3},
    ], delete_delay=0.5, max_delete=3)
    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        wait_for(lambda: len(sends(emu)) == 11)
        (off / "stays.bin").unlink()  # delete = false: never deleted remotely
        # Three files within the limit: a file and a folder of two.
        (on / "f0.bin").unlink()
        for name in ("x.bin", "y.bin"):
            (on / "sub" / name).unlink()
        (on / "sub").rmdir()
        wait_for(lambda: not emu.private_path("on/f0.bin").exists() and not emu.private_path("on/sub").exists())
        assert emu.private_path("off/stays.bin").exists()
        assert all(emu.private_path(f"on/f{i}.bin").exists() for i in range(1, 8))

        # Four at once is more than max_delete = 3: the pass deletes none and says why.
        for i in range(1, 5):
            (on / f"f{i}.bin").unlink()
        refused = daemon.wait_event("delete_refused")
        assert refused["files"] == 4 and "max_delete" in refused["message"]
        assert all(emu.private_path(f"on/f{i}.bin").exists() for i in range(1, 8))
        assert not [e for e in emu.log_entries() if "delete" in e["path"].lower() and "off" in str(e.get("sPath"))]

        # A file that comes back after its remote copy was deleted is sent again.
        write_random(on / "f0.bin", 100, seed=0)
        wait_for(lambda: emu.private_path("on/f0.bin").exists())
        assert daemon.stop() == 0


def test_watching_into_a_datahub_version(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "incoming")
    src = tmp_path / "src"
    src.mkdir()
    (src / "first.csv").write_bytes(b"a,b\n1,2\n")
    cfg = _config(tmp_path, [{"source": str(src), "remote": "dataset:incoming@v1:/raw", "settle_seconds": 0.5}])
    with DaemonProcess(cfg, hub_env, tmp_path / "daemon.log") as daemon:
        wait_for(lambda: arrived(emu.datahub_path("dataset", asset_id, v1, "raw/first.csv"), b"a,b\n1,2\n"))
        write_random(src / "sub" / "shard-0.bin", 3 << 20, seed=9)
        wait_for(lambda: arrived(emu.datahub_path("dataset", asset_id, v1, "raw/sub/shard-0.bin"),
                                 md5_of(src / "sub" / "shard-0.bin")))
        # staged through private storage, and the staging folders removed once their batch is done
        wait_for(lambda: not emu.private_path(".hubsync-staging").exists())
        # the log names the version, never its ids
        sent = daemon.wait_event("sent", lambda e: e.get("path") == "sub/shard-0.bin")
        assert sent["remote"] == "dataset:incoming@v1:/raw/sub/shard-0.bin"
        assert asset_id not in daemon.tail(200) and v1 not in daemon.tail(200)
        assert daemon.stop() == 0
