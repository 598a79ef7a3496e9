"""The command line as a newcomer meets it: --version, --help, option errors, the default config file."""

from __future__ import annotations

import argparse
import os
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
