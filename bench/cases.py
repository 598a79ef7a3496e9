"""The cases of issue 7. Each measures hubsync beside its baseline in the same bench run.

Every measured command is a child process (harness.run_measured); the platform is the emulator
in its own process, restarted on an empty root before each measured run unless a case needs the
remote to hold files. hubsync and its baseline alternate, the order rotating per repetition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Data, MiB, human
from .harness import PYTHON, EmulatorProcess, Measured, hubsync_argv, hubsync_env, run_measured
from .rclone import rclone_argv, rclone_env
from .report import CaseResult, Row, median

CHUNK_SIZE = 8 * MiB  # hubsync's default --chunk-size, given explicitly to both clients
CHUNKS_PER_FILE = 4  # hubsync's default [transfer] chunks_per_file
LARGE_TRANSFERS = 4  # hubsync's default --transfers
MANY_TRANSFERS = 16  # files in flight in the many-files cases: hubsync --transfers, minimal, rclone
RSS_AIM_MIB = 150.0
NOOP_AIM = 1.5  # the no-op with the remote listed vs rclone sync (which lists it too): issue 11
TRUST_SECONDS_PER_100K = 2.0  # the no-op with --trust-journal: issue 15
PLAIN_SUMMARY = re.compile(r"(\d+) sent, (\d+) unchanged, (\d+) failed of (\d+) files")


@dataclass
class Bench:
    """What the cases share: the work dir, the data sets, rclone, and what runs have shown."""

    work: Path
    data: Data
    rclone: str | None
    platform_dir: Path  # where emulator roots live (tmpfs when it has room: the platform's disk is not ours)
    scale_data: Data | None = None  # make bench-scale's data, kept between runs (bench/.work/)
    rclone_note: str = ""
    commands: dict[str, str] = field(default_factory=dict)
    rss: dict[str, list[float]] = field(default_factory=dict)  # hubsync peak RSS (MiB) per measurement
    baseline_rss: dict[str, list[float]] = field(default_factory=dict)
    say: Callable[[str], None] = print

    @property
    def runs(self) -> int:
        return self.data.sizes.runs

    def emulator(self) -> EmulatorProcess:
        """A platform on an empty root (the previous one is removed)."""
        return EmulatorProcess(self.platform_dir / "emulator")

    def state(self, name: str = "state") -> Path:
        """An empty hubsync state dir: no journal, no pinned host key, no cached digests."""
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def measure(self, label: str, argv: list[str], *, env: dict[str, str] | None = None,
                emulator: EmulatorProcess | None = None, **kwargs: Any) -> Measured:
        """Run and remember the first exact command under `label` (for RESULTS.md)."""
        text = " ".join(argv).replace(str(self.work), "$BENCH").replace(str(self.platform_dir), "$PLATFORM")
        self.commands.setdefault(label, text)
        return run_measured(argv, env=env, emulator=emulator, **kwargs)

    # -- the three clients -------------------------------------------------------------------------
    def hubsync(self, emu: EmulatorProcess, state: Path, source: Path, remote: str, *flags: str,
                label: str = "hubsync sync", **kwargs: Any) -> Measured:
        argv = [*hubsync_argv(), "--json", "sync", str(source), remote, "--chunk-size", "8MiB", *flags]
        return self.measure(label, argv, env=hubsync_env(emu, state), emulator=emu, **kwargs)

    def minimal(self, emu: EmulatorProcess, source: Path, folder: str, transfers: int) -> Measured:
        argv = [PYTHON, "-m", "bench.minimal_client", "--url", emu.url, "--transfers", str(transfers),
                "--chunk-size", str(CHUNK_SIZE), "--chunks-per-file", str(CHUNKS_PER_FILE), str(source), folder]
        return self.measure("minimal client", argv, emulator=emu).check()

    def rclone_run(self, emu: EmulatorProcess, verb: str, source: Path, dest: str, *flags: str) -> Measured:
        assert self.rclone is not None
        argv = rclone_argv(self.rclone, self.work / "rclone.conf", verb, source, dest, *flags)
        return self.measure(f"rclone {verb}", argv, env=rclone_env(self.rclone, emu), emulator=emu).check()


def summary_of(m: Measured) -> dict[str, Any]:
    for _, line in reversed(m.lines):
        if line.startswith("{"):
            obj = json.loads(line)
            if obj.get("event") == "summary":
                return obj
    raise RuntimeError(f"no summary line from {' '.join(m.argv[:3])}: {m.stderr[-2000:]}")


def sent_all(m: Measured, files: int) -> dict[str, Any]:
    """hubsync's summary, checked: every file sent, none failed."""
    s = summary_of(m.check())
    if s["files_failed"] or s["files_sent"] != files:
        raise RuntimeError(f"hubsync sent {s['files_sent']} of {files} files: {s.get('failures', [])[:3]}")
    return s


