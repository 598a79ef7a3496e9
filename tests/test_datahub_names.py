"""Datahub runs speak names, not ids, and leave no emptied staging folder behind (issue 14)."""

from __future__ import annotations

from pathlib import Path

from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.datahub import DatahubApi
from transfer.destinations.chunked import ChunkedDestination
from transfer.destinations.datahub import STAGING_ROOT, StagedDatahubDestination
from transfer.folders import RemoteFolders
from transfer.models import DatahubSpace
from transfer.pacer import Pacer

from .clocks import FakeClock
from .conftest import ALICE, KEY, json_lines, run_cli, summary_of, write_random


def test_events_lines_and_summary_name_the_asset_and_version(emu: EmulatorThread, hub_env: dict,
                                                               tmp_path: Path) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "cifar")
    src = tmp_path / "src"
    write_random(src / "train" / "a.jpg", 3000, seed=1)
    write_random(src / "train" / "b\\c.jpg", 10, seed=2)  # a \ in a name: refused, named as failed
    result = run_cli(["--json", "sync", str(src), "dataset:cifar@v2", "--create-version", "v2"], hub_env)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    events = json_lines(result.stdout)
    version_id = summary_of(result)["version_id"]
    assert [e["message"] for e in events if e["event"] == "info"] == ["created version v2 of dataset cifar (from v1)"]
    done = [e for e in events if e["event"] == "done"]
    assert [(e["path"], e["remote"]) for e in done] == [("train/a.jpg", "dataset:cifar@v2:/train/a.jpg")]
    failed = [e for e in events if e["event"] == "failed"]
    assert [(e["path"], e["remote"]) for e in failed] == [("train/b\\c.jpg", "dataset:cifar@v2:/train/b\\c.jpg")]
    assert summary_of(result)["remote"] == "dataset:cifar@v2"
    # The ids are in the summary's own fields only, never in what names a file or the remote.
    for event in events:
        shown = {k: v for k, v in event.items() if k not in ("asset_id", "version_id")}
        assert asset_id not in str(shown) and version_id not in str(shown) and v1 not in str(shown), event
    # Text (not a terminal): the sent line and the FAILED line name the version too.
    write_random(src / "train" / "d.jpg", 500, seed=3)
    text = run_cli(["sync", str(src), "dataset:cifar@v2"], hub_env)
    assert text.returncode == 1, text.stdout[-2000:] + text.stderr[-2000:]
    assert "sent    train/d.jpg -> dataset:cifar@v2:/train/d.jpg" in text.stdout
    assert "FAILED  train/b\\c.jpg" in text.stdout + text.stderr
    assert asset_id not in text.stdout + text.stderr and version_id not in text.stdout + text.stderr
    note = run_cli(["sync", str(src), "dataset:cifar@v3", "--create-version", "v3", "--parent", "v1"], hub_env)
    assert "created version v3 of dataset cifar (from v1)" in note.stderr


def test_a_staged_run_leaves_no_staging_folder(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    emu.datahub_create_asset("model", "gpt2", ("master",))
    src = tmp_path / "src"
    for i, rel in enumerate(["w.bin", "sub/deep/x.bin", "sub/y.bin"]):
        write_random(src / rel, 70_000 + i, seed=i)
    # Another asset's staging with a file still in it (another run's, say): not ours to remove.
    other = emu.private_path(f"{STAGING_ROOT}/other/version/kept.bin")
    other.parent.mkdir(parents=True)
    other.write_bytes(b"x")
    result = run_cli(["--json", "sync", str(src), "model:gpt2@master", "--via", "staged"], hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary_of(result)["files_sent"] == 3
    assert sorted(p.name for p in emu.private_path(STAGING_ROOT).iterdir()) == ["other"]
    assert other.read_bytes() == b"x"
    other.unlink()
    other.parent.rmdir()  # `other` is empty now, but it is not this run's: left alone
    again = run_cli(["--json", "sync", str(src), "model:gpt2@master", "--via", "staged"], hub_env)
    assert summary_of(again)["files_skipped"] == 3
    assert sorted(p.name for p in emu.private_path(STAGING_ROOT).iterdir()) == ["other"]
    (emu.private_path(STAGING_ROOT) / "other").rmdir()
    write_random(src / "new.bin", 100, seed=9)
    third = run_cli(["--json", "sync", str(src), "model:gpt2@master", "--via", "staged"], hub_env)
    assert summary_of(third)["files_sent"] == 1
    assert not emu.private_path(STAGING_ROOT).exists()  # the private space holds no staging folder at all


async def test_a_staging_folder_that_cannot_be_removed_is_a_warning(emu: EmulatorThread) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "coco")
    space = DatahubSpace("dataset", asset_id, v1, "coco", "v1")
    emptied = emu.private_path(f"{STAGING_ROOT}/{asset_id}/{v1}/train/deep")
    emptied.mkdir(parents=True)  # what a run leaves once every staged copy is imported and deleted
    pacer = Pacer(give_up_after=5, base_delay=0.001, max_delay=0.01, clock=FakeClock())
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY, pacer=pacer) as api:
        await api.user()
        staged = StagedDatahubDestination(DatahubApi(api), ChunkedDestination(api, RemoteFolders(api)))
        emu.faults.update({"busy_rate": 1.0, "max_consecutive_errors": 10_000})
        kept = await staged.drop_staging(space)
        assert kept is not None and kept.startswith(f"staging folder private:/{STAGING_ROOT}/{asset_id}/{v1} kept:")
        assert emptied.is_dir()
        emu.faults.update({"busy_rate": 0.0})
        assert await staged.drop_staging(space) is None
    assert not emu.private_path(STAGING_ROOT).exists()
