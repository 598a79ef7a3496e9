"""Issue 11's tree: 2,000 ordinary files plus one each of the names and entries that used to
escape or crash (a name that is not UTF-8, a newline, a `\\`, `..\\x`, a 255-byte name, a
symbolic link loop, a FIFO), over HTTP, over SFTP and through the daemon.

Every ordinary file arrives md5-exact, the run exits 1 naming exactly what it could not take,
and nothing is written outside the target (the emulator runs with `lenient_paths`, so it is
the client's own refusal that keeps the odd names in).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread

from .conftest import json_lines, run_cli, summary_of, wait_for
from .daemon_support import DaemonProcess, daemon_config

ORDINARY = 2000
LONG_NAME = "n" * 251 + ".txt"  # 255 bytes: legal, and its SFTP part name must still fit
REFUSED = {"\\xff\\xfe.bin", "new\\nline.txt", "back\\slash.txt", "..\\x"}
SKIPPED = {"loop", "fifo"}  # a loop and a special file: reported, not sent (scan problems)


def build(src: Path) -> dict[str, str]:
    """The tree; returns rel -> md5 of every file that must arrive."""
    expected = {}
    for i in range(ORDINARY):
        rel = f"d{i % 20:02d}/f{i:04d}.txt"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        data = f"{i}\n".encode()
        (src / rel).write_bytes(data)
        expected[rel] = hashlib.md5(data).hexdigest()
    (src / LONG_NAME).write_bytes(b"long name")
    expected[LONG_NAME] = hashlib.md5(b"long name").hexdigest()
    with open(os.fsencode(src) + b"/\xff\xfe.bin", "wb") as f:
        f.write(b"not utf-8")
    for name in ("new\nline.txt", "back\\slash.txt", "..\\x"):
        (src / name).write_bytes(b"odd")
    (src / "loop").symlink_to(".")
    os.mkfifo(src / "fifo")
    return expected


def spaces(emu: EmulatorThread) -> dict[str, str]:
    """Every file of the emulator's storage root below spaces/, with its md5."""
    root = emu.root / "spaces"
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def seed_neighbours(emu: EmulatorThread) -> dict[str, str]:
    """Files beside and above the target that a `..` would hit."""
    for rel, data in (("projects/important.db", b"precious"), ("projects/x", b"neighbour"), ("x", b"top")):
        emu.private_path(rel).parent.mkdir(parents=True, exist_ok=True)
        emu.private_path(rel).write_bytes(data)
    return spaces(emu)


def assert_only_target_changed(emu: EmulatorThread, before: dict[str, str], target: str, expected: dict[str, str]) -> None:
    after = spaces(emu)
    changed = {k for k, v in after.items() if before.get(k) != v} | (before.keys() - after.keys())
    prefix = f"private/5/{target}/"
    assert all(k.startswith(prefix) for k in changed), sorted(k for k in changed if not k.startswith(prefix))[:5]
    got = {k[len(prefix):]: v for k, v in after.items() if k.startswith(prefix)}
    assert got == expected  # every ordinary file md5-exact, nothing else (no part file, no odd name)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_the_awkward_tree_syncs_everything_it_can_and_names_the_rest(emu_sftp: EmulatorThread, sftp_env: dict,
                                                                       tmp_path: Path, transport: str) -> None:
    emu = emu_sftp
    src = tmp_path / "src"
    src.mkdir()
    expected = build(src)
    before = seed_neighbours(emu)
    emu.faults.lenient_paths = True
    result = run_cli(["--json", "sync", "--transport", transport, "--transfers", "8", str(src), "private:/projects/incoming"], sftp_env)
    summary = summary_of(result)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert {f["path"] for f in summary["failures"]} == REFUSED | SKIPPED
    assert summary["files_failed"] == len(REFUSED | SKIPPED)
    assert summary["files_sent"] == ORDINARY + 1
    assert {e["path"] for e in json_lines(result.stdout) if e.get("event") == "done"} == set(expected)
    assert "Traceback" not in result.stderr
    assert_only_target_changed(emu, before, "projects/incoming", expected)


@pytest.mark.slow
def test_the_daemon_survives_the_awkward_tree(emu_sftp: EmulatorThread, sftp_env: dict, tmp_path: Path) -> None:
    emu = emu_sftp
    src = tmp_path / "src"
    src.mkdir()
    expected = build(src)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours to send")
    (src / "out_link").symlink_to(outside)  # leads outside the source: not followed
    before = seed_neighbours(emu)
    emu.faults.lenient_paths = True
    cfg = tmp_path / "hubsync.toml"
    cfg.write_text(daemon_config(tmp_path / "state", [
        {"source": str(src), "remote": "private:/projects/incoming", "settle_seconds": 0.2, "delete": True},
    ], {"delete_delay": 0.5}))
    with DaemonProcess(cfg, sftp_env, tmp_path / "daemon.log") as daemon:
        target = emu.private_path("projects/incoming")
        wait_for(lambda: sum(1 for p in target.rglob("*") if p.is_file()) >= len(expected), timeout=120, interval=0.25)
        wait_for(lambda: {e["path"] for e in daemon.events("failed")} >= REFUSED, timeout=30)
        refused = {e["path"] for e in daemon.events("failed")}
        assert refused == REFUSED, refused
        # A new ordinary file after all that: the daemon is still at work.
        (src / "later.txt").write_bytes(b"later")
        expected["later.txt"] = hashlib.md5(b"later").hexdigest()
        wait_for(lambda: (target / "later.txt").exists(), timeout=30)
        status = run_cli(["--json", "--config", str(cfg), "status"], sftp_env)
        assert status.returncode == 0, status.stderr
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert [e["path"] for e in daemon.events("link_skipped")] == ["out_link"]  # once
        assert daemon.stop() == 0
    assert not [e for e in daemon.events() if e.get("level") == "error" and "Traceback" in str(e)]
    assert_only_target_changed(emu, before, "projects/incoming", expected)