def repeat(runs: int, steps: list[Callable[[], None]]) -> None:
    """Run every step `runs` times, rotating their order each repetition."""
    for i in range(runs):
        k = i % len(steps)
        for step in steps[k:] + steps[:k]:
            step()


def tree_count(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


# -- 1. hashing ----------------------------------------------------------------------------------
def case_hashing(b: Bench) -> CaseResult:
    path = b.data.big
    size = path.stat().st_size
    subprocess.run(["md5sum", str(path)], check=True, capture_output=True)  # warm the page cache
    row = Row(f"md5 of a {human(size)} file, warm cache", "MiB/s", [], [], "md5sum", aim=0.95)
    digests: set[str] = set()

    def md5sum() -> None:
        m = b.measure("md5sum", ["md5sum", str(path)]).check()
        digests.add(m.lines[0][1].split()[0])
        row.add_baseline(size / MiB / m.wall, m.cpu)

    def hash_file() -> None:
        m = b.measure("hubsync hash_file", [PYTHON, "-m", "bench.hash_probe", str(path)]).check()
        probe = json.loads(m.lines[-1][1])
        digests.add(probe["md5"])
        row.add_hubsync(size / MiB / probe["seconds"], m.cpu)

    repeat(b.runs, [md5sum, hash_file])
    if len(digests) != 1:
        raise RuntimeError(f"hash_file and md5sum disagree: {digests}")
    return CaseResult(1, "Hashing: transfer.hashing.hash_file vs md5sum", [row], notes=[
        "hash_file is timed inside its process (bench/hash_probe.py: stat_file + hash_file, which is the"
        " whole-file md5 plus the xxh3 fingerprint); md5sum by its wall time.",
    ])


# -- 2. one large file ---------------------------------------------------------------------------
def hubsync_split(m: Measured) -> dict[str, float]:
    """Seconds per phase from the timestamps of hubsync's --json events."""
    events = [(t, json.loads(line).get("event")) for t, line in m.lines if line.startswith("{")]
    first = {e: t for t, e in reversed(events)}
    progress = [t for t, e in events if e == "progress"]
    queued, started, done = first["queued"], first["started"], first["done"]
    last = progress[-1] if progress else started
    return {"hash": started - queued, "upload": last - started, "merge": done - last,
            "other": m.wall - (done - queued), "wall": m.wall}


def minimal_split(m: Measured) -> dict[str, float]:
    s = summary_of(m)
    phases = s["hash_seconds"] + s["upload_seconds"] + s["merge_seconds"]
    return {"hash": s["hash_seconds"], "upload": s["upload_seconds"], "merge": s["merge_seconds"],
            "other": m.wall - phases, "wall": m.wall}


def split_table(splits: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| client (medians, s) | hashing before the first request | chunk upload | merge | start-up, login,"
             " scan, exit | wall |", "|---|---|---|---|---|---|"]
    for name, runs in splits.items():
        if runs:
            cell = [median([r[k] for r in runs]) or 0.0 for k in ("hash", "upload", "merge", "other", "wall")]
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cell) + " |")
    return "\n".join(lines)


