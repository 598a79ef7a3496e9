"""Deletes that cannot empty a remote by accident (#11): empty, missing, unmounted sources and
passes over the limit delete nothing, in `sync --delete` (and its --dry-run)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.deleteguard import count_refusal, fstab_mount_points, source_refusal, unmounted_fstab_point
from emulator.testing import EmulatorThread

from .conftest import json_lines, run_cli, write_random


def summary_of(result: subprocess.CompletedProcess[str]) -> dict:
    """The last JSON line: a run's summary (a dry run's too)."""
    return json_lines(result.stdout)[-1]

MOUNTINFO = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n36 22 0:32 / /mnt/on rw - tmpfs tmpfs rw\n"
FSTAB = "# comment\n/dev/sda1 / ext4 defaults 0 1\n/dev/sdb1 /mnt/off ext4 noauto 0 2\n" \
        "tmpfs /mnt/on tmpfs defaults 0 0\n/dev/sdc1 none swap sw 0 0\nLABEL=x /mnt/with\\040space xfs 0 0\n"


def test_fstab_and_mountinfo_parsing() -> None:
    assert fstab_mount_points(FSTAB) == ["/", "/mnt/off", "/mnt/on", "/mnt/with space"]
    assert unmounted_fstab_point("/mnt/off", FSTAB, MOUNTINFO) == "/mnt/off"
    assert unmounted_fstab_point("/mnt/off/data/in", FSTAB, MOUNTINFO) == "/mnt/off"  # below it, too
    assert unmounted_fstab_point("/mnt/on/data", FSTAB, MOUNTINFO) is None
    assert unmounted_fstab_point("/mnt/offset", FSTAB, MOUNTINFO) is None  # a prefix is not a parent
    assert unmounted_fstab_point("/home/u", FSTAB, MOUNTINFO) is None  # only "/" holds it, mounted


def test_count_limits() -> None:
    assert count_refusal(2, 4, None) is None  # half is allowed by default
    assert "more than half" in (count_refusal(3, 4, None) or "")
    assert count_refusal(3, 4, 3) is None and count_refusal(4, 4, 3) is not None
    assert count_refusal(0, 0, None) is None


def test_source_refusals(tmp_path: Path) -> None:
    src = tmp_path / "src"
    assert "missing" in (source_refusal(src, None)[0] or "")
    src.mkdir()
    assert "empty" in (source_refusal(src, None)[0] or "")
    (src / "f").write_text("x")
    reason, device = source_refusal(src, None)
    assert reason is None and device == os.stat(src).st_dev
    assert "another file system" in (source_refusal(src, device + 1)[0] or "")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"tmpfs {src} tmpfs defaults 0 0\n")
    assert "not mounted" in (source_refusal(src, None, fstab=fstab)[0] or "")


def _seed(emu: EmulatorThread, env: dict, src: Path, remote: str, n: int = 4) -> None:
    for i in range(n):
        write_random(src / f"f{i}.bin", 100 + i, seed=i)
    assert run_cli(["sync", str(src), remote], env).returncode == 0


def _remote_files(emu: EmulatorThread, folder: str) -> int:
    return sum(1 for p in emu.private_path(folder).rglob("*") if p.is_file())


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_empty_or_missing_source_deletes_nothing(emu: EmulatorThread, hub_env: dict, tmp_path: Path, how: str) -> None:
    src = tmp_path / "src"
    _seed(emu, hub_env, src, "private:/keep")
    shutil.rmtree(src)
    if how == "empty":
        src.mkdir()
    for extra in (["--dry-run"], [], ["--max-delete", "100"]):
        result = run_cli(["--json", "sync", str(src), "private:/keep", "--delete", *extra], hub_env)
        if how == "missing":
            assert result.returncode == 2 and "does not exist" in result.stderr  # refused before anything
        else:
            assert result.returncode == 1, result.stderr
            assert "delete pass refused" in summary_of(result)["delete_refused"]
            assert "empty" in summary_of(result)["delete_refused"]
        assert _remote_files(emu, "keep") == 4


def test_more_than_half_needs_max_delete(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _seed(emu, hub_env, src, "private:/half")
    for i in range(3):
        (src / f"f{i}.bin").unlink()
    dry = run_cli(["--json", "sync", str(src), "private:/half", "--delete", "--dry-run"], hub_env)
    assert dry.returncode == 1 and "more than half" in summary_of(dry)["delete_refused"]
    refused = run_cli(["sync", str(src), "private:/half", "--delete"], hub_env)
    assert refused.returncode == 1 and "more than half" in refused.stderr
    assert _remote_files(emu, "half") == 4
    over = run_cli(["sync", str(src), "private:/half", "--delete", "--max-delete", "2"], hub_env)
    assert over.returncode == 1 and _remote_files(emu, "half") == 4
    ok = run_cli(["--json", "sync", str(src), "private:/half", "--delete", "--max-delete", "3"], hub_env)
    assert ok.returncode == 0, ok.stderr
    assert _remote_files(emu, "half") == 1


@contextlib.contextmanager
def _tmpfs(where: Path) -> Iterator[None]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _can_mount(tmp_path: Path) -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    probe = tmp_path / "probe"
    probe.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(probe)], capture_output=True).returncode != 0:
        return "this machine refuses mount -t tmpfs (no CAP_SYS_ADMIN)"
    subprocess.run(["umount", str(probe)], check=True)
    return None


def test_unmounted_disk_deletes_nothing(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    """The journal records the source's file system at a good pass; once the tmpfs is unmounted
    the mount point (holding a stray file, so it is not empty) is another file system."""
    why = _can_mount(tmp_path)
    if why:
        pytest.skip(why)
    src = tmp_path / "disk"
    src.mkdir()
    (src / "stray.txt").write_text("under the mount point")  # hidden while mounted
    with _tmpfs(src):
        _seed(emu, hub_env, src, "private:/disk")
        first = run_cli(["sync", str(src), "private:/disk", "--delete"], hub_env)  # a good pass: recorded
        assert first.returncode == 0, first.stderr
    assert (src / "stray.txt").exists()
    result = run_cli(["--json", "sync", str(src), "private:/disk", "--delete", "--max-delete", "100"], hub_env)
    assert result.returncode == 1
    assert "another file system" in summary_of(result)["delete_refused"]
    assert all(emu.private_path(f"disk/f{i}.bin").exists() for i in range(4))  # none deleted


def _daemon_cfg(tmp_path: Path, src: Path) -> Path:
    from .daemon_support import daemon_config

    cfg = tmp_path / "hubsync.toml"
    cfg.write_text(daemon_config(tmp_path / "state", [
        {"source": str(src), "remote": "private:/w", "settle_seconds": 0.2, "delete": True},
    ], {"delete_delay": 0.3, "max_delete": 1000, "rescan_seconds": 1.0}))
    return cfg


def test_daemon_deletes_nothing_when_the_source_empties(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    from .conftest import wait_for
    from .daemon_support import DaemonProcess, sends

    src = tmp_path / "src"
    for i in range(3):
        write_random(src / f"f{i}.bin", 100 + i, seed=i)
    with DaemonProcess(_daemon_cfg(tmp_path, src), hub_env, tmp_path / "daemon.log") as daemon:
        wait_for(lambda: len(sends(emu)) == 3)
        for i in range(3):
            (src / f"f{i}.bin").unlink()
        refused = daemon.wait_event("delete_refused")
        assert "is empty" in refused["message"]
        shutil.rmtree(src)
        # A missing source: its walk fails (a problem), so nothing is even queued for deletion.
        daemon.wait_event("walk", lambda e: e.get("problems", 0) >= 1 and e.get("files") == 0)
        assert _remote_files(emu, "w") == 3
        assert not [e for e in emu.log_entries() if "delete" in e["path"].lower()]
        assert daemon.stop() == 0


def test_daemon_deletes_nothing_when_its_disk_is_unmounted(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    from .conftest import wait_for
    from .daemon_support import DaemonProcess, sends

    why = _can_mount(tmp_path)
    if why:
        pytest.skip(why)
    src = tmp_path / "disk"
    src.mkdir()
    with _tmpfs(src):
        for i in range(3):
            write_random(src / f"f{i}.bin", 100 + i, seed=i)
        daemon = DaemonProcess(_daemon_cfg(tmp_path, src), hub_env, tmp_path / "daemon.log").start()
        try:
            wait_for(lambda: len(sends(emu)) == 3)
        except BaseException:
            daemon.kill()
            raise
    try:
        # Unmounted while the daemon runs: the next pass (the rescan finds every file gone) refuses.
        daemon.wait_event("delete_refused")
        assert _remote_files(emu, "w") == 3
        assert not [e for e in emu.log_entries() if "delete" in e["path"].lower()]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
