"""`python -m bench.cpu_floor`: hubsync's client CPU against its floor, measured in one run.

- large: one file of `--size` bytes over HTTP (fresh emulator and state per run), client
  user+sys CPU, beside the CPU of two plain md5 passes over the same file in a child process
  (the floor: a file md5 and the chunk md5s are two digests). Ratio = hubsync / two passes.
- many: a first sync of `--files` 8-byte files over HTTP; client CPU per file.

Each figure is the median of `--runs` runs; one JSON line per measurement, then a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from .data import MiB, _random_file
from .harness import PYTHON, EmulatorProcess, hubsync_argv, hubsync_env, run_measured

TWO_PASSES = """
import hashlib, sys
buf = bytearray(1 << 20); view = memoryview(buf)
for _ in range(2):
    h = hashlib.md5()
    with open(sys.argv[1], "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
"""


# The client's command: the installed script, or (--this-checkout) `python -m agent.cli` run from
# the checkout this bench lives in, so an older checkout (git archive) measures its own code.
CLIENT: list[str] = []


def _sync(platform: Path, state: Path, source: Path, remote: str, *flags: str) -> tuple[float, float]:
    """(client CPU s, wall s) of one first sync over HTTP: fresh emulator, no journal."""
    shutil.rmtree(state, ignore_errors=True)
    with EmulatorProcess(platform / "emulator", sftp=False) as emu:
        argv = [*(CLIENT or hubsync_argv()), "sync", str(source), remote, "--transport", "http", *flags]
        m = run_measured(argv, env=hubsync_env(emu, state), emulator=emu).check()
    return m.cpu, m.wall


def large(work: Path, platform: Path, size: int, runs: int) -> dict[str, float]:
    path = work / "big" / "big.bin"
    if not path.exists() or path.stat().st_size != size:
        _random_file(path, size)
    run_measured([PYTHON, "-c", TWO_PASSES, str(path)]).check()  # warm the page cache
    floor, client, wall = [], [], []
    for i in range(runs):
        floor.append(run_measured([PYTHON, "-c", TWO_PASSES, str(path)]).check().cpu)
        cpu, secs = _sync(platform, work / f"state-large-{i}", path, "private:/large", "--chunk-size", "8MiB")
        client.append(cpu)
        wall.append(secs)
        print(json.dumps({"case": "large", "run": i, "two_md5_passes_cpu": floor[-1], "hubsync_cpu": cpu,
                          "wall": secs}), flush=True)
    result = {"bytes": size, "two_md5_passes_cpu": statistics.median(floor),
              "hubsync_cpu": statistics.median(client), "wall": statistics.median(wall)}
    result["ratio"] = result["hubsync_cpu"] / result["two_md5_passes_cpu"]
    return result


def many(work: Path, platform: Path, files: int, runs: int) -> dict[str, float]:
    tree = work / f"many-{files}"
    if not tree.exists():
        for i in range(files):
            folder = tree / f"d{i // 500:04}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i:06}").write_bytes(i.to_bytes(8, "little"))
    client, wall = [], []
    for i in range(runs):
        cpu, secs = _sync(platform, work / f"state-many-{i}", tree, "private:/many", "--transfers", "16")
        client.append(cpu)
        wall.append(secs)
        print(json.dumps({"case": "many", "run": i, "hubsync_cpu": cpu, "wall": secs}), flush=True)
    cpu = statistics.median(client)
    return {"files": files, "hubsync_cpu": cpu, "ms_per_file": 1000 * cpu / files, "wall": statistics.median(wall)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="large,many")
    parser.add_argument("--size", type=int, default=1024, help="MiB of the large file")
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--this-checkout", action="store_true",
                        help="run the client as python -m agent.cli from this bench's checkout")
    args = parser.parse_args()
    if args.this_checkout:
        CLIENT[:] = [PYTHON, "-m", "agent.cli"]
    with tempfile.TemporaryDirectory(prefix="hubsync-cpu-floor-") as tmp:
        work = args.work or Path(tmp)
        platform = Path(tempfile.mkdtemp(prefix="hubsync-cpu-floor-platform-", dir="/dev/shm"
                                         if os.path.isdir("/dev/shm") else None))
        try:
            summary: dict[str, object] = {}
            if "large" in args.cases:
                summary["large"] = large(work, platform, args.size * MiB, args.runs)
            if "many" in args.cases:
                summary["many"] = many(work, platform, args.files, args.runs)
            print(json.dumps({"summary": summary}), flush=True)
        finally:
            shutil.rmtree(platform, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