def case_large(b: Bench) -> CaseResult:
    path = b.data.big
    size = path.stat().st_size
    name = human(size)
    mib = size / MiB
    result = CaseResult(2, f"One large file ({name})")
    http = Row(f"{name} over HTTP: hubsync vs minimal client", "MiB/s", [], [], "minimal client", aim=0.9)
    splits: dict[str, list[dict[str, float]]] = {"hubsync": [], "minimal client": []}
    b.rss.setdefault("2 GiB over HTTP", [])
    b.baseline_rss.setdefault("2 GiB over HTTP", [])

    def check_remote(emu: EmulatorProcess) -> None:
        got = emu.private_path("large/big.bin").stat().st_size
        if got != size:
            raise RuntimeError(f"the platform holds {got} bytes, expected {size}")

    def minimal() -> None:
        with b.emulator() as emu:
            m = b.minimal(emu, path, "/large", LARGE_TRANSFERS)
            check_remote(emu)
        http.add_baseline(mib / m.wall, m.cpu, m.emulator_share)
        splits["minimal client"].append(minimal_split(m))
        b.baseline_rss["2 GiB over HTTP"].append(m.maxrss_mib)
        b.say(f"  minimal client {m.wall:.1f} s ({mib / m.wall:.0f} MiB/s), CPU {m.cpu:.1f} s")

    def hubsync() -> None:
        with b.emulator() as emu:
            m = b.hubsync(emu, b.state(), path, "private:/large", "--transport", "http",
                          "--transfers", str(LARGE_TRANSFERS))
            sent_all(m, 1)
            check_remote(emu)
        http.add_hubsync(mib / m.wall, m.cpu, m.emulator_share)
        splits["hubsync"].append(hubsync_split(m))
        b.rss["2 GiB over HTTP"].append(m.maxrss_mib)
        b.say(f"  hubsync http   {m.wall:.1f} s ({mib / m.wall:.0f} MiB/s), CPU {m.cpu:.1f} s,"
              f" peak RSS {m.maxrss_mib:.0f} MiB")

    repeat(b.runs, [minimal, hubsync])
    result.rows.append(http)
    result.extra = "Where the time goes over HTTP (hubsync: from the timestamps of its `--json` events;" \
                   " minimal client: its own timers):\n\n" + split_table(splits)
    result.notes.append("hubsync's merge column runs from its last chunk's progress event to its `done` event, so"
                        " it also holds the confirming listing (getFolderInfo).")
    if b.rclone is None:
        result.notes.append(f"SFTP row not run: {b.rclone_note}")
        return result
    sftp = Row(f"{name} over SFTP: hubsync vs rclone copy", "MiB/s", [], [], "rclone copy", aim=1.1)
    b.rss.setdefault("2 GiB over SFTP", [])
    b.baseline_rss.setdefault("2 GiB over SFTP", [])

    def rclone() -> None:
        with b.emulator() as emu:
            m = b.rclone_run(emu, "copy", path, "large")
            check_remote(emu)
        sftp.add_baseline(mib / m.wall, m.cpu, m.emulator_share)
        b.baseline_rss["2 GiB over SFTP"].append(m.maxrss_mib)
        b.say(f"  rclone copy    {m.wall:.1f} s ({mib / m.wall:.0f} MiB/s), CPU {m.cpu:.1f} s")

    def hubsync_sftp() -> None:
        with b.emulator() as emu:
            m = b.hubsync(emu, b.state(), path, "private:/large", "--transport", "sftp", label="hubsync sync (SFTP)")
            sent_all(m, 1)
            check_remote(emu)
        sftp.add_hubsync(mib / m.wall, m.cpu, m.emulator_share)
        b.rss["2 GiB over SFTP"].append(m.maxrss_mib)
        b.say(f"  hubsync sftp   {m.wall:.1f} s ({mib / m.wall:.0f} MiB/s), CPU {m.cpu:.1f} s,"
              f" peak RSS {m.maxrss_mib:.0f} MiB")

    repeat(b.runs, [rclone, hubsync_sftp])
    result.rows.append(sftp)
    return result


