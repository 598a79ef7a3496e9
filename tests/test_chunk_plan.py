"""A chunk plan covers the file exactly once and reassembles to the file's md5; one read hashes both."""

import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.errors import LocalFileChanged
from transfer.hashing import hash_file, stat_file
from transfer.models import ChunkPlan

MiB = 1 << 20


# No deadline: on a shared 2-core machine a 200,000-slice example can take 300 ms (timing
# targets live in bench/, not in tests).
@settings(deadline=None)
@given(size=st.integers(min_value=0, max_value=1 << 40), chunk=st.integers(min_value=1, max_value=1 << 30))
def test_plan_covers_exactly_once(size: int, chunk: int) -> None:
    plan = ChunkPlan(size, chunk)
    if plan.total > 10_000:  # arithmetic check only for huge plans
        assert (plan.total - 1) * chunk < size <= plan.total * chunk
        last_off, last_len = plan.span(plan.total - 1)
        assert last_off + last_len == size and 0 < last_len <= chunk
        return
    position = 0
    for index, (offset, length) in enumerate(plan.spans()):
        assert offset == position
        assert 0 < length <= chunk
        if index < plan.total - 1:
            assert length == chunk
        position += length
    assert position == size


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=0, max_value=200_000), chunk=st.integers(min_value=1, max_value=70_000),
       seed=st.integers(min_value=0, max_value=2**32))
def test_reassembly_reproduces_md5(size: int, chunk: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    plan = ChunkPlan(size, chunk)
    joined = b"".join(data[o : o + n] for o, n in plan.spans())
    assert hashlib.md5(joined).hexdigest() == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(("size", "chunk"), [
    (3 * MiB + 5, MiB),  # a short last chunk; chunks of whole read blocks
    (4 * MiB, MiB),  # no short last chunk
    (3 * MiB + 5, MiB + MiB // 2 + 7),  # chunks that end inside a read block
    (MiB + 1, 64 << 10),  # many chunks per read block
    (MiB, 2 * MiB),  # one chunk: its md5 is the file's, no chunk list
])
def test_one_read_gives_the_file_md5_and_every_chunk_md5(tmp_path: Path, size: int, chunk: int) -> None:
    path = tmp_path / "f.bin"
    data = random.Random(size ^ chunk).randbytes(size)
    path.write_bytes(data)
    digest = hash_file(stat_file(path, "f.bin"), chunk_size=chunk)
    plan = ChunkPlan(size, chunk)
    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert [digest.chunk_md5(plan, i) for i in range(plan.total)] == [
        hashlib.md5(data[o : o + n]).hexdigest() for o, n in plan.spans()
    ]
    assert len(digest.chunks) == (plan.total if plan.total > 1 else 0)
    # Chunk md5s of another cut are not known without reading the file.
    assert plan.total == 1 or digest.chunk_md5(ChunkPlan(size, chunk + 1), 0) is None
    assert hash_file(stat_file(path, "f.bin")).chunks == ()  # none asked for: one hasher


def test_a_file_that_grew_while_hashed_with_its_chunks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(3 * MiB))
    local = stat_file(path, "f.bin")
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(LocalFileChanged):
        hash_file(local, chunk_size=MiB)
