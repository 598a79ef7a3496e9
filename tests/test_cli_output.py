"""What a run prints while it runs: the hashing stage, -v and -vv, --json on every command."""

from __future__ import annotations

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