# -- 3. many small files -------------------------------------------------------------------------
def case_small(b: Bench) -> CaseResult:
    s = b.data.sizes
    result = CaseResult(3, "Many small files")
    for tree, count, size in ((b.data.small, s.small_count, s.small_size),
                              (b.data.medium, s.medium_count, s.medium_size)):
        label = f"{count:,} × {human(size)}"
        vs_min = Row(f"{label} over HTTP: hubsync vs minimal client", "files/s", [], [], "minimal client", aim=0.9)
        vs_rcl = Row(f"{label}: hubsync (HTTP) vs rclone copy (SFTP)", "files/s", [], [], "rclone copy", aim=1.0)
        rss_key = f"{label} over HTTP"
        b.rss.setdefault(rss_key, [])

        def check_remote(emu: EmulatorProcess, count: int = count) -> None:
            got = tree_count(emu.private_path("many"))
            if got != count:
                raise RuntimeError(f"the platform holds {got} files, expected {count}")

        def hubsync(tree: Path = tree, count: int = count, vs_min: Row = vs_min, vs_rcl: Row = vs_rcl,
                    rss_key: str = rss_key) -> None:
            with b.emulator() as emu:
                m = b.hubsync(emu, b.state(), tree, "private:/many", "--transport", "http",
                              "--transfers", str(MANY_TRANSFERS))
                sent_all(m, count)
                check_remote(emu, count)
            for row in (vs_min, vs_rcl):
                row.add_hubsync(count / m.wall, m.cpu, m.emulator_share)
            b.rss[rss_key].append(m.maxrss_mib)
            b.say(f"  hubsync        {m.wall:.1f} s ({count / m.wall:.0f} files/s), CPU {m.cpu:.1f} s")

        def minimal(tree: Path = tree, count: int = count, row: Row = vs_min) -> None:
            with b.emulator() as emu:
                m = b.minimal(emu, tree, "/many", MANY_TRANSFERS)
                check_remote(emu, count)
            row.add_baseline(count / m.wall, m.cpu, m.emulator_share)
            b.say(f"  minimal client {m.wall:.1f} s ({count / m.wall:.0f} files/s), CPU {m.cpu:.1f} s")

        def rclone(tree: Path = tree, count: int = count, row: Row = vs_rcl) -> None:
            with b.emulator() as emu:
                m = b.rclone_run(emu, "copy", tree, "many", "--transfers", str(MANY_TRANSFERS))
                check_remote(emu, count)
            row.add_baseline(count / m.wall, m.cpu, m.emulator_share)
            b.say(f"  rclone copy    {m.wall:.1f} s ({count / m.wall:.0f} files/s), CPU {m.cpu:.1f} s")

        b.say(f" {label}")
        repeat(b.runs, [hubsync, minimal] + ([rclone] if b.rclone else []))
        result.rows.append(vs_min)
        if b.rclone:
            result.rows.append(vs_rcl)
    result.notes.append(f"{MANY_TRANSFERS} files in flight for all three: hubsync --transfers {MANY_TRANSFERS},"
                        f" the minimal client's --transfers {MANY_TRANSFERS}, rclone --transfers {MANY_TRANSFERS}.")
    result.notes.append("Files under 1 MiB go by the simple upload (uploadFolder) in both HTTP clients; 1 MiB"
                        " files by the chunk protocol (hubsync's small_file_threshold rule).")
    if not b.rclone:
        result.notes.append(f"rclone rows not run: {b.rclone_note}")
    return result


