"""`hubsync sync` into datahub asset versions, staged and direct, against the emulator."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from agent.scanner import Excludes, scan
from emulator.testing import EmulatorThread
from transfer.api import PlatformClient
from transfer.datahub import DatahubApi, Resolver
from transfer.destinations.chunked import ChunkedDestination
from transfer.destinations.datahub import StagedDatahubDestination
from transfer.engine import Engine, SendItem
from transfer.errors import AssetNotFound, ParentNotApplicable, VersionNotFound
from transfer.folders import RemoteFolders
from transfer.journal import Journal
from transfer.models import DatahubSpace
from transfer.remotepath import RemoteFolder
from transfer.scope import RunScope

from .conftest import (
    ALICE,
    KEY,
    REPO,
    hubsync_cmd,
    json_lines,
    md5_of,
    run_cli,
    summary_of,
    user_env,
    wait_for,
    write_random,
)

MiB = 1 << 20


def make_tree(root: Path, big: int = 50 * MiB + 4321) -> dict[str, int]:
    sizes = {
        "empty.txt": 0,
        "readme.md": 1234,
        "train/图片/猫 1.jpg": 300_001,
        "train/labels/a.csv": 2 * MiB + 5,
        "val/deep/er/x.bin": MiB,
        "weights/model.bin": big,
    }
    for i, (rel, size) in enumerate(sizes.items()):
        write_random(root / rel, size, seed=100 + i)
    return sizes


def staged_files(emu: EmulatorThread) -> list[Path]:
    staging = emu.private_path(".hubsync-staging")
    return [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


def datahub_chunks(emu: EmulatorThread) -> list[dict]:
    """Chunks the platform took in (refused or cut-off requests carry no index)."""
    return [e for e in emu.log_entries() if e["path"].endswith("/datahub/data/uploadFile") and "index" in e]


def file_chunks(emu: EmulatorThread) -> list[dict]:
    return [e for e in emu.log_entries() if e["path"] == "/api/file/file/uploadFile" and "index" in e]


@pytest.mark.parametrize("kind", ["dataset", "model"])
@pytest.mark.parametrize("via", ["staged", "direct"])
def test_fill_a_version(emu: EmulatorThread, hub_env: dict, tmp_path: Path, kind: str, via: str) -> None:
    asset_id, (v1,) = emu.datahub_create_asset(kind, "cifar-10")
    src = tmp_path / "src"
    sizes = make_tree(src)
    result = run_cli(["--json", "sync", str(src), f"{kind}:cifar-10@v1", "--via", via, "--chunk-size", "4MiB"],
                     hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = summary_of(result)
    assert summary["files_sent"] == len(sizes) and summary["files_failed"] == 0
    assert summary["transports"] == [f"datahub-{via}"]
    for rel in sizes:
        assert md5_of(emu.datahub_path(kind, asset_id, v1, rel)) == md5_of(src / rel), rel
    assert staged_files(emu) == []
    if via == "direct":
        assert not file_chunks(emu)  # nothing went through the private space
        # one submitId per file; each chunk index sent once
        per_submit = Counter((e["submitId"], e["index"]) for e in datahub_chunks(emu))
        assert max(per_submit.values()) == 1
        assert len({e["submitId"] for e in datahub_chunks(emu)}) == len(sizes)
    else:
        assert not datahub_chunks(emu)
        assert not emu.private_path(f".hubsync-staging/{asset_id}/{v1}").exists()  # dropped at the end
    # a second run finds everything done: no calls that send
    again = run_cli(["--json", "sync", str(src), f"{kind}:cifar-10@v1", "--via", via], hub_env)
    assert summary_of(again)["files_skipped"] == len(sizes)
    listing = run_cli(["--json", "ls", f"{kind}:cifar-10@v1:/train"], hub_env)
    assert listing.returncode == 0, listing.stderr
    assert {o["name"] for o in json_lines(listing.stdout) if o["event"] == "entry"} == {"图片", "labels"}


KiB64 = 64 << 10
AWKWARD_SIZES = (1, KiB64 - 1, KiB64, KiB64 + 1, 3 * KiB64 + 17)


def test_direct_fills_a_version_for_sizes_around_the_chunk_size(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    """Every chunk states its own length (the strict emulator refuses any other), with 10 % 500s."""
    asset_id, (master,) = emu.datahub_create_asset("model", "gpt2", ("master",))
    src = tmp_path / "tree"
    for size in AWKWARD_SIZES:
        write_random(src / f"s{size}.bin", size, seed=size)
    emu.faults.update({"seed": 2, "chunk_error_rate": 0.1})  # seed 2: the 3rd and 4th chunk calls fail
    result = run_cli(["--json", "sync", str(src), "model:gpt2@master", "--via", "direct", "--chunk-size", "64KiB"],
                     hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary_of(result)["files_sent"] == len(AWKWARD_SIZES)
    for size in AWKWARD_SIZES:
        assert md5_of(emu.datahub_path("model", asset_id, master, f"s{size}.bin")) == md5_of(src / f"s{size}.bin")
    sent = datahub_chunks(emu)
    assert any(e.get("fault") == "chunk_error" for e in emu.log_entries())  # the 500s happened
    assert all(e["ok"] for e in sent if not e.get("fault")), [e for e in sent if not e["ok"]][:3]
    last = {e["filePath"]: e["chunk_bytes"] for e in sent if e["ok"] and e["index"] == e["total"] - 1}
    assert last == {f"s{size}.bin": (size - 1) % KiB64 + 1 for size in AWKWARD_SIZES}


@pytest.mark.parametrize("via", ["staged", "direct"])
def test_sigkill_then_resume_sends_no_acknowledged_chunk_again(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path, via: str
) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("model", "bert")
    size, chunk = 96 * MiB + 17, 4 * MiB
    src = write_random(tmp_path / "src" / "weights.bin", size, seed=7)
    chunks = datahub_chunks if via == "direct" else file_chunks
    emu.faults.latency = 0.02
    args = ["--json", "sync", str(src.parent), "model:bert@v1", "--via", via, "--chunk-size", "4MiB"]
    proc = subprocess.Popen(hubsync_cmd(*args), env=hub_env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: sum(1 for e in chunks(emu) if e["ok"]) >= 10, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {e["index"] for e in chunks(emu) if e["ok"]}
    emu.faults.latency = 0.0
    emu.clear_log()
    result = run_cli(args, hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert md5_of(emu.datahub_path("model", asset_id, v1, "weights.bin")) == md5_of(src)
    again = [e["index"] for e in chunks(emu) if e["index"] in before]
    # Only the chunks in flight at the kill (acknowledged by the platform, not yet by the
    # journal) may be sent again: at most chunks_per_file (4) of them.
    assert len(again) <= 4, (sorted(before), again)
    total = -(-size // chunk)
    assert len({e["index"] for e in chunks(emu)} | before) == total
    if via == "direct":
        assert len({e["submitId"] for e in chunks(emu)}) == 1  # the same upload, resumed


async def test_crash_after_staging_resumes_at_the_import(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "imagenet")
    src = tmp_path / "src"
    for i in range(3):
        write_random(src / f"part{i}" / f"f{i}.bin", 2 * MiB + i, seed=i)
    space = DatahubSpace("dataset", asset_id, v1)
    files = scan(src, Excludes([])).files
    items = [SendItem(f, RemoteFolder(space, "in").target(f.rel)) for f in files]
    journal_file = tmp_path / "state" / "journal.sqlite3"
    journal_file.parent.mkdir(parents=True)
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        user = await api.user()
        journal = await Journal(journal_file).open()
        try:
            chunked = ChunkedDestination(api, RemoteFolders(api), chunk_size=MiB)
            staged = StagedDatahubDestination(DatahubApi(api), chunked)
            engine = Engine(journal, staged, chunk_size=MiB, namespace=f"{api.host}#{user.user_id} ")
            # Stage every file as a run would, then "crash" before confirm() imports anything.
            for item in items:
                await engine._send_via(staged, item, await engine._digest(item.local, _summary()), "", _summary(),
                                       RunScope())
        finally:
            await journal.close()
    assert len(staged_files(emu)) == 3
    assert not emu.datahub_path("dataset", asset_id, v1, "in").exists()
    emu.clear_log()
    result = run_cli(["--json", "sync", str(src), "dataset:imagenet@v1:/in", "--chunk-size", "1MiB"], hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert summary_of(result)["files_sent"] == 3
    paths = [e["path"] for e in emu.log_entries()]
    assert not any(p.endswith(("/uploadFile", "/mergeFile", "/checkFileExist", "/uploadFolder")) for p in paths), paths
    assert any(p.endswith("/data/importFiles") for p in paths)
    for f in files:
        assert md5_of(emu.datahub_path("dataset", asset_id, v1, f"in/{f.rel}")) == md5_of(f.path)
    assert staged_files(emu) == []


def _summary():  # type: ignore[no-untyped-def]
    from transfer.engine import RunSummary

    return RunSummary()


def test_create_version_from_parent(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "mnist")
    src = tmp_path / "src"
    write_random(src / "a.bin", 3000, seed=1)
    assert run_cli(["--json", "sync", str(src), "dataset:mnist@v1"], hub_env).returncode == 0
    write_random(src / "b.bin", 5000, seed=2)
    missing = run_cli(["--json", "sync", str(src), "dataset:mnist@v2"], hub_env)
    assert missing.returncode == 2 and "--create-version" in missing.stderr and "v1" in missing.stderr
    result = run_cli(["--json", "sync", str(src), "dataset:mnist@v2", "--create-version", "v2"], hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    versions = {v["name"]: v for v in emu.datahub_versions("dataset", asset_id)}
    assert versions["v2"]["createStatus"] == 1 and versions["v2"]["parentId"] == v1
    v2 = versions["v2"]["id"]
    for name in ("a.bin", "b.bin"):
        assert md5_of(emu.datahub_path("dataset", asset_id, v2, name)) == md5_of(src / name)
    # v1 is untouched by the sync into v2
    assert not emu.datahub_path("dataset", asset_id, v1, "b.bin").exists()
    # --create-version with an existing version just uses it
    again = run_cli(["--json", "sync", str(src), "dataset:mnist@v2", "--create-version", "v2"], hub_env)
    assert again.returncode == 0 and summary_of(again)["files_skipped"] == 2


def test_failed_version_creation_and_lost_import_are_errors(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    emu.datahub_create_asset("model", "gpt")
    src = tmp_path / "src"
    write_random(src / "w.bin", 2 * MiB, seed=3)
    emu.faults.update({"datahub_create_fail": True})
    failed = run_cli(["--json", "sync", str(src), "model:gpt@v9", "--create-version", "v9"], hub_env)
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
    assert "createStatus 2" in failed.stderr and "'v9'" in failed.stderr and "'gpt'" in failed.stderr
    assert "Traceback" not in failed.stderr
    emu.faults.update({"datahub_create_fail": False, "datahub_import_drop": True})
    config = tmp_path / "hubsync.toml"
    config.write_text("[datahub]\npoll_timeout = 2\n")
    lost = run_cli(["--config", str(config), "--json", "sync", str(src), "model:gpt@v1"], hub_env)
    assert lost.returncode == 1, lost.stdout[-2000:] + lost.stderr[-2000:]
    summary = summary_of(lost)
    assert summary["files_failed"] == 1 and summary["files_sent"] == 0
    assert "not shown in the version" in summary["failures"][0]["error"]
    # the staged copy is kept: it is the only copy the platform has
    assert len(staged_files(emu)) == 1


def test_version_creation_that_does_not_finish_in_time_is_an_error(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    emu.datahub_create_asset("model", "gpt2", ("master",))
    src = tmp_path / "src"
    write_random(src / "w.bin", 1000, seed=3)
    emu.faults.update({"datahub_create_delay": 120})
    config = tmp_path / "hubsync.toml"
    config.write_text("[datahub]\npoll_timeout = 1\n")
    slow = run_cli(["--config", str(config), "sync", str(src), "model:gpt2@v2", "--create-version", "v2"], hub_env)
    assert slow.returncode == 1, slow.stdout[-2000:] + slow.stderr[-2000:]
    line = slow.stderr.strip().splitlines()[-1]
    assert "'v2'" in line and "'gpt2'" in line and "not created within 1s" in line and "createStatus 0" in line
    assert "Traceback" not in slow.stderr
    # A version still being created when the run starts is waited for with the same deadline.
    again = run_cli(["--config", str(config), "sync", str(src), "model:gpt2@v2"], hub_env)
    assert again.returncode == 1 and "not created within 1s" in again.stderr


async def test_resolver_raises_typed_errors_naming_no_option(emu: EmulatorThread) -> None:
    """The engine reports what is wrong; the hint of which option fixes it is the CLI's."""
    asset_id, _ = emu.datahub_create_asset("image", "cuda", ("v1",))
    async with PlatformClient(emu.url, username=ALICE[0], password=ALICE[1], password_key=KEY) as api:
        resolver = Resolver(DatahubApi(api))
        with pytest.raises(VersionNotFound) as missing:
            await resolver.resolve("image", "cuda", "v7")
        assert (missing.value.kind, missing.value.asset, missing.value.version, missing.value.versions) == (
            "image", "cuda", "v7", ["v1"])
        with pytest.raises(AssetNotFound) as unknown:
            await resolver.resolve("image", "cudaa", "v1")
        assert unknown.value.others == [(asset_id, "cuda")] and not unknown.value.similar
        with pytest.raises(ParentNotApplicable):
            await resolver.resolve("image", "cuda", "v2", create=True, parent="v1")
        for error in (missing.value, unknown.value):
            assert "--" not in str(error)


