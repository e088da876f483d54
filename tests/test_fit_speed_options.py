"""fit's opt-in speed options: ``precision="bf16"`` and ``compile=True``."""

import pytest
import torch

import exburn_nb as xb


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 64, generator=g), torch.randint(0, 10, (256,), generator=g)


def test_bf16_autocast_trains_close_to_fp32(mlp):
    x, y = _data()
    a = xb.fit(mlp(), (x, y), epochs=3, shuffle=False, verbose=False)
    b = xb.fit(mlp(), (x, y), epochs=3, shuffle=False, verbose=False, precision="bf16")
    assert b.history["loss"].tolist() == pytest.approx(a.history["loss"].tolist(), rel=0.05)
    assert all(p.dtype == torch.float32 for p in b.parameters().values())
    assert b.history["loss"].iloc[-1] < b.history["loss"].iloc[0]


def test_compile_gives_the_same_numbers_as_eager(mlp):
    x, y = _data()
    a = xb.fit(mlp(), (x, y), epochs=2, batch_size=64, shuffle=False, verbose=False)
    b = xb.fit(mlp(), (x, y), epochs=2, batch_size=64, shuffle=False, verbose=False,
               compile=True)
    assert b.history["loss"].tolist() == pytest.approx(a.history["loss"].tolist(), rel=1e-4)
    for name, p in a.parameters().items():
        torch.testing.assert_close(b.parameters()[name], p, rtol=1e-4, atol=1e-5)


def test_unknown_precision_is_refused_before_training(mlp):
    model = mlp()
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'fp16'"):
        xb.fit(model, _data(), precision="fp16", verbose=False)
    assert model.epochs_trained == 0


def test_compile_with_bf16_follows_the_eager_bf16_run(mlp):
    """The captured step traces the forward under the same bfloat16 autocast as eager."""
    x, y = _data()
    a = xb.fit(mlp(), (x, y), epochs=2, batch_size=64, shuffle=False, verbose=False,
               precision="bf16")
    b = xb.fit(mlp(), (x, y), epochs=2, batch_size=64, shuffle=False, verbose=False,
               precision="bf16", compile=True)
    assert "compile_seconds" in b.recorder.runs[-1]  # the captured step ran
    assert b.history["loss"].tolist() == pytest.approx(a.history["loss"].tolist(), rel=0.02)
    assert all(p.dtype == torch.float32 for p in b.parameters().values())
