"""Configuration errors, exit codes and secrets kept out of every output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import load_config, parse_size
from agent.remotes import DatahubRemote, FileRemote, parse_remote
from emulator.testing import EmulatorThread
from transfer.errors import ConfigError
from transfer.models import Space

from .conftest import ALICE, KEY, run_cli, summary_of, write_random


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "toml,key",
    [
        ('[platform]\nurl = "ftp://x"\n', "platform.url"),
        ('[platform]\npassword_key = "short"\n', "platform.password_key"),
        ('[transfer]\nchunk_size = "12 parsecs"\n', "transfer.chunk_size"),
        ('[transfer]\nchunk_size = "1KiB"\n', "transfer.chunk_size"),
        ("[transfer]\ntransfers = 0\n", "transfer.transfers"),
        ('[transfer]\ntransport = "carrier-pigeon"\n', "transfer.transport"),
        ("[transfer]\nchunks_per_file = -1\n", "transfer.chunks_per_file"),
        ('[transfer]\nbandwidth_limit = "fast"\n', "transfer.bandwidth_limit"),
        ("[sftp]\nallow_password_reset = \"maybe\"\n", "sftp.allow_password_reset"),
        ("[daemon]\nmax_delete = -5\n", "daemon.max_delete"),
        ("[[watch]]\nremote = \"private:/x\"\n", "watch.0.source"),
        ('[[watch]]\nsource = "/d"\nremote = "private:/x"\nsettle_seconds = -1\n', "watch.0.settle_seconds"),
        ("[transfer]\nturbo = true\n", "transfer.turbo"),
        ("[nonsense]\n", "nonsense"),
    ],
)
def test_every_invalid_key_is_named(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "c.toml", toml), env={})
    assert key in str(err.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path / "c.toml", "[platform\n"), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", env={})


def test_environment_overrides_file_and_secret_file_warning(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[platform]\nurl = "https://a.example"\npassword = "s3cr3t-pw"\n', mode=0o644)
    config, warnings = load_config(cfg, env={"HUBSYNC_URL": "https://b.example"})
    assert config.platform.url == "https://b.example"
    assert warnings and "chmod 600" in warnings[0] and str(cfg) in warnings[0]
    cfg.chmod(0o600)
    assert load_config(cfg, env={})[1] == []
    assert "s3cr3t-pw" not in repr(config) and config.password() == "s3cr3t-pw"


def test_sizes_and_remotes() -> None:
    assert parse_size("8MiB") == 8 << 20 and parse_size("20MB") == 20_000_000 and parse_size(123) == 123
    assert parse_remote("private:/a//b/") == FileRemote(Space.PRIVATE, "a/b")
    assert parse_remote("public:") == FileRemote(Space.PUBLIC, "")
    assert parse_remote("dataset:cifar@v3:/train") == DatahubRemote("dataset", "cifar", "v3", "train")
    for bad in ("s3://x", "private:/a/../b", "dataset:cifar", "weights:x@v1"):
        with pytest.raises(ConfigError):
            parse_remote(bad)


def test_exit_codes(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    assert run_cli(["login"], hub_env).returncode == 0
    assert run_cli(["login"], {**hub_env, "HUBSYNC_PASSWORD": "nope"}).returncode == 3
    assert run_cli(["login"], {**hub_env, "HUBSYNC_PASSWORD_KEY": "fedcba9876543210"}).returncode == 3
    assert run_cli(["sync", str(tmp_path), "nowhere:/x"], hub_env).returncode == 2
    assert run_cli(["sync", str(tmp_path / "missing"), "private:/x"], hub_env).returncode == 2
    bad = write(tmp_path / "bad.toml", "[transfer]\ntransfers = 0\n")
    result = run_cli(["--config", str(bad), "login"], hub_env)
    assert result.returncode == 2 and "transfer.transfers" in result.stderr
    no_creds = {k: v for k, v in hub_env.items() if k not in ("HUBSYNC_PASSWORD", "HUBSYNC_USERNAME")}
    assert run_cli(["login"], no_creds).returncode == 2
    assert run_cli(["bogus-command"], hub_env).returncode == 2


def test_secrets_never_appear_in_output_logs_or_journal(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 3 << 20)
    write_random(src / "b.txt", 100)
    emu.faults.seed = 5
    emu.faults.chunk_error_rate = 0.3
    emu.faults.token_lifetime = 2
    outputs = []
    for args in (["-v", "-v", "login"], ["-vv", "--json", "sync", str(src), "private:/s", "--chunk-size", "1MiB"],
                 ["-vv", "sync", str(src), "private:/s2"], ["status"], ["--json", "status"], ["ls", "private:/s"]):
        result = run_cli(args, hub_env)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert summary_of(run_cli(["--json", "sync", str(src), "private:/s"], hub_env))["files_failed"] == 0
    tokens = set()
    import json

    for entry in emu.log_entries():
        assert ALICE[1] not in json.dumps(entry, ensure_ascii=False)
    from transfer.auth import encrypt_password

    cipher = encrypt_password(ALICE[1], KEY)
    journal = (Path(hub_env["HUBSYNC_STATE_DIR"]) / "journal.sqlite3").read_bytes()
    everything = "\n".join(outputs) + emu.config.log_path.read_text()
    for secret in (ALICE[1], KEY, cipher):
        assert secret not in everything
        assert secret.encode() not in journal
    for text in outputs:
        for word in text.replace('"', " ").split():
            if word.count(".") == 2 and word.startswith("eyJ"):
                tokens.add(word)
    assert not tokens, "a JWT was printed"
    assert os.path.exists(hub_env["HUBSYNC_STATE_DIR"])


SECRET = "hunter2-Pa55word!"  # 17 bytes: not a valid AES key either


@pytest.mark.parametrize(
    "toml,key",
    [
        (f'[platform]\npasswd = "{SECRET}"\n', "platform.passwd"),
        (f'[platform]\nurl_backup = "{SECRET}"\n', "platform.url_backup"),  # [platform]: never echoed
        (f'[transfer]\napi_token = "{SECRET}"\n', "transfer.api_token"),
        (f'[sftp]\nprivate_key = "{SECRET}"\n', "sftp.private_key"),
        (f'[daemon]\ncredentials = "{SECRET}"\n', "daemon.credentials"),
        (f'[vault]\nsecret = "{SECRET}"\n', "vault"),  # a whole unknown table
        (f'platform = "{SECRET}"\n', "platform"),
        (f'[platform]\npassword_key = "{SECRET}"\n', "platform.password_key"),  # known, wrong length
    ],
)
def test_config_errors_never_echo_a_secret(tmp_path: Path, toml: str, key: str) -> None:
    cfg = write(tmp_path / "c.toml", toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSYNC_")}
    env["HUBSYNC_STATE_DIR"] = str(tmp_path / "state")
    result = run_cli(["--config", str(cfg), "--json", "login"], env, timeout=60)  # refused before any call
    assert result.returncode == 2, result.stderr
    assert key in result.stderr, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_config_errors_show_values_of_ordinary_keys(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[transfer]\nturbo = "warp-9"\ntransport = "carrier-pigeon"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSYNC_")}
    result = run_cli(["--config", str(cfg), "status"], env, timeout=60)
    assert result.returncode == 2
    assert "transfer.turbo = 'warp-9': unknown key" in result.stderr
    assert "transfer.transport = 'carrier-pigeon'" in result.stderr
