"""batch_history: one row per batch, optimizer steps counted on across fit calls."""

import torch

import exburn_nb as xb


def test_steps_count_on_across_fits_and_accumulation():
    model = xb.compile(xb.input("i", shape=(None, 4)).dense(2), seed=0)
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    xb.fit(model, (x, y), epochs=2, batch_size=4, verbose=False)
    xb.fit(model, (x, y), epochs=1, batch_size=4, verbose=False, accumulate_gradients=2)
    b = model.batch_history
    assert b["epoch"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert b["batch"].tolist() == [1, 2, 3] * 3
    # two steps per epoch of three batches when accumulating two: after batch 2 and the
    # ragged last group (batch 3)
    assert b["step"].tolist() == [1, 2, 3, 4, 5, 6, 6, 7, 8]
    assert b["loss"].map(type).eq(float).all()
