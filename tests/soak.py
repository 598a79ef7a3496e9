"""`make soak`: the daemon for minutes against a faulty emulator, with files appearing every second.

Not part of `make test`. Faults: 20 % of chunk calls fail, tokens live 3 s. At the end every
file must be at the remote with the right md5, none committed twice, and the daemon's RSS
(sampled every 10 s) must stay flat after warm-up: less than 5 MiB over the second half. Prints a report; exits 1 if any of that fails.

    python -m tests.soak [--seconds 300] [--rate 1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from emulator.testing import EmulatorThread

from .conftest import KEY, REPO, md5_of
from .daemon_support import DaemonProcess, daemon_config, sends

MiB = 1 << 20


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_file(path: Path, rng: random.Random) -> None:
    """Mostly small files, some over the 1 MiB chunk size; some written slowly, some renamed into place."""
    size = rng.choice([rng.randint(0, 64 << 10)] * 6 + [rng.randint(MiB, 4 * MiB)] * 2)
    data = rng.randbytes(size)
    style = rng.random()
    if style < 0.2:  # renamed into place from a temp name
        tmp = path.with_name(path.name + ".hubsync-part")
        tmp.write_bytes(data)
        os.rename(tmp, path)
    elif style < 0.3 and size > 1:  # two halves, half a second apart (the soak's own pacing)
        with open(path, "wb") as f:
            f.write(data[: size // 2])
            f.flush()
            time.sleep(0.5)
            f.write(data[size // 2:])
    else:
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long files keep appearing")
    parser.add_argument("--rate", type=float, default=1.0, help="new files per second")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hubsync-soak-"))
    rng = random.Random(20260601)
    src = work / "src"
    src.mkdir()
    try:
        with EmulatorThread(work / "platform") as emu:
            emu.faults.seed = 7
            emu.faults.chunk_error_rate = 0.2
            emu.faults.token_lifetime = 3
            env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSYNC_")}
            env.update(HUBSYNC_URL=emu.url, HUBSYNC_USERNAME="alice", HUBSYNC_PASSWORD="Test@123",
                       HUBSYNC_PASSWORD_KEY=KEY, PYTHONPATH=str(REPO))
            cfg = work / "hubsync.toml"
            cfg.write_text(daemon_config(work / "state", [
                {"source": str(src), "remote": "private:/soak", "settle_seconds": 1.0}],
                {"retry_seconds": 1.0, "retry_max_seconds": 10.0}, {"chunk_size": "1MiB"}))
            daemon = DaemonProcess(cfg, env, work / "daemon.log").start()
            samples: list[tuple[float, int]] = []
            started = time.monotonic()
            next_sample = started
            count = 0
            print(f"soak: {args.seconds:.0f}s, {args.rate:g} new file(s) a second, 20% chunk-call failures, 3s tokens")
            print(f"{'t (s)':>7} {'files':>6} {'at remote':>9} {'RSS (MiB)':>10}")
            while (now := time.monotonic()) - started < args.seconds:
                folder = src / f"d{count // 50}"
                folder.mkdir(exist_ok=True)
                write_file(folder / f"f{count:05d}.bin", rng)
                count += 1
                if now >= next_sample:
                    samples.append((now - started, rss_kib(daemon.pid)))
                    arrived = sum(1 for _ in emu.private_path("soak").rglob("*.bin"))
                    print(f"{now - started:7.0f} {count:6d} {arrived:9d} {samples[-1][1] / 1024:10.1f}", flush=True)
                    next_sample += 10
                time.sleep(max(0.0, started + count / args.rate - time.monotonic()))  # the pace
            deadline = time.monotonic() + 180
            remote = emu.private_path("soak")
            while sum(1 for _ in remote.rglob("*.bin")) < count and time.monotonic() < deadline:
                time.sleep(1)
            samples.append((time.monotonic() - started, rss_kib(daemon.pid)))
            code = daemon.stop()
            files = sorted(src.rglob("*.bin"))
            wrong = [p for p in files if not (remote / p.relative_to(src)).exists()
                     or md5_of(remote / p.relative_to(src)) != md5_of(p)]
            commits = Counter(e.get("fileName") for e in sends(emu))
            twice = {name: n for name, n in commits.items() if n > 1}
            faults = sum(1 for e in emu.log_entries() if e.get("fault"))
        # Warm-up (SQLite's page cache, allocator arenas) ends within minutes; after it RSS must be flat.
        end = samples[-1][0]
        second_half = [kib for t, kib in samples if t >= end / 2] or [samples[-1][1]]
        eighth = max(1, len(second_half) // 4)
        mid, last = sum(second_half[:eighth]) / eighth, sum(second_half[-eighth:]) / eighth
        growth = (last - mid) / 1024
        print(f"\nfiles written {count}, correct at the remote {len(files) - len(wrong)}, wrong or missing {len(wrong)}")
        print(f"committed twice: {len(twice)} {dict(list(twice.items())[:5]) if twice else ''}")
        print(f"faults injected by the emulator: {faults}; daemon exit code {code}")
        print(f"RSS: {samples[0][1] / 1024:.1f} MiB at start, {mid / 1024:.1f} MiB at half-time,"
              f" {last / 1024:.1f} MiB at the end: {growth:+.1f} MiB over the second half;"
              f" peak {max(k for _, k in samples) / 1024:.1f} MiB")
        ok = not wrong and not twice and code == 0 and growth < 5
        print("soak: OK" if ok else "soak: FAILED")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
