"""The daemon survives what is no file's fault: a refused login, an HTTP API switched off, odd warnings."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from emulator.config import EmulatorUser
from emulator.testing import EmulatorThread

from .conftest import ALICE, md5_of, run_cli, user_env, wait_for, write_random
from .daemon_support import DaemonProcess, arrived, daemon_config, sends


def _status_text(env: dict[str, str], cfg: Path) -> str:
    result = run_cli(["--config", str(cfg), "status"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _daemon_status(env: dict[str, str], cfg: Path) -> dict:
    """The daemon part of `hubsync --json status` (the daemon writes it about once a second)."""
    result = run_cli(["--config", str(cfg), "--json", "status"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]).get("daemon") or {}


def _logins(emu: EmulatorThread) -> list[dict]:
    return [e for e in emu.log_entries() if e["path"] == "/prod-api/login"]


def _only_json_lines(log: Path) -> None:
    for line in log.read_text().splitlines():
        assert line.startswith("{") and isinstance(json.loads(line), dict), f"not a JSON line: {line!r}"
    assert "Traceback" not in log.read_text()


def test_a_refused_login_pauses_the_jobs_with_bounded_attempts_and_they_resume_by_themselves(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.txt").write_bytes(b"first file")
    password_file = tmp_path / "password"
    password_file.write_text("not-the-password\n")
    password_file.chmod(0o600)
    env = {k: v for k, v in hub_env.items() if k != "HUBSYNC_PASSWORD"}
    env["HUBSYNC_PASSWORD_FILE"] = str(password_file)
    cfg = tmp_path / "hubsync.toml"
    cfg.write_text(daemon_config(tmp_path / "state", [{"source": str(src), "remote": "private:/in",
                                                       "settle_seconds": 0.2, "delete": True}],
                                 daemon={"login_retry_seconds": 0.2, "login_retry_max_seconds": 0.8,
                                         "delete_delay": 0.2}))
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(cfg, env, log).start(ready=False)  # no "started" before a login works
    try:
        # 1. Wrong from the start: the process stays, logins are spaced out, status names the cause.
        wait_for(lambda: len(daemon.events("auth_failed")) >= 6, timeout=30)
        steps = daemon.events("auth_failed")
        assert [e["retry_in"] for e in steps[:6]] == [0.2, 0.4, 0.8, 0.8, 0.8, 0.8]  # doubling, capped
        assert all(e["level"] == "error" and "login refused" in e["message"] for e in steps)
        logins = _logins(emu)
        assert len(steps) <= len(logins) <= len(steps) + 1  # one login per step (the next may be under way)
        gaps = [b["ts"] - a["ts"] for a, b in zip(logins, logins[1:], strict=False)]
        assert all(gap >= step["retry_in"] * 0.9 for gap, step in zip(gaps, steps, strict=False)), gaps
        assert daemon.proc is not None and daemon.proc.poll() is None
        text = wait_for(lambda: "authentication failed since " in (t := _status_text(env, cfg)) and t)
        assert "login refused" in str(text), text
        snap = wait_for(lambda: (d := _daemon_status(env, cfg)).get("auth") and d)
        assert snap["auth"]["attempts"] >= 6 and "login refused" in snap["auth"]["reason"]
        assert not sends(emu)

        # 2. The password file corrected, SIGHUP: the jobs start and the file goes.
        password_file.write_text(ALICE[1] + "\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("auth_ok")
        daemon.wait_event("started")
        wait_for(lambda: arrived(emu.private_path("in/one.txt"), b"first file"))
        wait_for(lambda: (d := _daemon_status(env, cfg)).get("jobs") and d.get("auth") is None)

        # 3. The password changed on the platform while running: a new file waits, queued, not failed.
        emu.config.users[0] = EmulatorUser(ALICE[0], "Changed#2027", 5, 101)
        emu.expire_tokens()
        before = len(daemon.events("auth_failed"))
        (src / "two.txt").write_bytes(b"second file")
        wait_for(lambda: len(daemon.events("auth_failed")) > before, timeout=30)
        (src / "one.txt").unlink()  # a delete pass would need a login too: it waits as well
        logins_before = len(_logins(emu))
        wait_for(lambda: "authentication failed since " in _status_text(env, cfg))
        snap = wait_for(lambda: (d := _daemon_status(env, cfg)).get("auth") and d["jobs"][0]["queued"] and d)
        job = snap["jobs"][0]
        assert (job["queued"], job["active"], job["failed"]) == (1, 0, 0), job  # paused: queued, not failed
        assert not arrived(emu.private_path("in/two.txt"), b"second file")
        assert emu.private_path("in/one.txt").exists() and not daemon.events("delete_failed")
        steps = len(daemon.events("auth_failed")) - before
        assert len(_logins(emu)) - logins_before <= steps + 1  # only the paced attempts log in

        # 4. The password file updated (no signal): the daemon notices and resumes on its own.
        password_file.write_text("Changed#2027\n")
        wait_for(lambda: arrived(emu.private_path("in/two.txt"), b"second file"), timeout=30)
        wait_for(lambda: not emu.private_path("in/one.txt").exists())  # the delete went once resumed
        assert len(daemon.events("auth_ok")) == 2
        assert daemon.stop() == 0
    finally:
        daemon.__exit__()
    _only_json_lines(log)


def test_a_chunk_api_outage_sends_the_daemon_to_sftp_for_a_while_only(tmp_path: Path) -> None:
    with EmulatorThread(tmp_path / "platform", sftp=True) as emu:
        env = user_env(emu, tmp_path)
        src = tmp_path / "src"
        src.mkdir()
        cfg = tmp_path / "hubsync.toml"
        cfg.write_text(daemon_config(tmp_path / "state", [{"source": str(src), "remote": "private:/in",
                                                           "settle_seconds": 0.2}],
                                     transfer={"small_file_threshold": "1KiB", "sftp_fallback_seconds": 15}))
        log = tmp_path / "daemon.log"
        emu.faults.chunk_api_off = True  # the proxy hides checkFileExist/uploadFile/mergeFile (404)
        with DaemonProcess(cfg, env, log) as daemon:
            write_random(src / "during.bin", 10_000, seed=1)
            sent = daemon.wait_event("sent", lambda e: e["path"] == "during.bin")
            assert sent["transport"] == "sftp"
            switched = wait_for(lambda: _daemon_status(env, cfg)["jobs"][0]["switched"])
            assert switched["until"] - switched["since"] == 15 and switched["fallback"] == "sftp"  # type: ignore[index]
            text = _status_text(env, cfg)  # within the 15 s (long enough for a loaded machine)
            assert "http unavailable since" in text and "using sftp until" in text and "404" in text, text

            emu.faults.chunk_api_off = False  # the proxy is fixed: after the hold, HTTP again
            wait_for(lambda: _daemon_status(env, cfg)["jobs"][0]["switched"] is None, timeout=40)
            write_random(src / "after.bin", 10_000, seed=2)
            sent = daemon.wait_event("sent", lambda e: e["path"] == "after.bin")
            assert sent["transport"] == "http"
            assert [e for e in sends(emu, "after.bin") if e["path"].endswith("/mergeFile")]
            assert daemon.events("info") and any("trying http again" in e["message"] for e in daemon.events("info"))
            assert md5_of(emu.private_path("in/during.bin")) == md5_of(src / "during.bin")
            assert md5_of(emu.private_path("in/after.bin")) == md5_of(src / "after.bin")
            assert daemon.stop() == 0
        _only_json_lines(log)
