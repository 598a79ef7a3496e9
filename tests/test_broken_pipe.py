"""No traceback in front of a user: a reader that goes away (`| head -1`) ends hubsync quietly
(exit 141), and a bug shows one line (exit 1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread

from .conftest import REPO, hubsync_cmd, run_cli


def first_line_then_close(args: list[str], env: dict[str, str]) -> tuple[bytes, int, str]:
    """Run hubsync with stdout on a real pipe, read one line and close the pipe, as `head -1` does."""
    proc = subprocess.Popen(hubsync_cmd(*args), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    return first, proc.wait(timeout=120), stderr


def test_closed_stdout_exits_quietly(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(600):  # far more output than a pipe buffer (64 KiB) holds
        (src / f"f{i:04}-{'x' * 150}.txt").write_text(str(i))
    assert run_cli(["sync", str(src), "private:/d"], hub_env).returncode == 0
    for args in (["ls", "private:/d"], ["--json", "ls", "private:/d"],
                 ["--json", "sync", str(src), "private:/d"],  # all skipped: one event line each
                 ["sync", str(src), "private:/e"]):
        first, code, stderr = first_line_then_close(args, hub_env)
        assert first, args
        assert code == 141, (args, code, stderr)
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr


def test_a_bug_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    from agent import cli, status

    def broken(config: object, out: object) -> int:
        raise AttributeError("'NoneType' object has no attribute 'rows'")  # what a bug looks like

    monkeypatch.setattr(status, "cmd_status", broken)
    monkeypatch.setenv("HUBSYNC_STATE_DIR", str(tmp_path))
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "AttributeError" in err, err
    assert "Traceback" not in err
