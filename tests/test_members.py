"""The loop's epoch tally (``train.members.EpochTally``) and the captured step's finite
check, against plain left-to-right arithmetic."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from exburn_nb.train import captured
from exburn_nb.train.members import EpochTally

_values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(members=st.integers(1, 4), data=st.data())
def test_loss_sums_add_each_members_batches_left_to_right(members, data):
    """Every member's sum is the left-to-right fold of its batches' ``loss x size`` where
    it stepped, bit for bit (one member too, where numpy's ``sum`` would go pairwise),
    whether a batch came as floats or as a tensor; a refused member's NaN counts for
    nothing."""
    batches = data.draw(st.lists(st.tuples(
        st.lists(_values, min_size=members, max_size=members), st.integers(1, 64),
        st.lists(st.booleans(), min_size=members, max_size=members), st.booleans()),
        min_size=9, max_size=40))
    tally = EpochTally(members)
    expected = [0.0] * members
    for losses, size, active, as_tensor in batches:
        held = [v if a else math.nan for v, a in zip(losses, active, strict=True)]
        tally.add(torch.tensor(held, dtype=torch.float64) if as_tensor else held, None,
                  size, active)
        for m, a in enumerate(active):
            if a:
                expected[m] += held[m] * size
    assert tally.loss_sums() == expected
    assert tally.done == [sum(s for _, s, a, _ in batches if a[m]) for m in range(members)]


def test_correct_counts_sum_the_stepping_members_batches_in_float64():
    tally = EpochTally(3)
    tally.add([0.5] * 3, torch.tensor([2.0, 3.0, 1.0]), 4, [True, True, True])
    tally.add([0.5] * 3, torch.tensor([1.0, 4.0, 4.0]), 4, [True, False, True])
    tally.add([0.5] * 3, torch.tensor([0.1, 0.2, 0.7], dtype=torch.float32), 4,
              [True, True, True])
    assert tally.correct_counts() == [
        2.0 + 1.0 + float(torch.tensor(0.1)), 3.0 + float(torch.tensor(0.2)),
        1.0 + 4.0 + float(torch.tensor(0.7))]
    assert EpochTally(2).correct_counts() == [0.0, 0.0] == EpochTally(2).loss_sums()


def test_the_captured_steps_finite_check_sees_a_gradient_the_loss_does_not_show():
    """Compiled by inductor as the captured step compiles it: a finite loss with one
    infinite or NaN gradient element is not finite; all finite is."""
    check = torch.compile(captured._finite, backend="inductor", fullgraph=True)
    loss = torch.tensor(0.25)
    grads = [torch.randn(7, 5), torch.randn(5)]
    assert bool(check(loss, grads))
    for bad in (math.inf, -math.inf, math.nan):
        broken = [grads[0].clone(), grads[1].clone()]
        broken[1][3] = bad
        assert not bool(check(loss, broken)), bad
    assert not bool(check(torch.tensor(math.nan), grads))
