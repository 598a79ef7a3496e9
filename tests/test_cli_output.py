"""What a run prints while it runs: the hashing stage, -v and -vv, --json on every command."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from transfer.engine import HASH_EVENTS_FROM

from .conftest import REPO, json_lines, run_cli, user_env, write_random

BIG = HASH_EVENTS_FROM + 123_457  # just large enough to report its hashing


def _screen(text: str) -> str:
    """What a terminal shows of rich's output, without its escapes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


# -- the hashing stage ---------------------------------------------------------------------------
def test_json_reports_the_hashing_of_a_large_file_before_its_sending(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "big.bin", BIG, seed=1)
    (src / "small.txt").write_text("too small to report its hashing")
    result = run_cli(["--json", "sync", str(src), "private:/h"], user_env(emu, tmp_path))
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    kinds = [(e["event"], e.get("path")) for e in events]
    hashing = [e for e in events if e["event"] == "hashing"]
    assert {e["path"] for e in hashing} == {"big.bin"}, hashing
    assert (hashing[0]["bytes"], hashing[0]["bytes_done"], hashing[0]["size"]) == (0, 0, BIG)
    running = 0
    for e in hashing[1:]:
        running += e["bytes"]
        assert e["bytes_done"] == running > 0
    assert running == BIG and len(hashing) > 2  # it moved in steps, up to the whole file
    last_hashing = max(i for i, k in enumerate(kinds) if k == ("hashing", "big.bin"))
    assert kinds.index(("started", "big.bin")) > last_hashing  # hashed first, then sent
    assert [e["bytes"] for e in events if e["event"] == "done" and e["path"] == "big.bin"] == [BIG]


def test_the_terminal_shows_a_large_file_hashing_then_sending(emu, tmp_path: Path) -> None:
    import pexpect

    src = tmp_path / "src"
    write_random(src / "big.bin", BIG, seed=2)
    child = pexpect.spawn(sys.executable, ["-m", "agent.cli", "sync", str(src), "private:/tty"],
                          env=user_env(emu, tmp_path), cwd=str(REPO), encoding="utf-8", timeout=60,
                          dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-2000:]
    screen = _screen(child.before)
    hashing = screen.rfind("hashing big.bin")
    assert hashing >= 0, screen[-2000:]
    # Then the same bar without "hashing", counting the bytes sent, and the total reaching 100 %.
    sending = re.search(r"(?<!hashing )big\.bin +━", screen[hashing + len("hashing big.bin"):])
    assert sending, screen[-2000:]
    size = f"{BIG / (1 << 20):.1f}"
    assert re.search(r"total 1/1 files .*100% " + re.escape(f"{size}/{size} MiB"), screen[hashing:]), screen[-2000:]
    assert "1 sent, 0 unchanged, 0 failed of 1 files" in screen


