"""TensorBatches: the in-memory batches, gathered a chunk at a time (exburn_nb.core.data),
are exactly the per-batch gather's, for one order or one per member of a stacked run."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from exburn_nb.core import data
from exburn_nb.core.data import TensorBatches


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), size=st.integers(1, 9), members=st.sampled_from([None, 1, 3]),
       features=st.sampled_from([(), (3,), (2, 2)]), chunk_bytes=st.integers(0, 600))
def test_chunked_batches_are_the_per_batch_gather(n, size, members, features, chunk_bytes):
    g = torch.Generator().manual_seed(n * 100 + size)
    x = torch.randn(n, *features, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)
    if members is None:
        order = torch.randperm(n, generator=g)
    else:
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(members)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "GATHER_BYTES", chunk_bytes)  # chunks of one to many batches
        got = list(TensorBatches(x, y, size).epoch(order))
    bounds = [(lo, min(n, lo + size)) for lo in range(0, n, size)]
    assert len(got) == len(bounds)
    for (xb, yb), (lo, hi) in zip(got, bounds, strict=True):
        idx = order[..., lo:hi]
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
        assert xb.is_contiguous() and yb.is_contiguous(), "a captured step assumes contiguous"


def test_no_samples_give_no_batches():
    empty = TensorBatches(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 4)
    assert list(empty.epoch(None)) == [] and list(empty.epoch(torch.zeros(0).long())) == []
