"""Symbolic links: those that lead outside SRC are not followed unless asked (`--follow-symlinks`).

A skipped link is reported once, is not a failure (exit 0), and is never a reason for --delete
to remove what the remote holds under its path.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.scanner import Excludes, scan
from emulator.testing import EmulatorThread

from .conftest import json_lines, run_cli, summary_of


def make_tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"secret")
    (outside / "dir" / "x.txt").write_bytes(b"x")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "real.txt").write_bytes(b"real")
    (src / "alias.txt").symlink_to("sub/real.txt")  # inside: followed
    (src / "out_file").symlink_to(outside / "secret.txt")
    (src / "sub" / "out_dir").symlink_to("../../outside/dir")
    (src / "loop").symlink_to(".")  # a loop inside the tree: detected, as before
    return src


def test_the_scanner_follows_links_inside_and_lists_those_leading_outside(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    result = scan(src, Excludes([]))
    assert sorted(f.rel for f in result.files) == ["alias.txt", "sub/real.txt"]
    assert sorted(result.links) == ["out_file", "sub/out_dir"]
    assert [p for p, _ in result.problems] == ["loop"]
    assert result.under_link("sub/out_dir/x.txt") and not result.under_link("sub/out_dirx")
    followed = scan(src, Excludes([]), follow_symlinks=True)
    assert sorted(f.rel for f in followed.files) == ["alias.txt", "out_file", "sub/out_dir/x.txt", "sub/real.txt"]
    assert followed.links == []
    # A walk of a subfolder judges "outside" against the job's root, not the subfolder.
    below = scan(src / "sub", Excludes([]), root=src)
    assert below.links == ["out_dir"] and [f.rel for f in below.files] == ["real.txt"]


def test_sync_skips_outside_links_once_each_without_failing(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    os.unlink(src / "loop")
    result = run_cli(["--json", "sync", str(src), "private:/s"], hub_env)
    summary = summary_of(result)
    assert result.returncode == 0, result.stdout[-2000:]
    assert summary["files_sent"] == 2 and summary["files_failed"] == 0
    notes = [e["path"] for e in json_lines(result.stdout) if e.get("event") == "info" and "symbolic link" in e.get("message", "")]
    assert sorted(notes) == ["out_file", "sub/out_dir"]
    assert not emu.private_path("s/out_file").exists() and not emu.private_path("s/sub/out_dir").exists()
    assert emu.private_path("s/alias.txt").read_bytes() == b"real"

    text = run_cli(["sync", str(src), "private:/s"], hub_env)
    assert text.returncode == 0 and text.stderr.count("outside SRC") == 2


def test_delete_leaves_the_remote_copy_of_a_skipped_link(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    os.unlink(src / "loop")
    first = run_cli(["--json", "sync", "--follow-symlinks", str(src), "private:/s"], hub_env)
    assert summary_of(first)["files_sent"] == 4 and first.returncode == 0
    assert emu.private_path("s/sub/out_dir/x.txt").read_bytes() == b"x"
    assert emu.private_path("s/out_file").read_bytes() == b"secret"
    (src / "sub" / "real.txt").unlink()  # real deletions, which --delete must carry out
    (src / "alias.txt").unlink()
    second = run_cli(["--json", "sync", "--delete", str(src), "private:/s"], hub_env)
    assert second.returncode == 0, second.stdout[-2000:]
    deleted = [e["remote"] for e in json_lines(second.stdout) if e.get("event") == "deleted"]
    assert sorted(deleted) == ["private:/s/alias.txt", "private:/s/sub/real.txt"]
    assert emu.private_path("s/sub/out_dir/x.txt").exists() and emu.private_path("s/out_file").exists()
