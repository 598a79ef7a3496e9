"""Cases 9 and 10 (issue 15): a large tree of tiny files, its first sync, dry runs, no-ops and `check`.

Case 9 is part of `make bench` (200,000 files; --quick 5,000). Case 10 is `make bench-scale`
(1,000,000 files by default, --scale-files N), not part of a full `make bench`: its tree is made
once in bench/.work/ and reused by later runs, and the emulator's root goes to disk there too
(a million files in tmpfs would hold a page of RAM each).

Every command is the installed CLI with plain output (`check` with -q), as
a user or cron job runs it; each is one measured child: wall, client CPU (user + sys), peak RSS.
The aims are issue 15's: peak RSS at most 150 MiB whatever the number of files, the no-op with
--trust-journal at most 2 s per 100,000 files, the first sync at most 0.4 ms of client CPU per file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .cases import MANY_TRANSFERS, PLAIN_SUMMARY, RSS_AIM_MIB, TRUST_SECONDS_PER_100K, Bench
from .harness import EmulatorProcess, Measured, hubsync_argv, hubsync_env
from .report import CaseResult, Row, median

DRY_RUN = re.compile(r"dry run: (\d+) to send.*?, (\d+) unchanged")
CPU_PER_FILE_AIM_MS = 0.4


@dataclass
class Step:
    """One command of the case: its label, its argv tail after SRC REMOTE, what it must report."""

    label: str
    verb: str
    flags: list[str]
    expect_sent: int | None = None  # sync: files sent; dry run: files to send; None: check (exit 0)


def scale_case(b: Bench, number: int, tree: Path, count: int, emulator_root: Path) -> CaseResult:
    steps_before = [Step("dry run, nothing sent yet", "sync", ["--dry-run"], expect_sent=count)]
    first = Step("first sync", "sync", ["--transfers", str(MANY_TRANSFERS)], expect_sent=count)
    repeated = [
        Step("no-op, remote listed (the default)", "sync", ["--transfers", str(MANY_TRANSFERS)], expect_sent=0),
        Step("no-op, --trust-journal", "sync", ["--trust-journal"], expect_sent=0),
        Step("dry run, nothing changed", "sync", ["--dry-run"], expect_sent=0),
        Step("check", "check", ["-q"]),
    ]
    result = CaseResult(number, f"{count:,} files of 8 bytes: first sync, dry runs, no-ops, check")
    runs: dict[str, list[Measured]] = {}
    emu = EmulatorProcess(emulator_root, sftp=False)
    with emu:  # one platform for the case: the no-ops need the remote to hold the files
        state = b.state(f"state-scale-{count}")
        for step in [*steps_before, first]:
            runs[step.label] = [_run(b, emu, state, tree, count, step)]
        for _ in range(b.runs):
            for step in repeated:
                runs.setdefault(step.label, []).append(_run(b, emu, state, tree, count, step))
    table = ["| command | wall s | client CPU s | CPU per file | peak RSS MiB | runs |", "|---|---|---|---|---|---|"]
    for label, ms in runs.items():
        wall = median([m.wall for m in ms]) or 0.0
        cpu = median([m.cpu for m in ms]) or 0.0
        rss = median([m.maxrss_mib for m in ms]) or 0.0
        table.append(f"| {label} | {wall:.2f} | {cpu:.2f} | {cpu / count * 1000:.3f} ms | {rss:.0f} | {len(ms)} |")
        result.rows.append(Row(f"{count:,} files, {label}: peak RSS", "MiB", [m.maxrss_mib for m in ms],
                               aim=RSS_AIM_MIB, aim_kind="max"))
        b.rss.setdefault(f"{count:,} files, {label}", []).extend(m.maxrss_mib for m in ms)
    first_cpu = [m.cpu / count * 1000 for m in runs[first.label]]
    result.rows.append(Row(f"{count:,} files, first sync: client CPU per file", "ms", first_cpu,
                           aim=CPU_PER_FILE_AIM_MS, aim_kind="max"))
    trust = runs["no-op, --trust-journal"]
    result.rows.append(Row(f"{count:,} files, no-op --trust-journal: wall", "s", [m.wall for m in trust],
                           aim=TRUST_SECONDS_PER_100K * count / 100_000, aim_kind="max"))
    listed = runs["no-op, remote listed (the default)"]
    result.rows.append(Row(f"{count:,} files, no-op with the remote listed: wall", "s", [m.wall for m in listed]))
    result.extra = "Medians per command:\n\n" + "\n".join(table)
    result.notes += [
        f"One emulator for the case (root on {emulator_root.parent}); the first sync sends with --transfers"
        f" {MANY_TRANSFERS}; the no-ops, the dry run after it and `check` ran {b.runs} time(s) each, in turn.",
        "Aims: peak RSS at most 150 MiB at any number of files; the no-op with --trust-journal at most 2 s per"
        " 100,000 files; the first sync at most 0.4 ms of client CPU per file (issue 15).",
    ]
    return result


def _run(b: Bench, emu: EmulatorProcess, state: Path, tree: Path, count: int, step: Step) -> Measured:
    argv = [*hubsync_argv(), step.verb, str(tree), "private:/scale", *step.flags]
    m = b.measure(f"hubsync {step.verb} ({count:,} files, {step.label})", argv, env=hubsync_env(emu, state),
                  emulator=emu, keep_lines=20, timeout=6 * 3600)
    text = "\n".join(line for _, line in m.lines)
    if step.expect_sent is None:
        if m.returncode != 0:
            raise RuntimeError(f"check found differences (exit {m.returncode}): {text[-1500:]} {m.stderr[-1500:]}")
    else:
        m.check()
        found = (DRY_RUN if "--dry-run" in step.flags else PLAIN_SUMMARY).search(text)
        if found is None:
            raise RuntimeError(f"no summary from {step.label}: {text[-1500:]} {m.stderr[-1500:]}")
        sent = int(found.group(1))
        if sent != step.expect_sent:
            raise RuntimeError(f"{step.label}: {sent} files sent or to send, expected {step.expect_sent}")
    b.say(f"  {step.label:36} {m.wall:8.2f} s, CPU {m.cpu:7.2f} s ({m.cpu / count * 1000:.3f} ms/file),"
          f" peak RSS {m.maxrss_mib:.0f} MiB")
    return m


def case_scale_bench(b: Bench) -> CaseResult:
    """Case 9, in `make bench`."""
    count = b.data.sizes.scale_count
    return scale_case(b, 9, b.data.scale(count), count, b.platform_dir / "emulator-scale")


def case_scale_million(b: Bench) -> CaseResult:
    """Case 10, `make bench-scale`: the tree and the emulator's root in bench/.work/ (on disk)."""
    assert b.scale_data is not None
    count = b.data.sizes.million_count
    tree = b.scale_data.scale(count)
    return scale_case(b, 10, tree, count, b.scale_data.root / f"emulator-{count}")
