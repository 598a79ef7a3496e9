"""`hubsync demo`: the emulator, a sample tree, a sync killed half-way, the resume, the proof."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
BIG = 120 * MiB + 4321


def _write(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(rng.randbytes(n))
            left -= n


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def _sample_tree(root: Path) -> None:
    _write(root / "models" / "checkpoint-final.bin", BIG, 1)
    _write(root / "models" / "config.json", 2_345, 2)
    _write(root / "数据集" / "训练" / "样本 001.jpg", 3 * MiB + 7, 3)
    _write(root / "数据集" / "验证" / "标签.csv", 48_000, 4)
    for i in range(20):
        _write(root / "logs" / f"run-{i:02}" / "metrics.txt", 1_000 + i * 517, 10 + i)
    (root / "README.txt").write_text("sample tree made by `hubsync demo`\n", encoding="utf-8")
    (root / "empty.flag").write_bytes(b"")


def _hubsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def run_demo() -> int:
    """Run the demonstration; returns 0 when every file verified."""
    from emulator.testing import EmulatorThread  # the demo is the only app code that runs the emulator

    # The emulator shares this process: a client killed mid-chunk is expected, not worth a traceback.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)

    say = print
    with tempfile.TemporaryDirectory(prefix="hubsync-demo-") as tmp_text:
        tmp = Path(tmp_text)
        src = tmp / "sample"
        say(f"1. building a sample tree in {src} (nested folders, Chinese names, a {BIG // MiB} MiB file)")
        _sample_tree(src)
        with EmulatorThread(tmp / "platform") as emu:
            say(f"2. emulator listening on {emu.url} (platform data under {emu.root})")
            env = dict(os.environ)
            for key in [k for k in env if k.startswith("HUBSYNC_")]:
                del env[key]
            env.update(
                HUBSYNC_URL=emu.url, HUBSYNC_USERNAME="alice", HUBSYNC_PASSWORD="Test@123",
                HUBSYNC_PASSWORD_KEY="0123456789abcdef", HUBSYNC_STATE_DIR=str(tmp / "state"),
            )
            subprocess.run(_hubsync("login"), env=env, check=True)
            emu.faults.latency = 0.02  # slow the loopback a little so the interruption lands mid-file
            say("3. syncing to private:/demo ... (will be killed with SIGKILL half-way through the big file)")
            proc = subprocess.Popen(_hubsync("sync", str(src), "private:/demo"), env=env)
            deadline = time.monotonic() + 300
            received = 0
            while proc.poll() is None and time.monotonic() < deadline:
                received = sum(e.get("chunk_bytes", 0) for e in emu.log_entries())
                if received >= BIG * 0.45:
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                say(f"\n   killed the transfer (SIGKILL) after the platform received {received / MiB:.0f} MiB")
            emu.faults.latency = 0.0
            before = sum(e.get("chunk_bytes", 0) for e in emu.log_entries())
            say("4. resuming: the same command again")
            done = subprocess.run(_hubsync("--json", "sync", str(src), "private:/demo"), env=env,
                                  capture_output=True, text=True)
            summary: dict = next((json.loads(x) for x in reversed(done.stdout.splitlines()) if '"summary"' in x), {})
            after = sum(e.get("chunk_bytes", 0) for e in emu.log_entries())
            say(f"   resumed run: {summary.get('files_sent')} sent, {summary.get('files_skipped')} already done,"
                f" {(after - before) / MiB:.1f} MiB of chunks sent to finish (the big file is {BIG / MiB:.0f} MiB)")
            subprocess.run(_hubsync("ls", "private:/demo"), env=env, check=False)
            say("5. verifying every file by md5 on the emulator's disk")
            bad = 0
            files = sorted(p for p in src.rglob("*") if p.is_file())
            for path in files:
                rel = path.relative_to(src).as_posix()
                remote = emu.private_path(f"demo/{rel}")
                ok = remote.exists() and _md5(remote) == _md5(path)
                bad += not ok
                if not ok or path.stat().st_size > MiB:
                    say(f"   {'ok ' if ok else 'BAD'} {rel} ({path.stat().st_size} bytes)")
            say(f"   {len(files) - bad} of {len(files)} files verified")
            subprocess.run(_hubsync("status"), env=env, check=False)
        verdict = "demo complete: every byte verified" if bad == 0 and done.returncode == 0 else "demo FAILED"
        say(verdict)
        return 0 if bad == 0 and done.returncode == 0 else 1
