"""Smoke test of the bench harness (bench/): the baseline client, the measured runner, the report.

No timing is asserted: timing targets live in bench/RESULTS.md, not in tests.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.cases import Bench, hubsync_split
from bench.data import QUICK, Data
from bench.harness import EmulatorProcess, Measured, ProxyProcess, run_measured
from bench.minimal_client import cipher, query_sftp_account, sync
from bench.report import BenchRun, CaseResult, Row, write_results
from bench.resume import LogTail
from bench.scale import scale_case
from emulator.accounts import SftpAccounts
from emulator.openssh import free_port
from emulator.storage import Space as EmuSpace
from emulator.testing import EmulatorThread
from transfer.auth import encrypt_password

from .conftest import ALICE, KEY, md5_of, write_random

MiB = 1 << 20


async def test_minimal_client_uploads_small_and_chunked_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 16)
    write_random(src / "sub" / "big.bin", 2 * MiB + 123, seed=3)  # 3 chunks of 1 MiB: chunk protocol
    assert cipher(ALICE[1], KEY) == encrypt_password(ALICE[1], KEY)
    with EmulatorThread(tmp_path / "platform") as emu:
        summary = await sync(emu.url, src, "/bench/run", username=ALICE[0], password=ALICE[1], key=KEY,
                             transfers=2, chunk_size=MiB, chunks_per_file=2)
        assert (summary.files, summary.bytes) == (3, 5 + 4096 + 2 * MiB + 123)
        for rel in ("a.txt", "sub/b.bin", "sub/big.bin"):
            assert md5_of(emu.private_path(f"bench/run/{rel}")) == md5_of(src / rel)
        chunks = [e for e in emu.log_entries() if e["path"] == "/api/file/file/uploadFile"]
        assert sorted(e["index"] for e in chunks) == [0, 1, 2]
        tail = LogTail(emu.config.log_path)  # type: ignore[arg-type]
        assert len(tail.poll()) == len(emu.log_entries()) and tail.poll() == []


def test_measured_child_and_event_split(tmp_path: Path) -> None:
    script = (
        "import json\n"
        "for e in ('queued', 'started', 'progress', 'done', 'summary'):\n"
        "    print(json.dumps({'event': e}), flush=True)\n"
    )
    m = run_measured([sys.executable, "-c", script]).check()
    assert m.returncode == 0 and m.maxrss_mib > 1 and len(m.lines) == 5
    split = hubsync_split(m)
    assert set(split) == {"hash", "upload", "merge", "other", "wall"} and split["wall"] == m.wall


def test_report_keeps_the_optimisations_section(tmp_path: Path) -> None:
    row = Row("one file over HTTP: hubsync vs minimal client", "MiB/s", [90.0, 100.0, 110.0], [100.0, 100.0, 100.0],
              "minimal client", aim=0.9, emu_hubsync=[0.5], emu_baseline=[0.6])
    memory = Row("peak RSS", "MiB", [120.0], aim=150.0, aim_kind="max")
    run = BenchRun(date="today", mode="test", machine={"cores (nproc)": "2"}, commands=[("x", "hubsync sync A B")],
                   method=["medians"], cases=[CaseResult(2, "One large file", [row]), CaseResult(5, "Memory", [memory]),
                                              CaseResult(4, "Nothing changed", not_run="rclone missing")])
    out = tmp_path / "RESULTS.md"
    write_results(out, run)
    text = out.read_text()
    assert "| one file over HTTP: hubsync vs minimal client | 100 MiB/s |" in text
    assert "1.00×" in text and "**met**" in text and "not run: rclone missing" in text
    assert "## Optimisations" in text
    out.write_text(text + "\n### 2026-01-01 — abc123 — reuse connections\nbefore 0.8×, after 0.95×\n")
    write_results(out, run)
    assert "### 2026-01-01 — abc123 — reuse connections" in out.read_text()
    assert isinstance(Measured([], 1.0, 0, 0.0, 0.0, 1.0).emulator_share, float)


async def test_emulator_reports_another_sftp_server_through_the_delay_proxy(tmp_path: Path) -> None:
    """The latency case's platform: the emulator process reports sshd's (here: any) port and serves
    no SFTP itself, and a client reaches it through a ProxyProcess, one round trip slower per call."""
    sshd_port = free_port()
    emu = EmulatorProcess(tmp_path / "platform", reported_sftp_port=sshd_port, users=["carol:Pass@123:7:101"])
    with emu:
        port = urlsplit(emu.url).port
        assert port is not None
        with ProxyProcess(port, 0.05) as proxy:
            t = time.perf_counter()
            account = await query_sftp_account(proxy.url(), username="carol", password="Pass@123", key=KEY)
            # login and queryUserInfo: two calls, each at least one 100 ms round trip
            assert time.perf_counter() - t >= 0.2
        assert account["username"] == "carol" and account["port"] == str(sshd_port)
        assert account["password"] == SftpAccounts(emu.root).get(EmuSpace("private", 7), "carol").password
        with pytest.raises(OSError):  # nothing listens there: the emulator did not start an SFTP server
            socket.create_connection(("127.0.0.1", sshd_port), timeout=5).close()


def test_scale_case_runs_every_command_and_reads_their_summaries(tmp_path: Path) -> None:
    """Case 9/10 (bench/scale.py) on a tree of 300 files: each command's output is what it parses."""
    sizes = replace(QUICK, runs=1)
    b = Bench(work=tmp_path / "work", data=Data(tmp_path / "data", sizes), rclone=None, platform_dir=tmp_path / "p",
              say=lambda line: None)
    b.work.mkdir()
    result = scale_case(b, 9, b.data.scale(300), 300, tmp_path / "p" / "emulator")
    labels = [r.what for r in result.rows]
    assert "300 files, first sync: client CPU per file" in labels
    assert "300 files, check: peak RSS" in labels and "300 files, no-op, --trust-journal: peak RSS" in labels
    assert all(r.hubsync for r in result.rows)
    assert sorted(p.read_bytes() for p in (tmp_path / "data").rglob("*.bin"))[:2] == [b"00000000", b"00000001"]


def test_a_measured_childs_peak_rss_is_its_own_not_the_bench_processs() -> None:
    """wait4's ru_maxrss of a child counts the memory of the process it was forked from: a child
    of a bench holding 300 MiB read 313 MiB. The harness reads the child's own VmHWM."""
    held = bytearray(300 << 20)
    for i in range(0, len(held), 4096):  # touched: resident, not only reserved
        held[i] = 1
    child = ("x = bytearray(40 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
             "import time; time.sleep(0.3)")
    m = run_measured([sys.executable, "-c", child]).check()
    assert 40 <= m.maxrss_mib < 150, m.maxrss_mib  # its 40 MiB and an interpreter, not 300 MiB more
    del held
