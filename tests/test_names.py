"""Names never escape (issue 11, cases 1-3): `hubsync sync` as a user runs it, HTTP and SFTP.

The emulator runs with `lenient_paths` where it matters: it then takes `\\` and `..` as a lax
platform would, so what keeps the files inside the target is the client's own refusal.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.testing import EmulatorThread

from .conftest import json_lines, md5_of, run_cli, summary_of


@pytest.fixture
def emu(emu_sftp: EmulatorThread) -> EmulatorThread:
    return emu_sftp


@pytest.fixture
def env(sftp_env: dict[str, str]) -> dict[str, str]:
    return sftp_env


def storage_files(emu: EmulatorThread) -> dict[str, bytes]:
    """Every file in every space, with its bytes."""
    spaces = emu.root / "spaces"
    return {p.relative_to(spaces).as_posix(): p.read_bytes() for p in spaces.rglob("*") if p.is_file()}


def transport_args(transport: str, emu: EmulatorThread) -> list[str]:
    if transport == "auto":
        emu.faults.chunk_api_off = True  # auto mode switches to SFTP
    return ["--transport", transport]


@pytest.mark.parametrize("transport", ["sftp", "http", "auto"])
def test_a_backslash_dot_dot_name_never_writes_outside_the_target(emu: EmulatorThread, env: dict, tmp_path: Path,
                                                                  transport: str) -> None:
    """Case 1: `..\\important.db` into private:/projects/incoming overwrote private:/projects/important.db."""
    important = emu.private_path("projects/important.db")
    important.parent.mkdir(parents=True)
    important.write_bytes(b"precious")
    emu.private_path("projects/incoming").mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "..\\important.db").write_bytes(b"evil")
    (src / "ok.txt").write_bytes(b"fine")
    emu.faults.lenient_paths = True
    before = storage_files(emu)
    result = run_cli(["--json", "sync", *transport_args(transport, emu), str(src), "private:/projects/incoming"], env)
    summary = summary_of(result)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert [f["path"] for f in summary["failures"]] == ["..\\important.db"]
    assert "'\\'" in summary["failures"][0]["error"]
    assert important.read_bytes() == b"precious"
    after = storage_files(emu)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {"private/5/projects/incoming/ok.txt": b"fine"}
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_a_backslash_never_collides_with_a_slash(emu: EmulatorThread, env: dict, tmp_path: Path,
                                                 transport: str) -> None:
    """Case 2: `a\\b/f.txt` and `a/b/f.txt` both went to a/b/f.txt, both reported done."""
    src = tmp_path / "src"
    (src / "a\\b").mkdir(parents=True)
    (src / "a" / "b").mkdir(parents=True)
    (src / "a\\b" / "f.txt").write_bytes(b"from the backslash folder")
    (src / "a" / "b" / "f.txt").write_bytes(b"from the real folder")
    emu.faults.lenient_paths = True
    result = run_cli(["--json", "sync", "--transport", transport, str(src), "private:/c"], env)
    summary = summary_of(result)
    assert result.returncode == 1 and summary["files_sent"] == 1 and summary["files_failed"] == 1
    assert [f["path"] for f in summary["failures"]] == ["a\\b/f.txt"]
    assert emu.private_path("c/a/b/f.txt").read_bytes() == b"from the real folder"
    assert not emu.private_path("c/a\\b").exists()
    done = [e["path"] for e in json_lines(result.stdout) if e.get("event") == "done"]
    assert done == ["a/b/f.txt"]


def test_a_refused_name_is_neither_sent_nor_deleted_with_delete(emu: EmulatorThread, env: dict, tmp_path: Path) -> None:
    """Case 2: with --delete, `win\\path/report.txt` was uploaded to win/path/report.txt, then deleted."""
    src = tmp_path / "src"
    (src / "win\\path").mkdir(parents=True)
    (src / "win\\path" / "report.txt").write_bytes(b"report")
    (src / "keep.txt").write_bytes(b"keep")
    (src / "keep2.txt").write_bytes(b"keep too")
    emu.private_path("d").mkdir(parents=True)
    emu.private_path("d/old.txt").write_bytes(b"old")
    emu.faults.lenient_paths = True
    result = run_cli(["--json", "sync", "--delete", str(src), "private:/d"], env)
    summary = summary_of(result)
    assert result.returncode == 1, result.stderr[-2000:]
    assert [f["path"] for f in summary["failures"]] == ["win\\path/report.txt"]
    events = json_lines(result.stdout)
    assert [e["remote"] for e in events if e.get("event") == "deleted"] == ["private:/d/old.txt"]
    assert not [e for e in events if e.get("event") == "done" and "report" in e["path"]]
    assert sorted(p.relative_to(emu.private_path("d")).as_posix()
                  for p in emu.private_path("d").rglob("*")) == ["keep.txt", "keep2.txt"]


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_names_that_are_not_utf8_or_hold_control_characters_fail_alone(emu: EmulatorThread, env: dict,
                                                                       tmp_path: Path, transport: str) -> None:
    """Case 3: b'\\xff\\xfe.bin' crashed every run (UnicodeEncodeError); a newline or CR in a small
    file's name aborted the run ("Forbidden control character")."""
    src = tmp_path / "src"
    src.mkdir()
    bad = {os.fsencode(src) + b"/\xff\xfe.bin": "\\xff\\xfe.bin", os.fsencode(src / "line\nbreak.txt"): "line\\nbreak.txt",
           os.fsencode(src / "cr\r.txt"): "cr\\r.txt", os.fsencode(src) + b"/dir\xff": None}
    for path in bad:
        if path.endswith(b"dir\xff"):
            os.mkdir(path)
            with open(path + b"/inner.txt", "wb") as f:
                f.write(b"inner")
        else:
            with open(path, "wb") as f:
                f.write(b"bad name")
    (src / "good.txt").write_bytes(b"good")
    (src / "sub").mkdir()
    (src / "sub" / "also good.txt").write_bytes(b"also good")
    expected = {"\\xff\\xfe.bin", "line\\nbreak.txt", "cr\\r.txt", "dir\\xff/inner.txt"}
    for attempt in range(2):  # the re-run too: the journal holds the refusals now
        result = run_cli(["--json", "sync", "--transport", transport, str(src), "private:/u"], env)
        summary = summary_of(result)
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
        assert {f["path"] for f in summary["failures"]} == expected
        assert summary["files_failed"] == 4 and summary["files_total"] == 6
        assert summary["files_sent"] + summary["files_skipped"] == 2 and (attempt or summary["files_sent"] == 2)
        failed = {e["path"] for e in json_lines(result.stdout) if e.get("event") == "failed"}
        assert failed == expected
        assert "Traceback" not in result.stderr
    assert md5_of(emu.private_path("u/good.txt")) == md5_of(src / "good.txt")
    assert emu.private_path("u/sub/also good.txt").read_bytes() == b"also good"
    assert sorted(p.name for p in emu.private_path("u").iterdir()) == ["good.txt", "sub"]

    text = run_cli(["sync", "--transport", transport, str(src), "private:/u"], env)  # text output, not JSON
    assert text.returncode == 1 and "Traceback" not in text.stderr
    for name in expected:
        assert name in text.stdout + text.stderr

    status = run_cli(["--json", "status"], env)
    assert status.returncode == 0, status.stderr
    errors = json_lines(status.stdout)[-1]["errors"]
    assert {e["path"].rsplit("/src/", 1)[1] for e in errors} == expected
    assert all(e["error"].startswith("not sent:") for e in errors)
    plain = run_cli(["status"], env)
    assert plain.returncode == 0 and "Traceback" not in plain.stderr
    assert "\\xff\\xfe.bin" in plain.stdout and "2 done" in plain.stdout and "4 failed" in plain.stdout