# -- 4. nothing changed --------------------------------------------------------------------------
def first_sync_of_many(b: Bench, emu: EmulatorProcess, state: Path) -> Measured:
    """hubsync's first sync of the many-files tree (builds its journal; not a timed comparison)."""
    count = b.data.sizes.many_count
    m = b.hubsync(emu, state, b.data.many, "private:/noop", "--transport", "http",
                  "--transfers", str(MANY_TRANSFERS), label="hubsync sync (first sync of the many-files tree)")
    sent_all(m, count)
    b.rss.setdefault(f"{count:,} files, first sync", []).append(m.maxrss_mib)
    b.say(f"  first hubsync sync of {count:,} files: {m.wall:.1f} s ({count / m.wall:.0f} files/s),"
          f" peak RSS {m.maxrss_mib:.0f} MiB")
    return m


def noop_hubsync(b: Bench, emu: EmulatorProcess, state: Path, *, json_output: bool = True,
                 trust_journal: bool = False) -> Measured:
    """hubsync's re-sync of the unchanged many-files tree: with --json (events per file) or plain output;
    the remote listed (the default: the platform is the truth) or not (--trust-journal)."""
    count = b.data.sizes.many_count
    argv = [*hubsync_argv(), *(["--json"] if json_output else []), "sync", str(b.data.many), "private:/noop",
            "--transport", "http", "--transfers", str(MANY_TRANSFERS), *(["--trust-journal"] if trust_journal else [])]
    label = ("hubsync sync (nothing changed" + ("" if json_output else ", plain output")
             + (", --trust-journal)" if trust_journal else ")"))
    m = b.measure(label, argv, env=hubsync_env(emu, state), emulator=emu).check()
    if json_output:
        s = summary_of(m)
        skipped, sent = s["files_skipped"], s["files_sent"]
    else:
        found = PLAIN_SUMMARY.search("\n".join(line for _, line in m.lines))
        if found is None:
            raise RuntimeError(f"no summary in hubsync's plain output: {m.lines[-3:]}")
        sent, skipped = int(found.group(1)), int(found.group(2))
    if skipped != count or sent:
        raise RuntimeError(f"hubsync's re-sync was not a no-op: {sent} sent, {skipped} unchanged")
    b.rss.setdefault(f"{count:,} files, nothing changed" + (", --trust-journal" if trust_journal else ""),
                     []).append(m.maxrss_mib)
    return m


