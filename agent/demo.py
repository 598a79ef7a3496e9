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
from typing import Any

from .render import JsonLines

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


class _Narrator:
    """The demo's own lines: text for people, or (--json) JSON lines, the commands' events among them."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.flags = ["--json"] if json_mode else []  # the commands the demo runs speak the same way
        self.out = JsonLines() if json_mode else None

    def say(self, text: str, event: str = "step", **fields: Any) -> None:
        if self.out is None:
            print(text, flush=True)
        else:
            self.out.print({"event": event, "message": text.strip(), **fields})

    def forward(self, text: str) -> None:
        """A command's JSON lines, passed on; a line cut short by a kill is left out."""
        if self.out is None:
            return
        for line in text.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self.out.print(obj, flush=False)
        sys.stdout.flush()


def run_demo(json_mode: bool = False) -> int:
    """Run the demonstration; returns 0 when every file verified. `json_mode`: JSON lines only on stdout."""
    from emulator.testing import EmulatorThread  # the demo is the only app code that runs the emulator

    # The emulator shares this process: a client killed mid-chunk is expected, not worth a traceback.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)

    n = _Narrator(json_mode)
    with tempfile.TemporaryDirectory(prefix="hubsync-demo-") as tmp_text:
        tmp = Path(tmp_text)
        src = tmp / "sample"
        n.say(f"1. building a sample tree in {src} (nested folders, Chinese names, a {BIG // MiB} MiB file)")
        _sample_tree(src)
        with EmulatorThread(tmp / "platform") as emu:
            n.say(f"2. emulator listening on {emu.url} (platform data under {emu.root})", url=emu.url)
            env = dict(os.environ)
            for key in [k for k in env if k.startswith("HUBSYNC_")]:
                del env[key]
            env.update(
                HUBSYNC_URL=emu.url, HUBSYNC_USERNAME="alice", HUBSYNC_PASSWORD="Test@123",
                HUBSYNC_PASSWORD_KEY="0123456789abcdef", HUBSYNC_STATE_DIR=str(tmp / "state"),
            )
            subprocess.run(_hubsync(*n.flags, "login"), env=env, check=True)
            emu.faults.latency = 0.02  # slow the loopback a little so the interruption lands mid-file
            n.say("3. syncing to private:/demo ... (will be killed with SIGKILL half-way through the big file)")
            # With --json its events go through a file: a line cut short by the kill is not passed on.
            with open(tmp / "interrupted.jsonl", "w+", encoding="utf-8") as log:
                proc = subprocess.Popen(_hubsync(*n.flags, "sync", str(src), "private:/demo"), env=env,
                                        stdout=log if json_mode else None)
                deadline = time.monotonic() + 300
                received = 0
                while proc.poll() is None and time.monotonic() < deadline:
                    received = sum(e.get("chunk_bytes", 0) for e in emu.log_entries())
                    if received >= BIG * 0.45:
                        break
                    time.sleep(0.05)
                killed = proc.poll() is None
                if killed:
                    proc.send_signal(signal.SIGKILL)
                proc.wait()
                log.seek(0)
                n.forward(log.read())
            if killed:
                n.say(f"\n   killed the transfer (SIGKILL) after the platform received {received / MiB:.0f} MiB",
                      event="killed", bytes_received=received)
            emu.faults.latency = 0.0
            before = sum(e.get("chunk_bytes", 0) for e in emu.log_entries())
            n.say("4. resuming: the same command again")
            done = subprocess.run(_hubsync("--json", "sync", str(src), "private:/demo"), env=env,
                                  capture_output=True, text=True)
            n.forward(done.stdout)
            summary: dict = next((json.loads(x) for x in reversed(done.stdout.splitlines()) if '"summary"' in x), {})
            after = sum(e.get("chunk_bytes", 0) for e in emu.log_entries())
            n.say(f"   resumed run: {summary.get('files_sent')} sent, {summary.get('files_skipped')} already done,"
                  f" {(after - before) / MiB:.1f} MiB of chunks sent to finish (the big file is {BIG / MiB:.0f} MiB)",
                  event="resumed", bytes_sent=after - before)
            subprocess.run(_hubsync(*n.flags, "ls", "private:/demo"), env=env, check=False)
            n.say("5. verifying every file by md5 on the emulator's disk")
            bad = 0
            files = sorted(p for p in src.rglob("*") if p.is_file())
            for path in files:
                rel = path.relative_to(src).as_posix()
                remote = emu.private_path(f"demo/{rel}")
                ok = remote.exists() and _md5(remote) == _md5(path)
                bad += not ok
                size = path.stat().st_size
                if json_mode:
                    n.say(f"{'ok' if ok else 'BAD'} {rel}", event="verified", path=rel, size=size, ok=ok)
                elif not ok or size > MiB:
                    n.say(f"   {'ok ' if ok else 'BAD'} {rel} ({size} bytes)")
            n.say(f"   {len(files) - bad} of {len(files)} files verified")
            subprocess.run(_hubsync(*n.flags, "status"), env=env, check=False)
        good = bad == 0 and done.returncode == 0
        verdict = "demo complete: every byte verified" if good else "demo FAILED"
        n.say(verdict, event="summary", ok=good, files_total=len(files), files_verified=len(files) - bad,
              bytes_received_before_kill=received, bytes_sent_to_finish=after - before, big_file_bytes=BIG)
        return 0 if good else 1