def test_cli_phrases_the_options(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    emu.datahub_create_asset("image", "cuda", ("v1",))
    emu.datahub_create_asset("model", "bert", ("v1",))
    src = tmp_path / "src"
    write_random(src / "x.bin", 10, seed=1)
    parent = run_cli(["sync", str(src), "image:cuda@v2", "--create-version", "v2", "--parent", "v1"], hub_env)
    assert parent.returncode == 2 and "--parent does not apply" in parent.stderr and "'cuda'" in parent.stderr
    no_parent = run_cli(["sync", str(src), "model:bert@v2", "--create-version", "v2", "--parent", "v0"], hub_env)
    assert no_parent.returncode == 2 and "--parent 'v0'" in no_parent.stderr and "v1" in no_parent.stderr
    missing = run_cli(["sync", str(src), "model:bert@v3"], hub_env)
    assert missing.returncode == 2 and "use --create-version v3" in missing.stderr


def test_unknown_and_ambiguous_names_exit_2_with_candidates(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    a1, _ = emu.datahub_create_asset("dataset", "coco")
    a2, _ = emu.datahub_create_asset("dataset", "coco")
    emu.datahub_create_asset("dataset", "coco-mini", versions=("v1", "v2"))
    src = tmp_path / "src"
    write_random(src / "x.bin", 10, seed=1)
    ambiguous = run_cli(["sync", str(src), "dataset:coco@v1"], hub_env)
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
    assert a1 in ambiguous.stderr and a2 in ambiguous.stderr
    unknown = run_cli(["sync", str(src), "dataset:cocoa@v1"], hub_env)
    assert unknown.returncode == 2 and "coco-mini" in unknown.stderr
    no_version = run_cli(["sync", str(src), "dataset:coco-mini@v7"], hub_env)
    assert no_version.returncode == 2 and "v1" in no_version.stderr and "v2" in no_version.stderr
    # by id, the ambiguity goes away
    by_id = run_cli(["--json", "sync", str(src), f"dataset:{a2}@v1"], hub_env)
    assert by_id.returncode == 0, by_id.stderr
    assert emu.datahub_path("dataset", a2, emu.datahub_versions("dataset", a2)[0]["id"], "x.bin").exists()
    assert not list(emu.datahub_path("dataset", a1, emu.datahub_versions("dataset", a1)[0]["id"]).rglob("x.bin"))


def test_delete_removes_only_what_src_lacks(emu: EmulatorThread, hub_env: dict, tmp_path: Path) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("algo", "resnet")
    src = tmp_path / "src"
    for name in ("keep.py", "sub/gone.py", "gone2.py"):
        write_random(src / name, 100, seed=len(name))
    assert run_cli(["--json", "sync", str(src), "algo:resnet@v1", "--via", "direct"], hub_env).returncode == 0
    (src / "sub" / "gone.py").unlink()
    (src / "gone2.py").unlink()
    plain = run_cli(["--json", "sync", str(src), "algo:resnet@v1"], hub_env)
    assert plain.returncode == 0
    assert emu.datahub_path("algo", asset_id, v1, "gone2.py").exists()  # no delete without --delete
    # Two of the version's three files go: more than half, so --max-delete says it is meant.
    dry = run_cli(["--json", "sync", str(src), "algo:resnet@v1", "--delete", "--max-delete", "2", "--dry-run"],
                  hub_env)
    assert sorted(o["remote"] for o in json_lines(dry.stdout) if o.get("event") == "would_delete") == [
        "algo:resnet@v1:/gone2.py", "algo:resnet@v1:/sub/gone.py"]
    assert emu.datahub_path("algo", asset_id, v1, "gone2.py").exists()
    result = run_cli(["--json", "sync", str(src), "algo:resnet@v1", "--delete", "--max-delete", "2"], hub_env)
    assert result.returncode == 0, result.stderr
    assert not emu.datahub_path("algo", asset_id, v1, "gone2.py").exists()
    assert not emu.datahub_path("algo", asset_id, v1, "sub/gone.py").exists()
    assert emu.datahub_path("algo", asset_id, v1, "keep.py").exists()


def test_datahub_only_options_are_refused_on_file_remotes(hub_env: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "x.bin", 10)
    result = run_cli(["sync", str(src), "private:/x", "--via", "direct"], hub_env)
    assert result.returncode == 2 and "--via" in result.stderr


def test_image_version_starts_empty_and_lists_through_the_image_call(
    emu: EmulatorThread, hub_env: dict, tmp_path: Path
) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("image", "cuda-base")
    src = tmp_path / "src"
    write_random(src / "layer.tar", 2 * MiB + 1, seed=4)
    assert run_cli(["--json", "sync", str(src), "image:cuda-base@v1"], hub_env).returncode == 0
    write_random(src / "layer2.tar", 1000, seed=5)
    result = run_cli(["--json", "sync", str(src / "layer2.tar"), "image:cuda-base@v2", "--create-version", "v2"],
                     hub_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    v2 = {v["name"]: v for v in emu.datahub_versions("image", asset_id)}["v2"]
    assert v2["parentId"] in ("", None)
    assert sorted(p.name for p in emu.datahub_path("image", asset_id, v2["id"]).rglob("*") if p.is_file()) == [
        "layer2.tar"]
    paths = [e["path"] for e in emu.log_entries()]
    assert any(p.endswith("/image/queryImageFileList") for p in paths)
    assert not any(p.endswith("/data/queryFileList") for p in paths)


@pytest.mark.parametrize("via", ["staged", "direct"])
def test_image_end_to_end(emu: EmulatorThread, hub_env: dict, tmp_path: Path, via: str) -> None:
    """Sync, re-sync, list and delete inside an image version: every listing is the image call."""
    asset_id, (v1,) = emu.datahub_create_asset("image", "cuda-base")
    src = tmp_path / "src"
    sizes = {"layer.tar": 300_001, "etc/conf 配置.json": 17, "etc/gone.txt": 5}
    for i, (rel, size) in enumerate(sizes.items()):
        write_random(src / rel, size, seed=i)
    remote = "image:cuda-base@v1:/rootfs"
    first = run_cli(["--json", "sync", str(src), remote, "--via", via], hub_env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    for rel in sizes:
        assert md5_of(emu.datahub_path("image", asset_id, v1, f"rootfs/{rel}")) == md5_of(src / rel), rel
    assert summary_of(run_cli(["--json", "sync", str(src), remote, "--via", via], hub_env))["files_skipped"] == 3
    listing = run_cli(["--json", "ls", f"{remote}/etc"], hub_env)
    assert listing.returncode == 0, listing.stderr
    assert {o["name"] for o in json_lines(listing.stdout) if o["event"] == "entry"} == {"conf 配置.json", "gone.txt"}
    (src / "etc" / "gone.txt").unlink()
    deleted = run_cli(["--json", "sync", str(src), remote, "--via", via, "--delete"], hub_env)
    assert deleted.returncode == 0, deleted.stderr
    assert not emu.datahub_path("image", asset_id, v1, "rootfs/etc/gone.txt").exists()
    assert emu.datahub_path("image", asset_id, v1, "rootfs/etc/conf 配置.json").exists()
    paths = [e["path"] for e in emu.log_entries()]
    assert any(p.endswith("/image/queryImageFileList") for p in paths)
    assert not any(p.endswith("/data/queryFileList") for p in paths)


@pytest.mark.parametrize("via", ["staged", "direct"])
def test_rides_through_faults_and_expiring_tokens(emu: EmulatorThread, hub_env: dict, tmp_path: Path, via: str) -> None:
    asset_id, (v1,) = emu.datahub_create_asset("dataset", "noisy")
    src = tmp_path / "src"
    for i in range(12):
        write_random(src / f"d{i % 3}" / f"f{i}.bin", (i * 300_007) % (5 * MiB) + 1, seed=i)
    emu.faults.update({"seed": 5, "chunk_error_rate": 0.2, "reset_rate": 0.1, "busy_rate": 0.1,
                       "token_lifetime": 3})
    result = run_cli(["--json", "sync", str(src), "dataset:noisy@v1:/in", "--via", via, "--chunk-size", "1MiB"],
                     hub_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary_of(result)["files_sent"] == 12
    for path in src.rglob("*.bin"):
        rel = path.relative_to(src).as_posix()
        assert md5_of(emu.datahub_path("dataset", asset_id, v1, f"in/{rel}")) == md5_of(path), rel
    assert len([e for e in emu.log_entries() if e.get("fault")]) > 5


def test_staging_falls_back_to_sftp_when_the_chunk_api_is_off(tmp_path: Path) -> None:
    with EmulatorThread(tmp_path / "platform", sftp=True) as emu:
        asset_id, (v1,) = emu.datahub_create_asset("model", "llama")
        emu.faults.chunk_api_off = True
        src = tmp_path / "src"
        sizes = {"w/big.bin": 12 * MiB + 5, "w/中文.bin": 2 * MiB}
        for i, (rel, size) in enumerate(sizes.items()):
            write_random(src / rel, size, seed=i)
        env = user_env(emu, tmp_path)
        result = run_cli(["--json", "sync", str(src), "model:llama@v1"], env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert summary_of(result)["transports"] == ["datahub-staged-sftp"]
        for rel in sizes:
            assert md5_of(emu.datahub_path("model", asset_id, v1, rel)) == md5_of(src / rel)
        assert staged_files(emu) == []