def case_noop(b: Bench) -> CaseResult:
    count = b.data.sizes.many_count
    result = CaseResult(4, f"Nothing changed: re-sync of {count:,} unchanged files")
    json_row = Row(f"re-sync of {count:,} unchanged files, remote listed, hubsync --json", "s", [], [],
                   "rclone sync (SFTP)", higher_is_better=False, aim=NOOP_AIM)
    plain_row = Row(f"re-sync of {count:,} unchanged files, remote listed, hubsync plain output", "s", [], [],
                    "rclone sync (SFTP)", higher_is_better=False, aim=NOOP_AIM)
    trust_row = Row(f"re-sync of {count:,} unchanged files, --trust-journal, plain output (wall)", "s", [], [],
                    "rclone sync (SFTP)", higher_is_better=False, aim=TRUST_SECONDS_PER_100K * count / 100_000,
                    aim_kind="max")
    with b.emulator() as emu:  # one platform for the case: the remote must hold the files
        state = b.state("state-noop")
        first = first_sync_of_many(b, emu, state)
        result.notes.append(f"hubsync's first sync of the tree (builds its journal): {first.wall:.1f} s,"
                            f" {count / first.wall:.0f} files/s, peak RSS {first.maxrss_mib:.0f} MiB, client CPU"
                            f" {first.cpu:.1f} s, emulator CPU {first.emulator_cpu:.1f} s.")
        noop_hubsync(b, emu, state)  # warm-up (page cache), not counted

        def hubsync(json_output: bool, row: Row, trust_journal: bool = False) -> Callable[[], None]:
            def step() -> None:
                m = noop_hubsync(b, emu, state, json_output=json_output, trust_journal=trust_journal)
                row.add_hubsync(m.wall, m.cpu, m.emulator_share)
                b.say(f"  hubsync no-op ({'--json' if json_output else 'plain'}"
                      f"{', --trust-journal' if trust_journal else ''}) {m.wall:.2f} s,"
                      f" peak RSS {m.maxrss_mib:.0f} MiB")
            return step

        steps = [hubsync(True, json_row), hubsync(False, plain_row), hubsync(False, trust_row, trust_journal=True)]
        if b.rclone:
            # rclone's remote copy is seeded on the platform's disk with the local mtimes (as if an earlier
            # rclone run had sent it), then a first rclone sync must find nothing to do.
            shutil.copytree(b.data.many, emu.private_path("noop-rclone"))
            warm = b.rclone_run(emu, "sync", b.data.many, "noop-rclone", "-v")
            if "Copied" in warm.stderr or "Deleted" in warm.stderr:
                raise RuntimeError(f"rclone's seeded remote was not in sync: {warm.stderr[-1500:]}")

            def rclone() -> None:
                m = b.rclone_run(emu, "sync", b.data.many, "noop-rclone", "-v")
                if "Copied" in m.stderr:
                    raise RuntimeError("rclone's re-sync copied files")
                for row in (json_row, plain_row, trust_row):
                    row.add_baseline(m.wall, m.cpu, m.emulator_share)
                b.say(f"  rclone no-op   {m.wall:.2f} s")

            steps.append(rclone)
            result.notes.append("rclone's remote (`emu:noop-rclone`) was seeded by copying the tree with its mtimes"
                                " into the emulator's space on disk; an unmeasured `rclone sync` confirmed it in"
                                " sync. rclone runs with its default --checkers 8.")
        else:
            result.notes.append(f"rclone baseline not run: {b.rclone_note}")
        repeat(b.runs, steps)
    result.rows += [json_row, plain_row, trust_row]
    result.notes.append("Ratio = rclone's time / hubsync's time. With the remote listed (hubsync's default since"
                        " #11: every folder it targets is listed and compared, as rclone sync lists the remote)"
                        f" the aim is hubsync at least {NOOP_AIM}× as fast; --trust-journal (stat only, no listing)"
                        f" aims at {TRUST_SECONDS_PER_100K:g} s per 100,000 files. The no-op was warmed up once,"
                        " unmeasured. With --json hubsync prints one `skipped` event per file; plain output prints"
                        " only the summary, like rclone -v.")
    return result


# -- 5. memory ---------------------------------------------------------------------------------
def case_memory(b: Bench) -> CaseResult:
    count = b.data.sizes.many_count
    if not b.rss.get("2 GiB over HTTP"):
        with b.emulator() as emu:
            m = b.hubsync(emu, b.state(), b.data.big, "private:/large", "--transport", "http")
            sent_all(m, 1)
            b.rss["2 GiB over HTTP"] = [m.maxrss_mib]
    if not b.rss.get(f"{count:,} files, first sync"):
        with b.emulator() as emu:
            state = b.state("state-noop")
            first_sync_of_many(b, emu, state)
            noop_hubsync(b, emu, state)
    result = CaseResult(5, "Memory: hubsync's peak RSS (VmHWM)")
    big = human(b.data.sizes.big)
    for key, values in b.rss.items():
        if not values:
            continue
        what = key.replace("2 GiB", big)
        base = b.baseline_rss.get(key) or []
        name = {"2 GiB over HTTP": "minimal client", "2 GiB over SFTP": "rclone"}.get(key, "")
        note = f"{name}: {median(base):.0f} MiB" if base and name else ""
        result.rows.append(Row(f"peak RSS, {what}", "MiB", values, aim=RSS_AIM_MIB, aim_kind="max", note=note))
    result.notes += [f"{r.what}: baseline {r.note}" for r in result.rows if r.note]
    result.notes.append("Medians in the table; every run is listed in the last column.")
    return result
