"""`python -m bench` (`make bench`): run the cases of issue 7 and write bench/RESULTS.md.

    python -m bench                    every case, full sizes, 3 runs each  -> bench/RESULTS.md
    python -m bench --quick            small sizes, 1 run each (a smoke run) -> bench/RESULTS-quick.md
    python -m bench --cases 2,noop     some cases only                      -> bench/RESULTS-partial.md
    python -m bench --cases scale      make bench-scale: 1,000,000 files    -> bench/RESULTS-scale.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from agent.config import parse_size

from .cases import (
    CHUNK_SIZE,
    CHUNKS_PER_FILE,
    MANY_TRANSFERS,
    Bench,
    case_hashing,
    case_large,
    case_memory,
    case_noop,
    case_small,
)
from .data import FULL, QUICK, Data, human
from .harness import REPO
from .latency import case_latency
from .rclone import ensure_rclone
from .report import BenchRun, CaseResult, summary_table, write_results
from .resume import case_resume
from .scale import case_scale_bench, case_scale_million

CASES: dict[int, tuple[str, Callable[[Bench], CaseResult] | None]] = {
    1: ("hashing", case_hashing),
    2: ("large", case_large),
    3: ("small", case_small),
    4: ("noop", case_noop),
    5: ("memory", case_memory),
    6: ("resume", case_resume),
    7: ("emulator-cpu", None),  # a view of the others' rows, written by the report
    8: ("latency", case_latency),
    9: ("200k", case_scale_bench),
    10: ("scale", case_scale_million),  # make bench-scale only: not in a full run
}
DEFAULT_CASES = [n for n in CASES if n != 10]
SCALE_DIR = Path(__file__).resolve().parent / ".work"  # make bench-scale's tree, kept between runs
HERE = Path(__file__).resolve().parent
NEEDS_RCLONE = {2, 3, 4, 8}


def parse_cases(text: str) -> list[int]:
    names = {name: number for number, (name, _) in CASES.items()}
    chosen: list[int] = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        number = int(item) if item.isdigit() else names.get(item)
        if number not in CASES:
            raise argparse.ArgumentTypeError(
                f"unknown case {item!r}; pick from " + ", ".join(f"{n} ({name})" for n, (name, _) in CASES.items()))
        chosen.append(number)
    return sorted(set(chosen))


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 bytes")
    return size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="hubsync benchmarks (issue 7).")
    p.add_argument("--quick", action="store_true", help="small sizes and one run each: a 1-2 minute smoke run")
    p.add_argument("--cases", type=parse_cases, default=DEFAULT_CASES,
                   help="comma-separated numbers or names: " + ", ".join(f"{n}={name}" for n, (name, _) in CASES.items()))
    p.add_argument("--latency-size", type=_size, default=os.environ.get("HUBSYNC_BENCH_LATENCY_SIZE"),
                   help="the latency case's large file, e.g. 64MiB (default 512 MiB, --quick 32 MiB;"
                        " env HUBSYNC_BENCH_LATENCY_SIZE)")
    p.add_argument("--scale-files", type=int, help="case 10 (scale): files in its tree (default 1,000,000)")
    p.add_argument("--scale-dir", type=Path, default=SCALE_DIR,
                   help="case 10 (scale): where its tree and emulator root live, kept between runs"
                        " (default bench/.work)")
    p.add_argument("--runs", type=int, help="repetitions per measurement (default 3, --quick 1)")
    p.add_argument("--out", type=Path, help="results file (default bench/RESULTS.md for a full run of every case)")
    p.add_argument("--workdir", type=Path, help="parent of the temp dir holding data and emulator roots")
    p.add_argument("--platform-dir", type=Path,
                   help="parent of the emulator's roots (default: /dev/shm when it has room, else the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (prints its path)")
    return p


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")) / (1 << 20)
        memory = f"{mem:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    os_name = platform.system()
    try:
        os_name = next(line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                       if line.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pass
    return {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": model,
        "memory": memory,
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "OS / kernel": f"{os_name} / {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "hubsync commit": _commit(),
    }


def _commit() -> str:
    dirty = _git("status", "--porcelain", "--", "transfer", "agent", "emulator")
    return _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in transfer/agent/emulator" if dirty else "")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def method(quick: bool, runs: int) -> list[str]:
    return [
        ("QUICK smoke run: small sizes, not comparable with a full run. " if quick else "")
        + f"Medians of {runs} run(s) per measurement; hubsync and its baseline alternate, the order rotating"
          " each repetition. Ratio = hubsync's throughput / the baseline's (for times: baseline / hubsync),"
          " so above 1 means hubsync is faster.",
        "Every measured command is a child process reaped with os.wait4: wall time from spawn to exit (start-up,"
        " login, scan, hashing, transfer, merge, confirmation and exit all count), its own CPU time and its peak"
        " RSS (its VmHWM read from /proc every 20 ms: wait4's ru_maxrss counts the memory of the bench"
        " process it was forked from).",
        "The platform is the emulator in its own process (`python -m emulator --port 0 --sftp-port 0 --root …`),"
        " restarted on an empty root before every measured run (so no instant upload, no leftover chunks),"
        " except where a case needs the remote to hold files (4, 6). Its CPU share = its utime+stime"
        " (/proc/PID/stat) during the command / the command's wall time; 100% = one core.",
        "hubsync runs as the installed CLI (`.venv/bin/hubsync --json sync …`) with the environment"
        " HUBSYNC_URL/USERNAME/PASSWORD/PASSWORD_KEY and a fresh HUBSYNC_STATE_DIR per run (no journal) unless"
        " the case resumes or re-syncs.",
        f"Chunk size {human(CHUNK_SIZE)} and {CHUNKS_PER_FILE} chunks in flight per file for both HTTP clients;"
        f" one large file uses hubsync's default --transfers 4; the many-files cases use {MANY_TRANSFERS} files in"
        " flight for every client.",
        "Data: random bytes (incompressible) except the many-files tree (64-byte files, distinct contents), in"
        " folders of at most 500 files, made once per bench run in a temp dir removed at the end.",
        "The machine's 2 cores are shared with other workers and with the emulator: absolute figures are noisy,"
        " the ratios are what the aims are about.",
    ]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    host = machine()  # before the run: others may commit while it goes on
    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = replace(sizes, runs=args.runs)
    if args.latency_size:
        latency_size = _size(args.latency_size) if isinstance(args.latency_size, str) else args.latency_size
        sizes = replace(sizes, latency_big=latency_size)
    if args.scale_files:
        sizes = replace(sizes, million_count=args.scale_files)
    full = not args.quick and args.cases == DEFAULT_CASES
    out = args.out or HERE / ("RESULTS.md" if full else "RESULTS-quick.md" if args.quick
                              else "RESULTS-scale.md" if args.cases == [10] else "RESULTS-partial.md")
    notes: list[str] = []
    rclone, rclone_note = (None, "no case needing rclone was selected")
    if NEEDS_RCLONE & set(args.cases):
        rclone, rclone_note = ensure_rclone()
        notes.append(rclone_note)
        print(f"bench: {rclone_note}", flush=True)
    results: list[CaseResult] = []
    failed = False
    tmp = tempfile.mkdtemp(prefix="hubsync-bench-", dir=args.workdir)
    platform_parent = args.platform_dir or _platform_parent(sizes.big, Path(tmp))
    platform_dir = Path(tempfile.mkdtemp(prefix="hubsync-bench-platform-", dir=platform_parent))
    notes.append(f"The emulator's roots live in {platform_parent}"
                 + (" (tmpfs: the platform's disk is not the client's, so its writes should not compete with"
                    " the client's machine)" if str(platform_parent).startswith("/dev/shm") else "") + ".")
    try:
        bench = Bench(work=Path(tmp), data=Data(Path(tmp) / "data", sizes), rclone=rclone, rclone_note=rclone_note,
                      platform_dir=platform_dir, scale_data=Data(args.scale_dir, sizes))
        t = time.perf_counter()
        print("bench: making data sets ...", flush=True)
        _make_data(bench, args.cases)
        notes.append(f"Data sets made in {time.perf_counter() - t:.0f} s.")
        for number in args.cases:
            name, run = CASES[number]
            if run is None:
                continue
            print(f"bench: case {number} ({name})", flush=True)
            t = time.perf_counter()
            try:
                result = run(bench)
            except Exception as exc:  # one broken case must not cost the others
                traceback.print_exc()
                failed = True
                result = CaseResult(number, name, not_run=f"failed: {exc}".splitlines()[0][:300])
            result.seconds = time.perf_counter() - t
            results.append(result)
        commands = sorted(bench.commands.items())
    finally:
        shutil.rmtree(platform_dir, ignore_errors=True)
        if args.keep:
            print(f"bench: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    end_commit = _commit()
    if end_commit != host["hubsync commit"]:
        notes.append(f"The code changed while the bench ran (others commit to this tree): {host['hubsync commit']}"
                     f" at the start, {end_commit} at the end; each measured command ran the tree as it was then.")
    run = BenchRun(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        mode=("quick" if args.quick else "full") + ("" if full or args.quick else f", cases {args.cases}"),
        machine=host,
        commands=[
            ("how this file was made", "make bench   # = .venv/bin/python -m bench" + (" --quick" if args.quick else "")),
            ("the platform, restarted on an empty root per measured run",
             f"{sys.executable} -m emulator --port 0 --sftp-port 0 --root $PLATFORM/emulator"),
            ("hubsync's environment", "HUBSYNC_URL=<the emulator's URL> HUBSYNC_USERNAME=alice HUBSYNC_PASSWORD=Test@123"
             " HUBSYNC_PASSWORD_KEY=0123456789abcdef HUBSYNC_STATE_DIR=$BENCH/state*"),
            ("rclone's environment", "RCLONE_CONFIG_EMU_TYPE=sftp RCLONE_CONFIG_EMU_HOST=127.0.0.1"
             " RCLONE_CONFIG_EMU_PORT=<sftp port> RCLONE_CONFIG_EMU_USER=alice RCLONE_CONFIG_EMU_PASS=<rclone obscure"
             " of queryUserInfo's password>"),
            *commands,
        ],
        method=method(args.quick, sizes.runs),
        cases=results,
        notes=notes,
        total_seconds=time.perf_counter() - started,
    )
    write_results(out, run)
    print()
    print(summary_table(results))
    print(f"\nbench: wrote {out} in {run.total_seconds / 60:.1f} min", flush=True)
    return 1 if failed else 0


def _platform_parent(big: int, fallback: Path) -> Path:
    """/dev/shm if it can hold a large file's chunks and its merged copy with room to spare."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 3 * big + (2 << 30):
            return shm
    except OSError:
        pass
    return fallback


def _make_data(bench: Bench, cases: list[int]) -> None:
    """Make the data sets the chosen cases need, before any timing starts."""
    data = bench.data
    if {1, 2, 5, 6} & set(cases):
        _ = data.big
    if 3 in cases:
        _ = data.small, data.medium
    if {4, 5} & set(cases):
        _ = data.many
    if 8 in cases:
        _ = data.latency_big, data.medium, data.latency_small
    if 9 in cases:
        _ = data.scale(data.sizes.scale_count)
    if 10 in cases and bench.scale_data is not None:
        _ = bench.scale_data.scale(data.sizes.million_count)


if __name__ == "__main__":
    sys.exit(main())
