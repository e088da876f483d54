"""xb.lr_find: the sweep against a hand-written one, the model left untouched, and a
suggestion that trains the digits MLP well."""

import copy
import math

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import exburn_nb as xb
from exburn_nb.core.optim import make_optimizer
from exburn_nb.train.lr_finder import suggest_rate, sweep_rates


def manual_sweep(model, x, y, start_lr, end_lr, num_iter, batch_size, seed, beta=0.98):
    """The same sweep written with plain torch: a copy, the same optimizer, lr set per step."""
    net = copy.deepcopy(model.module).train()
    opt = make_optimizer(model.optimizer, net.parameters(), start_lr)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    lrs, losses, smooth, avg = [], [], [], 0.0
    for i in range(num_iter):
        lr = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))
        idx = order[(i * batch_size) % len(x):][:batch_size]
        for g in opt.param_groups:
            g["lr"] = lr
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        avg = beta * avg + (1 - beta) * loss.item()
        lrs.append(lr)
        losses.append(loss.item())
        smooth.append(avg / (1 - beta ** (i + 1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lrs, losses, smooth


def test_frame_matches_a_manual_sweep(digits, mlp):
    (x, y), _ = digits
    model = mlp()
    # 40 steps of 32 = 1280 < 1438 samples: one shuffled pass, no divergence at <= 1e-1
    frame, lr = xb.lr_find(model, (x, y), start_lr=1e-5, end_lr=1e-1, num_iter=40, seed=3)
    lrs, losses, smooth = manual_sweep(model, x, y, 1e-5, 1e-1, 40, 32, seed=3)
    assert list(frame.columns) == ["lr", "loss", "smoothed_loss"] and len(frame) == 40
    assert frame["lr"].tolist() == pytest.approx(lrs, rel=1e-12)
    assert frame["loss"].tolist() == pytest.approx(losses, rel=1e-5)
    assert frame["smoothed_loss"].tolist() == pytest.approx(smooth, rel=1e-5)
    best = min(range(40), key=lambda i: smooth[i])
    assert lr == pytest.approx(lrs[best] / 10)
    assert sweep_rates(1e-5, 1e-1, 40)[0] == 1e-5 and sweep_rates(1e-5, 1e-1, 40)[-1] == pytest.approx(1e-1)


def test_model_optimizer_history_and_rng_unchanged(digits, mlp):
    (x, y), _ = digits
    model = mlp()
    xb.fit(model, (x[:256], y[:256]), epochs=1, verbose=False)  # optimizer state exists
    params = {k: v.clone() for k, v in model.module.state_dict().items()}
    opt_state = copy.deepcopy(model.torch_optimizer.state_dict())
    history = model.history.copy()
    rng = torch.get_rng_state()
    xb.lr_find(model, (x, y), num_iter=30)
    assert all(torch.equal(params[k], v) for k, v in model.module.state_dict().items())
    after = model.torch_optimizer.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]
    for key, state in opt_state["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(after["state"][key][name]), torch.as_tensor(value))
    assert model.history.equals(history) and model.learning_rate == 1e-3
    assert torch.equal(torch.get_rng_state(), rng)
    frame1, lr1 = xb.lr_find(model, (x, y), num_iter=30, seed=1)
    frame2, lr2 = xb.lr_find(model, (x, y), num_iter=30, seed=1)
    assert frame1.equals(frame2) and lr1 == lr2


def test_stops_when_the_loss_diverges(digits, mlp):
    (x, y), _ = digits
    frame, lr = xb.lr_find(mlp(optimizer="sgd"), (x, y), start_lr=1e-4, end_lr=1e4,
                           num_iter=100)
    assert len(frame) < 100  # stopped early
    last = frame["smoothed_loss"].iloc[-1]
    assert not math.isfinite(last) or last > 4 * frame["smoothed_loss"].iloc[:-1].min()
    assert frame["lr"].iloc[0] * 1e-3 < lr < frame["lr"].iloc[-1]


def test_suggested_rate_trains_the_digits_mlp_to_90_percent(digits, mlp):
    (x, y), (tx, ty) = digits
    model = mlp()
    _, lr = xb.lr_find(model, (x, y))
    assert 1e-5 < lr < 1
    model.set_optimizer("adam", learning_rate=lr)
    xb.fit(model, (x, y), epochs=5, batch_size=32, seed=0, verbose=False)
    _, accuracy = xb.evaluate(model, (tx, ty), accuracy=True)
    assert accuracy >= 0.90, f"lr {lr:.3g}: test accuracy {accuracy:.3f}"


def test_suggestion_on_a_trained_model_keeps_it_learning(digits, mlp):
    """A trained model's curve is flat until it rises; its noisy start made the suggestion
    1e-8 (under the dashboard slider's 1e-5). Now it is the end of the flat part / 10, and
    3 more epochs there do not make the test accuracy worse."""
    (x, y), (tx, ty) = digits
    model = mlp()
    xb.fit(model, (x, y), epochs=30, batch_size=32, seed=0, verbose=False)
    _, before = xb.evaluate(model, (tx, ty), accuracy=True)
    frame, lr = xb.lr_find(model, (x, y))
    assert 1e-4 < lr < 1e-2, f"lr {lr:.3g}"
    model.set_optimizer("adam", learning_rate=lr)
    xb.fit(model, (x, y), epochs=3, batch_size=32, seed=0, verbose=False)
    _, after = xb.evaluate(model, (tx, ty), accuracy=True)
    assert after >= before, f"lr {lr:.3g}: test accuracy {before:.4f} -> {after:.4f}"


@given(dip=st.floats(0.5, 0.99), rows=st.integers(20, 120))
def test_suggest_rate_skips_the_noisy_start_and_takes_the_end_of_the_plateau(dip, rows):
    """A flat curve with a dip in its first tenth and a rise after row ``3/4``: the
    suggestion is the last flat rate / 10, whatever the dip."""
    lrs = sweep_rates(1e-7, 10.0, rows)
    rise = rows * 3 // 4
    losses = [1.0] * rows
    losses[rows // 10 - 1] = dip  # the noisy start
    for i in range(rise, rows):
        losses[i] = 1.0 + (i - rise + 1) * 0.1
    frame = pd.DataFrame({"lr": lrs, "smoothed_loss": losses})
    assert suggest_rate(frame) == pytest.approx(lrs[rise - 1] / 10)


def test_suggest_rate_refuses_a_sweep_without_a_finite_loss():
    frame = pd.DataFrame({"lr": [1e-3, 1e-2], "smoothed_loss": [math.nan, math.inf]})
    with pytest.raises(ValueError, match="not finite"):
        suggest_rate(frame)


@pytest.mark.parametrize("kw, match", [
    (dict(start_lr=0), "start_lr"), (dict(start_lr=-1), "start_lr"),
    (dict(end_lr=1e-8), "end_lr"), (dict(num_iter=1), "num_iter"),
    (dict(batch_size=0), "batch_size"), (dict(smoothing=1.0), "smoothing"),
    (dict(diverge=0.5), "diverge"), (dict(num_iter=2.5), "num_iter"),
    (dict(start_lr=float("nan")), "start_lr"),
])
def test_bad_arguments_raise_before_any_step(digits, mlp, kw, match):
    (x, y), _ = digits
    with pytest.raises(ValueError, match=match):
        xb.lr_find(mlp(), (x, y), **kw)


def test_bad_data_names_the_argument(mlp):
    with pytest.raises(ValueError, match="data"):
        xb.lr_find(mlp(), (torch.zeros(10, 3), torch.zeros(10, dtype=torch.long)))


def test_ctrl_c_during_the_sweep_raises_and_leaves_the_model_alone(digits, mlp):
    """Ctrl-C cuts the sweep short: it raises (no suggestion from a partial sweep)."""
    import os
    import signal
    import threading

    (x, y), _ = digits
    model = mlp()
    params = {k: v.clone() for k, v in model.module.state_dict().items()}
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            xb.lr_find(model, (x, y), start_lr=1e-7, end_lr=1e-6, num_iter=200_000)
    finally:
        timer.cancel()
    assert all(torch.equal(params[k], v) for k, v in model.module.state_dict().items())
    assert len(model.history) == 0
