"""`hubsync sync` as a user runs it, against the emulator on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from emulator.testing import EmulatorThread

from .conftest import (
    REPO,
    hubsync_cmd,
    json_lines,
    md5_of,
    obeying_permissions,
    run_cli,
    summary_of,
    wait_for,
    write_random,
)

MiB = 1 << 20
CS = MiB  # chunk size used by these tests: small, so files of a few MiB have many chunks


def uploads(emu: EmulatorThread) -> list[dict]:
    return [e for e in emu.log_entries() if e["path"].endswith(("/uploadFile", "/uploadFolder", "/uploadPublicFolder"))]


def make_tree(root: Path) -> dict[str, int]:
    sizes = {
        "empty.bin": 0,
        "one.bin": 1,
        "nested/a/b/cs-1.bin": CS - 1,
        "nested/a/cs.bin": CS,
        "nested/cs+1.bin": CS + 1,
        "中文目录/数据 文件.txt": 1234,
        "emoji 🚀/rocket 🚀.dat": 4321,
        "big/odd.bin": 50 * MiB + 12345,
    }
    for i, (rel, size) in enumerate(sizes.items()):
        write_random(root / rel, size, seed=i)
    return sizes


def test_tree_into_private_and_public(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    sizes = make_tree(src)
    for remote, disk in (("private:/data/set", emu.private_path), ("public:/shared", emu.public_path)):
        result = run_cli(["--json", "sync", str(src), remote, "--chunk-size", "1MiB"], hub_env)
        assert result.returncode == 0, result.stderr
        summary = summary_of(result)
        assert summary["files_sent"] == len(sizes) and summary["files_failed"] == 0
        assert summary["bytes_total"] == sum(sizes.values())
        folder = remote.split(":/", 1)[1]
        for rel in sizes:
            assert md5_of(disk(f"{folder}/{rel}")) == md5_of(src / rel), rel
    # nothing partial or temporary left visible
    assert not [p for p in emu.root.joinpath("spaces").rglob("*") if "part" in p.name or p.name.startswith(".")]


def test_second_run_sends_nothing_and_hashes_nothing(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(5):
        write_random(src / f"f{i}.bin", 2 * MiB + i, seed=i)
    first = run_cli(["--json", "sync", str(src), "private:/d", "--chunk-size", "1MiB"], hub_env)
    assert summary_of(first)["files_sent"] == 5
    emu.clear_log()
    again = summary_of(run_cli(["--json", "sync", str(src), "private:/d", "--chunk-size", "1MiB"], hub_env))
    assert again["files_skipped"] == 5 and again["files_sent"] == 0 and again["files_hashed"] == 0
    assert uploads(emu) == []
    with open(src / "f3.bin", "r+b") as f:
        f.write(b"changed!")
    emu.clear_log()
    third = summary_of(run_cli(["--json", "sync", str(src), "private:/d", "--chunk-size", "1MiB"], hub_env))
    assert third["files_sent"] == 1 and third["files_skipped"] == 4 and third["files_hashed"] == 1
    assert {e.get("fileName") for e in uploads(emu)} == {"f3.bin"}
    assert md5_of(emu.private_path("d/f3.bin")) == md5_of(src / "f3.bin")


def test_same_content_elsewhere_is_an_instant_upload(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "model.bin", 5 * MiB, seed=9)
    assert run_cli(["sync", str(src), "private:/one", "--chunk-size", "1MiB"], hub_env).returncode == 0
    emu.clear_log()
    result = run_cli(["--json", "sync", str(src), "private:/two", "--chunk-size", "1MiB"], hub_env)
    assert summary_of(result)["files_sent"] == 1
    assert uploads(emu) == []
    assert any(e["path"].endswith("/mergeFile") for e in emu.log_entries())
    assert md5_of(emu.private_path("two/model.bin")) == md5_of(src / "model.bin")


def test_sigkill_mid_transfer_then_resume(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    size = 200 * MiB + 777
    chunk = 4 * MiB
    src = write_random(tmp_path / "src" / "huge.bin", size, seed=42)
    emu.faults.latency = 0.01  # keeps loopback slow enough to catch the process half-way
    proc = subprocess.Popen(
        hubsync_cmd("--json", "sync", str(src.parent), "private:/big", "--chunk-size", "4MiB"),
        env=hub_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: sum(e.get("chunk_bytes", 0) for e in emu.log_entries()) >= size // 2, timeout=240)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not emu.private_path("big/huge.bin").exists()
    emu.faults.latency = 0.0
    result = run_cli(["--json", "sync", str(src.parent), "private:/big", "--chunk-size", "4MiB"], hub_env)
    assert result.returncode == 0, result.stderr
    assert md5_of(emu.private_path("big/huge.bin")) == md5_of(src)
    received = sum(e.get("chunk_bytes", 0) for e in emu.log_entries() if e.get("fileName") == "huge.bin")
    assert received <= size + 4 * chunk, (received, size)


def test_faults_tokens_and_resets(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(29):
        write_random(src / f"d{i % 4}" / f"f{i}.bin", (i * 97_003) % (3 * MiB) + 1, seed=i)
    write_random(src / "big.bin", 50 * MiB + 3, seed=99)
    emu.faults.seed = 11
    emu.faults.chunk_error_rate = 0.2
    emu.faults.reset_rate = 0.1
    emu.faults.token_lifetime = 3
    result = run_cli(["--json", "sync", str(src), "private:/f", "--chunk-size", "1MiB"], hub_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary_of(result)["files_sent"] == 30
    for path in src.rglob("*.bin"):
        assert md5_of(emu.private_path("f/" + path.relative_to(src).as_posix())) == md5_of(path)
    faults = [e.get("fault") for e in emu.log_entries() if e.get("fault")]
    assert len(faults) > 10, faults


def test_file_appended_while_sent_ends_in_final_state(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = write_random(tmp_path / "src" / "growing.log", 24 * MiB, seed=5)
    emu.faults.latency = 0.05
    proc = subprocess.Popen(
        hubsync_cmd("--json", "sync", str(src.parent), "private:/g", "--chunk-size", "1MiB"),
        env=hub_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_for(lambda: any(e.get("chunk_bytes") for e in emu.log_entries()), timeout=60)
    with open(src, "ab") as f:
        f.write(os.urandom(3 * MiB + 17))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert md5_of(emu.private_path("g/growing.log")) == md5_of(src)
    assert any(o.get("event") == "info" and "changed" in o.get("message", "") for o in json_lines(out))


def test_delete_and_dry_run(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("keep.txt", "sub/gone.txt", "sub/keep2.txt", "old.txt"):
        write_random(src / name, 100, seed=len(name))
    assert run_cli(["sync", str(src), "private:/x"], hub_env).returncode == 0
    outside = tmp_path / "outside"
    write_random(outside / "other.txt", 10)
    assert run_cli(["sync", str(outside), "private:/y"], hub_env).returncode == 0
    (src / "sub/gone.txt").unlink()
    (src / "old.txt").unlink()
    write_random(src / "new.txt", 50, seed=7)
    assert run_cli(["sync", str(src), "private:/x"], hub_env).returncode == 0
    assert emu.private_path("x/old.txt").exists(), "deleted without --delete"
    emu.clear_log()
    dry = run_cli(["--json", "sync", str(src), "private:/x", "--delete", "--dry-run"], hub_env)
    assert dry.returncode == 0
    plan = json_lines(dry.stdout)
    assert {o["remote"] for o in plan if o.get("event") == "would_delete"} == {"private:/x/old.txt", "private:/x/sub/gone.txt"}
    assert uploads(emu) == [] and not any("delete" in e["path"].lower() for e in emu.log_entries())
    assert emu.private_path("x/old.txt").exists()
    result = run_cli(["sync", str(src), "private:/x", "--delete"], hub_env)
    assert result.returncode == 0, result.stderr
    assert not emu.private_path("x/old.txt").exists() and not emu.private_path("x/sub/gone.txt").exists()
    assert emu.private_path("x/keep.txt").exists() and emu.private_path("x/sub/keep2.txt").exists()
    assert emu.private_path("y/other.txt").exists(), "deleted outside REMOTE"


def test_unreadable_and_special_files_are_named_and_the_rest_sent(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src / "ok.txt", 10)
    locked = write_random(src / "locked.bin", 2 * MiB)
    locked_dir = src / "locked_dir"
    write_random(locked_dir / "inner.txt", 10)
    os.mkfifo(src / "pipe")
    (src / "loop").symlink_to(src)  # a directory symlink loop: never followed twice
    (src / "link.txt").symlink_to(src / "ok.txt")  # file symlinks are followed
    locked.chmod(0)
    locked_dir.chmod(0)
    cmd = obeying_permissions(hubsync_cmd("--json", "sync", str(src), "private:/u"))
    try:
        result = subprocess.run(cmd, env=hub_env, cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o644)
        locked_dir.chmod(0o755)
    assert result.returncode == 1, result.stderr
    summary = summary_of(result)
    failed = {f["path"] for f in summary["failures"]}
    assert {"pipe", "loop", "locked.bin", "locked_dir"} <= failed, failed
    messages = " ".join(f["error"] for f in summary["failures"])
    assert "unreadable" in messages and "special file" in messages
    assert emu.private_path("u/ok.txt").exists() and emu.private_path("u/link.txt").exists()
    assert summary["files_sent"] == 2


def test_delete_is_refused_alike_by_dry_run_and_real_run_when_the_scan_had_problems(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src / "keep.txt", 10)
    write_random(src / "extra.txt", 10, seed=1)
    assert run_cli(["sync", str(src), "private:/p"], hub_env).returncode == 0
    (src / "extra.txt").unlink()
    os.mkfifo(src / "pipe")  # a special file: the scan reports it, so deletes are not trusted
    dry = run_cli(["--json", "sync", str(src), "private:/p", "--delete", "--dry-run"], hub_env)
    assert not [o for o in json_lines(dry.stdout) if o.get("event") == "would_delete"]
    assert "--delete skipped" in dry.stderr
    real = run_cli(["--json", "sync", str(src), "private:/p", "--delete"], hub_env)
    assert real.returncode == 1  # the pipe is named as a failure
    assert emu.private_path("p/extra.txt").exists()


def test_src_spelled_relative_or_absolute_is_the_same_tree(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    """`data`, `./data/` and `/abs/data` key one journal entry: the second spelling hashes nothing."""
    src = tmp_path / "src"
    for i in range(4):
        write_random(src / f"f{i}.bin", 1000 + i, seed=i)

    def sync(spelling: str) -> dict:
        result = subprocess.run(hubsync_cmd("--json", "sync", spelling, "private:/spell"), env=hub_env,
                                capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return summary_of(result)

    assert sync("src")["files_sent"] == 4
    for spelling in (str(src), "./src/"):
        again = sync(spelling)
        assert (again["files_sent"], again["files_hashed"], again["files_skipped"]) == (0, 0, 4), spelling