def test_a_log_says_when_a_large_file_is_hashed(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "big.bin", BIG, seed=3)
    result = run_cli(["sync", str(src), "private:/log"], user_env(emu, tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"hashing big.bin ({BIG / (1 << 20):.1f} MiB) before sending it", lines
    assert lines[1].startswith("sent    big.bin -> private:/log/big.bin"), lines


# -- -v and -vv ----------------------------------------------------------------------------------
RETRY = re.compile(r"^retry   a\.bin: (/api/file/file/\w+) in (\d+\.\d\d)s \(attempt (\d)\): (.+)$", re.MULTILINE)


def test_v_names_every_retry_with_its_reason_and_delay(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 3 << 20, seed=4)
    env = user_env(emu, tmp_path)
    emu.faults.update({"seed": 3, "chunk_error_rate": 0.4})
    result = run_cli(["-v", "sync", str(src), "private:/r", "--chunk-size", "256KiB"], env)
    assert result.returncode == 0, result.stderr
    injected = sum(1 for e in emu.log_entries() if e.get("status") == 500)
    retries = RETRY.findall(result.stderr)
    assert injected > 0 and len(retries) == injected, (injected, result.stderr[-3000:])  # each one, once
    assert {reason for *_, reason in retries} == {"HTTP 500 系统内部错误"}
    assert all(float(delay) > 0 and int(attempt) >= 1 for _, delay, attempt, _ in retries)
    assert "sent    a.bin -> private:/r/a.bin (3.0 MiB via http)" in result.stdout
    quiet = run_cli(["sync", str(src), "private:/r2", "--chunk-size", "256KiB"], env)
    assert quiet.returncode == 0 and not RETRY.search(quiet.stderr)  # without -v retries stay silent
    emu.clear_log()
    listed = run_cli(["--json", "sync", str(src), "private:/r3", "--chunk-size", "256KiB"], env)
    events = [e for e in json_lines(listed.stdout) if e["event"] == "retry"]
    assert len(events) == sum(1 for e in emu.log_entries() if e.get("status") == 500) > 0
    assert all(e["reason"].startswith("HTTP 500") and e["delay"] > 0 and e["attempt"] >= 1
               and e["call"].startswith("/api/file/file/") and e["path"] == "a.bin" for e in events), events


def test_v_shows_the_switch_to_sftp_and_the_transport_of_each_file(emu_sftp, sftp_env, tmp_path: Path) -> None:
    emu_sftp.faults.chunk_api_off = True
    src = tmp_path / "src"
    write_random(src / "a.bin", 2 << 20, seed=5)
    result = run_cli(["-v", "sync", str(src), "private:/f"], sftp_env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^note    .*HTTP 404: endpoint not available: switching to sftp for 600s, then trying http"
                     r" again$", result.stdout, re.MULTILINE), result.stdout
    assert "sent    a.bin -> private:/f/a.bin (2.0 MiB via sftp)" in result.stdout
    again = run_cli(["-v", "sync", str(src), "private:/f"], sftp_env)
    assert "skipped a.bin (unchanged since the journal recorded it done)" in again.stdout, again.stdout
    # -vv logs every answer of the platform, queryUserInfo's too: never the SFTP password in it.
    debug = run_cli(["-vv", "sync", str(src), "private:/f2", "--transport", "sftp"], sftp_env)
    assert debug.returncode == 0 and "DEBUG hubsync.api: POST /api/file/user/queryUserInfo" in debug.stderr
    import json

    accounts = json.loads((emu_sftp.root / "sftp_accounts.json").read_text())
    passwords = [entry["password"] for entry in accounts.values()]
    assert passwords and not [p for p in passwords if p in debug.stdout + debug.stderr]


def test_vv_cuts_an_html_error_page_short(emu, tmp_path: Path) -> None:
    from emulator.middleware import HTML_ERROR_PAGE

    src = tmp_path / "src"
    write_random(src / "a.bin", 2 << 20, seed=6)
    emu.faults.update({"seed": 1, "chunk_error_rate": 0.5, "html_errors": True})
    result = run_cli(["-vv", "sync", str(src), "private:/html", "--chunk-size", "256KiB"], user_env(emu, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    page = HTML_ERROR_PAGE.format(status=500)
    bodies = [line for line in result.stderr.splitlines() if ": HTTP 500, " in line and "DEBUG hubsync.api" in line]
    assert bodies and all(f"HTTP 500, {len(page)} bytes: <!DOCTYPE html> <html>" in line for line in bodies)
    assert all(len(line.split(" bytes: ", 1)[1]) <= 300 for line in bodies), bodies[0]
    assert "end of the error page" not in result.stderr and "<!DOCTYPE html>\n" not in result.stderr
    # The error itself quotes the page's title, on one line.
    assert set(r[-1] for r in RETRY.findall(result.stderr)) == {"HTTP 500 Internal Server Error"}


def test_v_on_a_terminal_prints_files_sent_instant_or_skipped_above_the_bars(emu, tmp_path: Path) -> None:
    import pexpect

    src = tmp_path / "src"
    write_random(src / "a.bin", 1_500_000, seed=7)  # over the small-file threshold: the chunk protocol
    env = user_env(emu, tmp_path)
    assert run_cli(["-q", "sync", str(src), "private:/one"], env).returncode == 0
    screens = []
    for remote in ("private:/two", "private:/two"):  # the same content elsewhere (instant), then unchanged
        child = pexpect.spawn(sys.executable, ["-m", "agent.cli", "-v", "sync", str(src), remote],
                              env=env, cwd=str(REPO), encoding="utf-8", timeout=60, dimensions=(24, 160))
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before[-2000:]
        screens.append(_screen(child.before))
    assert "sent    a.bin -> private:/two/a.bin (1.4 MiB via http, instant: the platform held the content)" \
        in screens[0], screens[0][-2000:]
    assert "skipped a.bin (unchanged since the journal recorded it done)" in screens[1], screens[1][-2000:]


def test_a_logged_body_never_holds_a_secret_even_cut_inside_one() -> None:
    from transfer.envelope import body_excerpt

    token = "eyJhbGciOiJIUzI1NiJ9." + "x" * 400
    body = b'{"code": 200, "msg": "ok", "token": "' + token.encode() + b'"}'
    assert body_excerpt(body) == '{"code": 200, "msg": "ok", "token": "***"}'
    cut = body_excerpt(body, limit=60)  # the cut falls inside the token's value
    assert "eyJ" not in cut and '"token": "***"' in cut
    account = b'{"success": true, "result": {"username": "u5", "password": "s3cr3t-pw", "sftpPassword": "p2"}}'
    assert "s3cr3t" not in body_excerpt(account) and '"p2"' not in body_excerpt(account)
    assert '"username": "u5"' in body_excerpt(account)


# -- --json on every command ---------------------------------------------------------------------
def _objects(stdout: str) -> list[dict]:
    """Every line of stdout as a JSON object with event and ts: anything else fails the test."""
    import json
    from datetime import datetime

    objects = [json.loads(line) for line in stdout.splitlines()]
    assert objects, "no output"
    for obj in objects:
        assert isinstance(obj, dict) and obj["event"] and datetime.fromisoformat(obj["ts"]).utcoffset().seconds == 0, obj
    return objects


def test_every_command_prints_json_lines_only_with_json(emu, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a")
    (src / "b.bin").write_bytes(b"b" * 5000)
    env = user_env(emu, tmp_path)
    last = {}
    for args in (["login"], ["sync", str(src), "private:/j", "--dry-run"], ["sync", str(src), "private:/j"],
                 ["check", str(src), "private:/j"], ["status"], ["ls", "private:/j"], ["-v", "ls", "private:/j/d"]):
        result = run_cli(["--json", *args], env)
        assert result.returncode == 0, (args, result.stderr)
        objects = _objects(result.stdout)
        last[args[0] if args[0] != "-v" else "ls d"] = objects
    assert last["login"][-1]["event"] == "login" and last["login"][-1]["user"] == "alice"
    assert last["sync"][-1]["event"] == "summary" and last["sync"][-1]["files_sent"] == 2
    assert last["check"][-1]["event"] == "check" and last["check"][-1]["identical"] is True
    assert last["status"][-1]["event"] == "status"
    entries, summary = last["ls"][:-1], last["ls"][-1]
    assert [(e["event"], e["name"], e["dir"]) for e in entries] == [("entry", "d", True), ("entry", "b.bin", False)]
    assert (summary["event"], summary["remote"], summary["folders"], summary["files"], summary["bytes"]) == \
        ("ls", "private:/j", 1, 1, 5000)
    assert [e.get("name") for e in last["ls d"]] == ["a.txt", None]


def test_every_error_is_a_json_error_event_with_the_exit_code(emu, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    env = user_env(emu, tmp_path)
    wrong = {**env, "HUBSYNC_PASSWORD": "not-it"}
    cases = [
        (["--json", "sync"], env, 2, "the following arguments are required: SRC, REMOTE"),
        (["--json", "bogus"], env, 2, "invalid choice: 'bogus'"),
        (["--json", "ls", "nowhere:/x"], env, 2, "not a remote"),
        (["--json", "check", str(tmp_path / "missing"), "private:/x"], env, 2, "source does not exist"),
        (["--json", "login"], wrong, 3, "authentication failed"),
        (["--json", "daemon"], env, 2, "[[watch]]"),
        (["--json", "emulator", "--bogus"], env, 2, "unrecognized arguments: --bogus"),
        (["emulator", "--json", "--port", "-5"], env, 2, "a port is 0 to 65535, not -5"),
        (["emulator", "--json", "--port", str(urlsplit(emu.url).port)], env, 2,
         f"cannot listen on 127.0.0.1:{urlsplit(emu.url).port}"),
    ]
    for args, environment, code, words in cases:
        result = run_cli(args, environment, timeout=60)
        assert result.returncode == code, (args, result.returncode, result.stderr)
        (error,) = _objects(result.stdout)
        assert error["event"] == "error" and error["exit"] == code and words in error["message"], (args, error)
        assert words in result.stderr  # the same, for a person reading stderr


def test_the_emulator_says_its_start_and_stop_as_json(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "--json", "emulator", "--port", "0", "--root",
                             str(tmp_path / "p")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=user_env_free(tmp_path))
    try:
        assert proc.stdout is not None
        start = json.loads(proc.stdout.readline())
        assert start["event"] == "listening" and start["url"].startswith("http://127.0.0.1:")
        assert start["env"] == {"HUBSYNC_URL": start["url"], "HUBSYNC_USERNAME": "alice", "HUBSYNC_PASSWORD": "Test@123",
                                "HUBSYNC_PASSWORD_KEY": "0123456789abcdef"}
        assert start["datahub"] == ["dataset:cifar@v1", "model:bert@v1", "algo:resnet@v1", "image:pytorch@v1"]
        env = {**user_env_free(tmp_path), **start["env"]}
        assert run_cli(["--json", "login"], env).returncode == 0  # what it printed is enough to log in
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert [o["event"] for o in _objects(rest)] == ["stopped"]


def user_env_free(tmp_path: Path) -> dict[str, str]:
    """A user's environment with no platform set (the emulator's own run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSYNC_")}
    env.update(PYTHONPATH=str(REPO), XDG_CONFIG_HOME=str(tmp_path / "xdg"), HUBSYNC_STATE_DIR=str(tmp_path / "state"))
    return env


def test_demo_with_json_prints_json_lines_only(tmp_path: Path) -> None:
    result = run_cli(["--json", "demo"], user_env_free(tmp_path), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    objects = _objects(result.stdout)
    events = [o["event"] for o in objects]
    final = objects[-1]
    assert final["event"] == "summary" and final["ok"] is True
    assert final["files_verified"] == final["files_total"] == events.count("verified") > 20
    assert 0 < final["bytes_sent_to_finish"] < final["big_file_bytes"]  # resumed, not sent again
    for expected in ("step", "login", "killed", "progress", "done", "resumed", "entry", "ls", "status"):
        assert expected in events, expected


# -- unchanged files: counted in batches, named only where shown ----------------------------------
def test_unchanged_files_are_named_by_json_and_v_and_only_counted_otherwise(emu, tmp_path: Path) -> None:
    """A sink that only counts gets one `skipped` event per batch (a no-op of a million files is
    not a million events through the terminal's bars); --json and -v still name every file."""
    from agent.render import PlainLines
    from transfer.progress import Event, FanoutSink, each_skipped

    src = tmp_path / "src"
    for folder in ("a", "b"):
        for i in range(30):
            (src / folder).mkdir(parents=True, exist_ok=True)
            (src / folder / f"{i}.txt").write_text(f"{folder}{i}")
    env = user_env(emu, tmp_path)
    assert run_cli(["sync", str(src), "private:/u"], env).returncode == 0
    as_json = run_cli(["--json", "sync", str(src), "private:/u"], env)
    skipped = sorted(e["path"] for e in json_lines(as_json.stdout) if e["event"] == "skipped")
    assert skipped == sorted(f"{f}/{i}.txt" for f in ("a", "b") for i in range(30))
    assert all("files" not in e for e in json_lines(as_json.stdout))  # not a field of the JSON events
    plain = run_cli(["sync", str(src), "private:/u"], env)
    assert "0 sent, 60 unchanged, 0 failed of 60 files" in plain.stdout, plain.stdout
    verbose = run_cli(["-v", "sync", str(src), "private:/u"], env)
    assert verbose.stdout.count("(unchanged since the journal recorded it done)") == 60, verbose.stdout
    # The counting: a batch event counts its files in the stats line like single ones.
    quiet, shown = PlainLines(quiet=True), PlainLines(verbose=1)
    assert not each_skipped(FanoutSink(quiet)) and each_skipped(FanoutSink(quiet, shown))
    quiet.emit(Event("skipped", size=300, files=30))
    quiet.emit(Event("skipped", "x", "private:/u/x", size=5))
    assert (quiet.tally.files_total, quiet.tally.files_done, quiet.tally.bytes_done) == (31, 31, 305)
