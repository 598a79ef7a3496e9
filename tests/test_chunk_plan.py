"""Property: a chunk plan covers the file exactly once and reassembles to the file's md5."""

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.models import ChunkPlan


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


@settings(max_examples=60)
@given(size=st.integers(min_value=0, max_value=200_000), chunk=st.integers(min_value=1, max_value=70_000),
       seed=st.integers(min_value=0, max_value=2**32))
def test_reassembly_reproduces_md5(size: int, chunk: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    plan = ChunkPlan(size, chunk)
    joined = b"".join(data[o : o + n] for o, n in plan.spans())
    assert hashlib.md5(joined).hexdigest() == hashlib.md5(data).hexdigest()
