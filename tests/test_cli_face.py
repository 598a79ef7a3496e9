"""The command line as a newcomer meets it: --version, --help, option errors, the default config file."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import build_parser
from emulator.cli import build_parser as emulator_parser

from .conftest import REPO, run_cli, user_env


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSYNC_")}
    env.update(PYTHONPATH=str(REPO), XDG_CONFIG_HOME=str(tmp_path / "xdg"), HUBSYNC_STATE_DIR=str(tmp_path / "state"))
    return env


def test_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], _env(tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("hubsync ") and result.stdout.split()[1][0].isdigit()


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    found = [("hubsync", parser), ("hubsync emulator", emulator_parser())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"hubsync {name}", p) for name, p in action.choices.items() if name != "emulator"]
    return found


@pytest.mark.parametrize("name,parser", _parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_has_help_and_every_command_examples(name: str, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help is not argparse.SUPPRESS, f"{name}: {action.option_strings or action.dest}"
    text = parser.format_help()
    assert "examples:\n  hubsync" in text, name
    if name in ("hubsync", "hubsync sync", "hubsync ls"):
        assert "KIND:ASSET@VERSION[:/path]" in text and "private:/path/dir" in text


@pytest.mark.parametrize(
    "flag,value,rule",
    [("--transfers", "0", "must be at least 1"), ("--transfers", "many", "must be a whole number"),
     ("--chunk-size", "1KiB", "must be between 64KiB and 1GiB"), ("--bwlimit", "fast", "not a rate")],
)
def test_a_bad_option_value_is_one_line_naming_it(tmp_path: Path, flag: str, value: str, rule: str) -> None:
    result = run_cli(["sync", str(tmp_path), "private:/x", flag, value], _env(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hubsync: {flag} {value}: {rule}"), lines
    assert "pydantic" not in result.stderr and "Traceback" not in result.stderr


def test_a_watch_without_remote_names_the_missing_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[watch]]\nsource = "/data"\nexclude = ["*.tmp"]\n')
    result = run_cli(["--config", str(config), "status"], _env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == ["  watch.0.remote: required key is missing"]


def test_the_default_config_file_is_read_when_none_is_named(tmp_path: Path) -> None:
    env = _env(tmp_path)
    default = tmp_path / "xdg" / "hubsync" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text("[transfer]\ntransfers = 0\n")
    result = run_cli(["status"], env)
    assert result.returncode == 2 and str(default) in result.stderr  # it was read: its error shows
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text("")
    assert run_cli(["status"], {**env, "HUBSYNC_CONFIG": str(elsewhere)}).returncode == 0  # a named file wins
    default.write_text(f'[state]\ndir = "{tmp_path / "mine"}"\n')
    env.pop("HUBSYNC_STATE_DIR")
    assert str(tmp_path / "mine") in run_cli(["status"], env).stdout


def test_the_emulator_prints_its_login_and_holds_one_asset_of_each_kind(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "emulator", "--port", "0", "--root", str(tmp_path / "p")],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(8)]
        url = lines[0].split()[4]
        assert lines[1].strip() == f"login: user alice, password Test@123, key 0123456789abcdef, url {url}"
        assert "dataset:cifar@v1, model:bert@v1, algo:resnet@v1, image:pytorch@v1" in lines[-1]
        env = {**_env(tmp_path), "HUBSYNC_URL": url, "HUBSYNC_USERNAME": "alice", "HUBSYNC_PASSWORD": "Test@123",
               "HUBSYNC_PASSWORD_KEY": "0123456789abcdef"}
        for remote in ("dataset:cifar@v1", "model:bert@v1", "algo:resnet@v1", "image:pytorch@v1"):
            result = run_cli(["ls", remote], env)
            assert result.returncode == 0, result.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_bwlimit_overrides_the_config_and_paces_the_run(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(1_200_000))
    env = user_env(emu, tmp_path)
    started = time.monotonic()
    result = run_cli(["-q", "sync", str(src), "private:/bw", "--bwlimit", "400KiB/s", "--chunk-size", "64KiB"], env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started > 1.0  # 1.2 MB at 400 KiB/s (a 400 KiB burst): about 2 s; unlimited, a fraction


# -- what a run prints ------------------------------------------------------------------------
def test_a_failed_file_is_reported_once_and_counted_once(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_text("fine")
    (src / "bad\\name.txt").write_text("refused: a backslash")
    os.mkfifo(src / "pipe")
    result = run_cli(["sync", str(src), "private:/once"], user_env(emu, tmp_path))
    assert result.returncode == 1
    everything = result.stdout + result.stderr
    assert everything.count("bad\\name.txt") == 1 and everything.count("FAILED  pipe:") == 1, everything
    assert "WARNING" not in everything
    assert "1 sent, 0 unchanged, 2 failed of 3 files" in result.stdout
    assert "MB/s" not in everything and re.search(r"\(\d+(\.\d)? (B|KiB|MiB)/s\)", result.stdout), result.stdout


def test_json_events_carry_ts_running_totals_and_the_size_when_done(emu, tmp_path: Path) -> None:
    from datetime import datetime

    from .conftest import json_lines

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(300_000))
    result = run_cli(["--json", "sync", str(src), "private:/j", "--chunk-size", "64KiB"], user_env(emu, tmp_path))
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert all(datetime.fromisoformat(e["ts"]).utcoffset().total_seconds() == 0 and e["ts"].endswith("Z")
               for e in events)
    progress = [e for e in events if e["event"] == "progress"]
    running = 0
    for e in progress:
        running += e["bytes"]
        assert e["bytes_done"] == running
    assert running == 300_000
    assert [e["bytes"] for e in events if e["event"] == "done"] == [300_000]
    bad = run_cli(["--json", "sync", str(src), "nowhere:/x"], user_env(emu, tmp_path))
    assert bad.returncode == 2
    (error,) = json_lines(bad.stdout)
    assert error["event"] == "error" and error["exit"] == 2 and "not a remote" in error["message"] and error["ts"]


def test_not_a_terminal_prints_a_stats_line_before_a_slow_transfer_ends(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "slow.bin").write_bytes(os.urandom(1_000_000))
    emu.faults.latency = 0.25  # every call takes a quarter second: 16 chunks of 64 KiB, 4 at a time
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sync", str(src), "private:/slow", "--chunk-size", "64KiB", "--stats", "0.3"],
        env=user_env(emu, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    stats = [i for i, line in enumerate(lines) if line.startswith("stats   ")]
    sent = next(i for i, line in enumerate(lines) if line.startswith("sent    slow.bin"))
    assert stats and stats[0] < sent, out  # the first stats line came while the file was still on its way
    first = lines[stats[0]]
    assert "0/1 files" in first and "/976.6 KiB" in first and "ETA" in first and "0 errors" in first, first


def test_the_terminal_shows_bars_reaching_100_percent_and_the_summary(emu, tmp_path: Path) -> None:
    import pexpect

    src = tmp_path / "src"
    for i in range(3):
        (src / f"d{i}").mkdir(parents=True)
        (src / f"d{i}" / "f.bin").write_bytes(os.urandom(400_000))
    emu.faults.latency = 0.05
    child = pexpect.spawn(sys.executable, ["-m", "agent.cli", "sync", str(src), "private:/tty", "--chunk-size", "64KiB"],
                          env=user_env(emu, tmp_path), cwd=str(REPO), encoding="utf-8", timeout=60,
                          dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before)  # what the terminal shows, without its escapes
    assert re.search(r"total 3/3 files .*100% 1\.1/1\.1 MiB", screen), screen[-1500:]  # the total bar at the end
    assert re.search(r"3 sent, 0 unchanged, 0 failed of 3 files; 1\.1 MiB of 1\.1 MiB sent in [\d.]+s"
                     r" \([\d.]+ (KiB|MiB)/s\)", screen), screen[-1500:]
    assert "MB/s" not in screen and "%" in screen


# -- status -----------------------------------------------------------------------------------
def test_status_tells_a_file_in_flight_from_one_an_interrupted_run_left(emu, tmp_path: Path) -> None:
    import signal as signals

    from .conftest import json_lines, wait_for

    src = tmp_path / "src"
    src.mkdir()
    (src / "slow.bin").write_bytes(os.urandom(4_000_000))
    emu.faults.latency = 0.5  # 64 chunks, 4 at a time: ~8 s in flight, so status sees it even on a loaded machine
    env = user_env(emu, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "-q", "sync", str(src), "private:/st", "--chunk-size",
                             "64KiB"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)

    def remote_counts() -> dict:
        result = run_cli(["--json", "status"], env)
        remotes = json_lines(result.stdout)[-1]["remotes"] if result.returncode == 0 else []
        return remotes[0] if remotes else {}

    try:
        wait_for(lambda: remote_counts().get("active") == 1, timeout=60)
        proc.send_signal(signals.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counts = remote_counts()
    assert (counts["active"], counts["interrupted"], counts["done"]) == (0, 1, 0), counts
    text = run_cli(["status"], env).stdout
    assert "1 interrupted" in text and "0 B of 3.8 MiB" in text, text


def test_an_instant_upload_says_so(emu, tmp_path: Path) -> None:
    from .conftest import json_lines

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(1_500_000))  # over the small-file threshold: the chunk protocol
    env = user_env(emu, tmp_path)
    first = json_lines(run_cli(["--json", "sync", str(src), "private:/one"], env).stdout)
    again = json_lines(run_cli(["--json", "sync", str(src), "private:/two"], env).stdout)  # same content elsewhere
    assert [e.get("instant") for e in first if e["event"] == "done"] == [None]
    assert [e.get("instant") for e in again if e["event"] == "done"] == [True]
    assert not [e for e in again if e["event"] == "progress"]
    text = run_cli(["sync", str(src), "private:/three"], env).stdout
    assert "instant: the platform held the content" in text, text


def test_status_shows_the_last_run_of_each_remote(emu, tmp_path: Path) -> None:
    import signal as signals

    from .conftest import json_lines, wait_for

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    env = user_env(emu, tmp_path)
    assert run_cli(["-q", "sync", str(src), "private:/r1"], env).returncode == 0
    (src / "b\\c.txt").write_text("refused")
    assert run_cli(["-q", "sync", str(src), "private:/r1"], env).returncode == 1
    (src / "slow.bin").write_bytes(os.urandom(4_000_000))
    emu.faults.latency = 0.5  # 64 chunks, 4 at a time: ~8 s in flight, so status sees it even on a loaded machine
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "-q", "sync", str(src), "private:/r2", "--chunk-size",
                             "64KiB"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)

    def runs() -> list[dict]:
        result = run_cli(["--json", "status"], env)
        return json_lines(result.stdout)[-1].get("runs", []) if result.returncode == 0 else []

    wait_for(lambda: any(r["remote"] == "private:/r2" for r in runs()), timeout=60)
    proc.send_signal(signals.SIGINT)
    assert proc.wait(timeout=30) == 130
    by_remote = {r["remote"]: r for r in runs()}
    assert set(by_remote) == {"private:/r1", "private:/r2"}
    r1 = by_remote["private:/r1"]
    assert (r1["result"], r1["files_total"], r1["files_skipped"], r1["files_failed"]) == ("failed", 2, 1, 1)
    assert r1["ended_at"] >= r1["started_at"]
    assert by_remote["private:/r2"]["result"] == "interrupted"
    text = run_cli(["status"], env).stdout
    # One row per remote, its last run below it.
    assert re.search(r"^private:/r2: [^\n]*\n  last run: [^\n]* interrupted$", text, re.MULTILINE), text
    assert re.search(r"^private:/r1: [^\n]*\n  last run: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d\d:\d\d:\d\d"
                     r" \([\d.]+s\) failed, 0 sent, 1 unchanged, 1 failed of 2 files", text, re.MULTILINE), text
