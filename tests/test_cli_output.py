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