@pytest.mark.parametrize("via", ["staged", "direct"])
def test_datahub_versions_refuse_the_same_names(emu: EmulatorThread, env: dict, tmp_path: Path, via: str) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "odd-names")
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "ok.txt").write_bytes(b"ok")
    (src / "..\\up.txt").write_bytes(b"up")
    emu.faults.lenient_paths = True
    result = run_cli(["--json", "sync", "--via", via, str(src), "dataset:odd-names@v1:/in"], env)
    summary = summary_of(result)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert [f["path"] for f in summary["failures"]] == ["..\\up.txt"] and summary["files_sent"] == 1
    version = emu.datahub_path("dataset", asset_id, v1)
    assert sorted(p.relative_to(version).as_posix() for p in version.rglob("*") if p.is_file()) == ["in/a/ok.txt"]
    assert not [p for p in emu.private_path("").rglob("*up.txt")]  # not staged anywhere either


@pytest.mark.parametrize("remote", ["private:/projects/../etc", "public:/a/./b", "dataset:x@v1:/a/../b",
                                    "private:/a\\b"])
def test_a_remote_with_dot_dot_or_backslash_is_a_usage_error(env: dict, tmp_path: Path, remote: str) -> None:
    (tmp_path / "src").mkdir()
    result = run_cli(["sync", str(tmp_path / "src"), remote], env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "component" in result.stderr or "'\\'" in result.stderr, result.stderr


@pytest.mark.parametrize("transport", ["http", "sftp"])
def test_user_files_ending_in_hubsync_part_are_sent_and_ours_are_left_alone(emu: EmulatorThread, env: dict,
                                                                            tmp_path: Path, transport: str) -> None:
    """A user's `x.hubsync-part` was skipped without a word; only hubsync's own tagged part names are special."""
    from transfer import remotepath
    from transfer.agenttag import load_tag

    src = tmp_path / "src"
    src.mkdir()
    for name in ("model.bin.hubsync-part", ".model.bin.hubsync-part"):
        (src / name).write_bytes(name.encode())
    ours = remotepath.part_name("big.bin", load_tag(tmp_path / "state"))  # the CLI's state dir
    emu.private_path("p").mkdir(parents=True)
    emu.private_path(f"p/{ours}").write_bytes(b"an upload of ours in progress")
    emu.private_path("p/stale.hubsync-part").write_bytes(b"a user's file, gone locally")
    result = run_cli(["--json", "sync", "--delete", "--transport", transport, str(src), "private:/p"], env)
    summary = summary_of(result)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary["files_sent"] == 2
    for name in ("model.bin.hubsync-part", ".model.bin.hubsync-part"):
        assert emu.private_path(f"p/{name}").read_bytes() == name.encode()
    deleted = [e["remote"] for e in json_lines(result.stdout) if e.get("event") == "deleted"]
    assert deleted == ["private:/p/stale.hubsync-part"]
    assert emu.private_path(f"p/{ours}").exists()


def test_a_refused_file_renamed_to_a_good_name_leaves_status(emu: EmulatorThread, env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad\tname.txt").write_bytes(b"x")
    assert run_cli(["sync", str(src), "private:/r"], env).returncode == 1
    errors = json_lines(run_cli(["--json", "status"], env).stdout)[-1]["errors"]
    assert [e["path"].rsplit("/", 1)[1] for e in errors] == ["bad\\tname.txt"]
    os.rename(src / "bad\tname.txt", src / "good name.txt")
    assert run_cli(["sync", str(src), "private:/r"], env).returncode == 0
    assert json_lines(run_cli(["--json", "status"], env).stdout)[-1]["errors"] == []
    assert emu.private_path("r/good name.txt").read_bytes() == b"x"
