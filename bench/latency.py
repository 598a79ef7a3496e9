"""Case 8 (issue 15): the same transfers at ~0 and at 20 ms round-trip time, through the delay proxy.

A platform far away is played by bench/delayproxy.py (netem is not in this kernel) in front of
the emulator's HTTP port and in front of a real OpenSSH sshd on loopback, the platform's likely
SFTP service (emulator/openssh.py: a local account whose password is the one the emulator's
account store generated, and queryUserInfo reports the proxy's port). Three clients:

- hubsync over HTTP (the chunk protocol and simple uploads, through the HTTP proxy);
- hubsync over SFTP to sshd (its platform calls, login and checkFileExist, through the HTTP proxy);
- rclone over SFTP to the same sshd, at its best: concurrent writes on, 255 KiB packets.

Both round-trip times go through the same proxies (0 ms: forwarded at once), so a 20 ms / 0 ms
ratio measures what the delay costs and nothing else.
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from emulator.accounts import SftpAccounts
from emulator.openssh import LocalAccount, Sshd, SshdUnavailable, free_port, requirements
from emulator.storage import Space as EmuSpace

from .cases import MANY_TRANSFERS, Bench, repeat, sent_all
from .data import MiB, human
from .harness import PASSWORD, EmulatorProcess, Measured, ProxyProcess, hubsync_argv, hubsync_env
from .rclone import OPENSSH_FLAGS, rclone_argv, sftp_env
from .report import CaseResult, Row, median

RTTS = (0.0, 0.020)  # seconds; each direction is held back by half
HTTP, SFTP, RCLONE = "hubsync HTTP", "hubsync SFTP", "rclone SFTP"
CLIENTS = (HTTP, SFTP, RCLONE)
REMOTE_DIR = "lat"


@dataclass
class DataSet:
    label: str
    source: Path
    count: int
    size: int  # bytes in all
    unit: str  # "MiB/s" for one file, "files/s" for many
    aims: dict[str, float] = field(default_factory=dict)  # row kind -> aim

    def value(self, m: Measured) -> float:
        return self.size / MiB / m.wall if self.unit == "MiB/s" else self.count / m.wall


@dataclass
class OpenSsh:
    """sshd for one local account, and a delay proxy in front of it per round-trip time."""

    account: LocalAccount
    sshd: Sshd
    proxies: dict[float, ProxyProcess]

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.sshd.stop()
        self.account.remove()


def start_openssh(work: Path, home_parent: Path | None) -> OpenSsh:
    """Raises SshdUnavailable, saying why, where sshd cannot run (not root, not installed)."""
    requirements()
    account = LocalAccount("hsb", home_parent=home_parent)
    sshd: Sshd | None = None
    proxies: dict[float, ProxyProcess] = {}
    try:
        account.create()
        workdir = work / "sshd"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        sshd = Sshd(workdir, account.name, free_port())
        sshd.start()
        for rtt in RTTS:
            proxies[rtt] = ProxyProcess(sshd.port, rtt / 2).start()
        return OpenSsh(account, sshd, proxies)
    except BaseException:
        for proxy in proxies.values():
            proxy.stop()
        if sshd is not None:
            sshd.stop()
        account.remove()
        raise


@dataclass
class Runs:
    """Per (client, rtt): values (MiB/s or files/s), client CPU seconds and emulator CPU shares."""

    values: dict[tuple[str, float], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, float], list[float]] = field(default_factory=dict)
    emu: dict[tuple[str, float], list[float]] = field(default_factory=dict)

    def add(self, client: str, rtt: float, value: float, m: Measured) -> None:
        self.values.setdefault((client, rtt), []).append(value)
        self.cpu.setdefault((client, rtt), []).append(m.cpu)
        if client == HTTP:  # the others' bytes go to sshd: the emulator's share says nothing there
            self.emu.setdefault((client, rtt), []).append(m.emulator_share)

    def row(self, what: str, unit: str, a: tuple[str, float], b: tuple[str, float], baseline: str,
            aim: float | None) -> Row | None:
        if not self.values.get(a) or not self.values.get(b):
            return None
        row = Row(what, unit, [], [], baseline, aim=aim)
        for v, c in zip(self.values[a], self.cpu[a], strict=True):
            row.add_hubsync(v, c)
        for v, c in zip(self.values[b], self.cpu[b], strict=True):
            row.add_baseline(v, c)
        row.emu_hubsync, row.emu_baseline = list(self.emu.get(a, [])), list(self.emu.get(b, []))
        return row


def _ms(rtt: float) -> str:
    return f"{rtt * 1000:g} ms"


def case_latency(b: Bench) -> CaseResult:
    s = b.data.sizes
    sets = [
        DataSet(f"{human(s.latency_big)}", b.data.latency_big, 1, s.latency_big, "MiB/s",
                aims={HTTP: 0.9, SFTP: 0.9}),
        DataSet(f"{s.medium_count:,} × {human(s.medium_size)}", b.data.medium, s.medium_count,
                s.medium_count * s.medium_size, "files/s"),
        DataSet(f"{s.latency_small_count:,} × {human(s.small_size)}", b.data.latency_small, s.latency_small_count,
                s.latency_small_count * s.small_size, "files/s", aims={f"{HTTP} vs rclone": 8.0,
                                                                     f"{SFTP} vs rclone": 3.0}),
    ]
    result = CaseResult(8, f"Latency: {_ms(RTTS[0])} and {_ms(RTTS[1])} round-trip time through the delay proxy")
    load_start = os.getloadavg()
    ssh: OpenSsh | None = None
    ssh_note = ""
    if b.rclone is None:
        ssh_note = f"rclone rows not run: {b.rclone_note}"
    try:
        shm = b.platform_dir.parent if str(b.platform_dir).startswith("/dev/shm") else None
        ssh = start_openssh(b.work, shm)  # the account's home beside the emulator's roots (else /tmp)
    except SshdUnavailable as exc:
        ssh_note = f"SFTP rows (hubsync SFTP, rclone) not run: OpenSSH unavailable ({exc})"
    clients = [c for c in CLIENTS if c == HTTP or (ssh is not None and (c == SFTP or b.rclone is not None))]
    proxy_cpu = [0.0]
    all_runs: dict[str, Runs] = {}
    try:
        for data in sets:
            runs = all_runs[data.label] = Runs()
            b.say(f" {data.label}")
            steps: list[Callable[[], None]] = [
                _step(b, ssh, data, client, rtt, runs, proxy_cpu) for rtt in RTTS for client in clients]
            repeat(b.runs, steps)
    finally:
        if ssh is not None:
            proxy_cpu[0] += sum(p.cpu() for p in ssh.proxies.values() if p.proc is not None)
            ssh.stop()
    slow, fast = RTTS[1], RTTS[0]
    table = ["| data | client | " + " | ".join(f"at {_ms(r)}" for r in RTTS) + f" | {_ms(slow)} / {_ms(fast)}"
             " | client CPU s (" + " / ".join(_ms(r) for r in RTTS) + ") |", "|---|---|---|---|---|---|"]
    for data in sets:
        runs = all_runs.get(data.label, Runs())
        for client in clients:
            row = runs.row(f"{data.label}, {client}: {_ms(slow)} / {_ms(fast)}", data.unit, (client, slow),
                           (client, fast), f"same at {_ms(fast)}", data.aims.get(client))
            if row is not None:
                result.rows.append(row)
                cells = [f"{median(runs.values[(client, r)]):.1f} {data.unit}" for r in RTTS]
                cpu = " / ".join(f"{statistics.median(runs.cpu[(client, r)]):.1f}" for r in RTTS)
                table.append(f"| {data.label} | {client} | " + " | ".join(cells) + f" | {row.ratio:.2f}× | {cpu} |")
        for client in (HTTP, SFTP):
            row = runs.row(f"{data.label} at {_ms(slow)}: {client} vs {RCLONE}", data.unit, (client, slow),
                           (RCLONE, slow), RCLONE, data.aims.get(f"{client} vs rclone"))
            if row is not None:
                result.rows.append(row)
    result.extra = "Medians per client and round-trip time:\n\n" + "\n".join(table)
    load_end = os.getloadavg()
    result.notes += [
        f"{MANY_TRANSFERS} files in flight for every client in the many-files rows (hubsync --transfers,"
        f" rclone --transfers); one large file: hubsync's defaults, rclone's defaults (--sftp-concurrency 64)."
        " Ratio for A / B rows = A's throughput / B's.",
        "rclone runs against OpenSSH with " + " ".join(OPENSSH_FLAGS) + " (concurrent writes on, its"
        " default): 255 KiB packets are what its docs advise for high-latency links.",
        "The delay proxy (bench/delayproxy.py) runs in its own process per measured run (HTTP) and per case"
        f" (SFTP); the proxies used {proxy_cpu[0]:.0f} CPU s over the case. The emulator and sshd write to"
        f" {b.platform_dir.parent}.",
        "Load average (1/5/15 min) at the case's start " + " ".join(f"{v:.2f}" for v in load_start)
        + ", at its end " + " ".join(f"{v:.2f}" for v in load_end) + " (2 cores, shared with other workers).",
    ]
    if ssh_note:
        result.notes.append(ssh_note)
    return result


def _step(b: Bench, ssh: OpenSsh | None, data: DataSet, client: str, rtt: float, runs: Runs,
          proxy_cpu: list[float]) -> Callable[[], None]:
    def step() -> None:
        m = _run_one(b, ssh, data, client, rtt, proxy_cpu)
        value = data.value(m)
        runs.add(client, rtt, value, m)
        b.say(f"  {client:13} at {_ms(rtt):5}: {m.wall:6.2f} s ({value:.1f} {data.unit}), CPU {m.cpu:.1f} s")
    return step


def _run_one(b: Bench, ssh: OpenSsh | None, data: DataSet, client: str, rtt: float,
             proxy_cpu: list[float]) -> Measured:
    sftp_proxy = ssh.proxies[rtt] if ssh is not None else None
    user = ssh.account.name if ssh is not None else ""
    emu = EmulatorProcess(b.platform_dir / "emulator", sftp=False,
                          reported_sftp_port=sftp_proxy.port if sftp_proxy is not None else None,
                          users=[f"{user}:{PASSWORD}:5:101"] if user else None)
    with emu:
        password = ""
        if ssh is not None:
            # The account store made by the emulator's root holds the password queryUserInfo gives.
            password = SftpAccounts(emu.root).get(EmuSpace("private", 5), user).password
            ssh.account.set_password(password)
        port = urlsplit(emu.url).port
        assert port is not None
        with ProxyProcess(port, rtt / 2) as http:
            if client == RCLONE:
                assert ssh is not None and sftp_proxy is not None and b.rclone is not None
                extra = ["--transfers", str(MANY_TRANSFERS)] if data.count > 1 else []
                argv = rclone_argv(b.rclone, b.work / "rclone.conf", "copy", data.source, REMOTE_DIR, *extra,
                                   flags=OPENSSH_FLAGS)
                m = b.measure("rclone copy (latency, OpenSSH through the delay proxy)", argv,
                              env=sftp_env(b.rclone, sftp_proxy.port, user, password)).check()
            else:
                transport = "http" if client == HTTP else "sftp"
                argv = [*hubsync_argv(), "--json", "sync", str(data.source), f"private:/{REMOTE_DIR}",
                        "--chunk-size", "8MiB", "--transport", transport]
                if data.count > 1:
                    argv += ["--transfers", str(MANY_TRANSFERS)]
                env = hubsync_env(emu, b.state(), url=http.url(), **({"user": user} if user else {}))
                m = b.measure(f"hubsync sync (latency, {transport.upper()} through the delay proxy)", argv,
                              env=env, emulator=emu)
                sent_all(m, data.count)
            proxy_cpu[0] += http.cpu()
        where = emu.private_path(REMOTE_DIR) if client == HTTP else ssh.account.home / REMOTE_DIR if ssh else None
        assert where is not None
        _check_remote(where, data)
    return m


def _check_remote(where: Path, data: DataSet) -> None:
    """The remote holds every file with every byte (then it is removed for the next run)."""
    try:
        files = [p for p in where.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        if len(files) != data.count or total != data.size:
            raise RuntimeError(f"the remote holds {len(files)} files, {total} bytes; expected {data.count},"
                               f" {data.size}")
    finally:
        shutil.rmtree(where, ignore_errors=True)
