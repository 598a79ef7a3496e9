"""The systemd units: required hardening present, no secret inside, `systemd-analyze verify` clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

UNITS = REPO / "systemd"
HUBSYNC = Path(sys.executable).with_name("hubsync")


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_server_unit_is_hardened_and_holds_no_secret() -> None:
    d = directives(UNITS / "hubsync.service")
    for key, value in {"Type": "notify", "Restart": "on-failure", "NoNewPrivileges": "yes",
                       "ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateTmp": "yes",
                       "ProtectKernelTunables": "yes", "MemoryDenyWriteExecute": "yes",
                       "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "User": "hubsync",
                       "StateDirectory": "hubsync"}.items():
        assert d.get(key) == [value], key
    for key in ("WatchdogSec", "RestartSec", "ReadWritePaths", "LoadCredential"):
        assert key in d, key
    assert "HUBSYNC_PASSWORD_FILE=%d/hubsync-password" in d["Environment"]
    for unit in ("hubsync.service", "hubsync-user.service"):
        text = (UNITS / unit).read_text()
        assert "HUBSYNC_PASSWORD=" not in text.replace("# HUBSYNC_PASSWORD=", "") and "TOKEN=ey" not in text
    user = directives(UNITS / "hubsync-user.service")
    assert user["Type"] == ["notify"] and "WatchdogSec" in user and user["EnvironmentFile"][0].startswith("-")


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    copies = []
    for unit in ("hubsync.service", "hubsync-user.service"):
        # Verify checks that ExecStart exists: point it at this checkout's hubsync.
        text = (UNITS / unit).read_text().replace("/usr/local/bin/hubsync", str(HUBSYNC))
        text = text.replace("%h/.local/bin/hubsync", str(HUBSYNC))
        copies.append(tmp_path / unit)
        copies[-1].write_text(text)
    result = _verify(*copies)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    # The check can fail: a misspelt key is reported.
    broken = tmp_path / "broken.service"
    broken.write_text(copies[0].read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    flagged = _verify(broken)
    assert "NoNewPrivilege" in flagged.stdout + flagged.stderr
