"""Optimizers and learning-rate schedules: fit's trajectories against torch.optim and
torch.optim.lr_scheduler, run by hand on an identical plain PyTorch model."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_reference import (
    assert_same_params,
    assert_state_equal,
    classification_data,
    fit,
    hand_loop,
    mlp_spec,
    reference_net,
    snapshot,
)

import exburn_nb as xb
from exburn_nb.core.optim import OPTIMIZER_STATE, make_schedule, update_rule

EPOCHS, BATCH = 3, 16

TORCH_OPTIMIZERS = {
    "adam": lambda p, lr, wd, _n: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                                   weight_decay=wd),
    "adamw": lambda p, lr, wd, _n: torch.optim.AdamW(p, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                                     weight_decay=wd),
    "sgd": lambda p, lr, wd, nesterov: torch.optim.SGD(p, lr=lr, momentum=0.9,
                                                       nesterov=nesterov, weight_decay=wd),
    "rmsprop": lambda p, lr, wd, _n: torch.optim.RMSprop(p, lr=lr, alpha=0.9, eps=1e-8,
                                                         weight_decay=wd),
}
LEARNING_RATES = {"adam": 0.01, "adamw": 0.01, "sgd": 0.1, "rmsprop": 0.01}


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("optimizer, nesterov", [("adam", False), ("adamw", False),
                                                 ("sgd", False), ("sgd", True),
                                                 ("rmsprop", False)])
def test_trajectory_matches_torch_optim(optimizer, nesterov, weight_decay):
    lr = LEARNING_RATES[optimizer]
    x, y = classification_data(n=64)
    model = xb.compile(mlp_spec(), optimizer=optimizer, learning_rate=lr,
                       weight_decay=weight_decay, seed=0)
    net = reference_net(model)
    opt = TORCH_OPTIMIZERS[optimizer](net.parameters(), lr, weight_decay, nesterov)
    fit(model, (x, y), epochs=EPOCHS, batch_size=BATCH, shuffle=False, nesterov=nesterov)
    losses = hand_loop(net, opt, x, y, F.cross_entropy, EPOCHS, BATCH)
    assert_same_params(model, net, atol=1e-6, rtol=1e-5)
    assert model.batch_history["loss"].tolist() == pytest.approx(losses, rel=1e-5, abs=1e-6)
    assert model.batch_history["step"].tolist() == list(range(1, len(losses) + 1))
    # the test can fail: training moved the weights far beyond the tolerance
    assert (model.parameters()["hidden.weight"] - reference_net(
        xb.compile(mlp_spec(), seed=0))[0].weight).abs().max() > 1e-2


def test_the_guide_constants_are_used():
    groups = {name: xb.compile(mlp_spec(), optimizer=name).torch_optimizer.param_groups[0]
              for name in ("adam", "adamw", "sgd", "rmsprop")}
    assert groups["adam"]["betas"] == (0.9, 0.999) and groups["adam"]["eps"] == 1e-8
    assert groups["adamw"]["betas"] == (0.9, 0.999) and groups["adamw"]["eps"] == 1e-8
    assert groups["sgd"]["momentum"] == 0.9 and not groups["sgd"]["nesterov"]
    assert groups["rmsprop"]["alpha"] == 0.9 and groups["rmsprop"]["eps"] == 1e-8
    assert groups["rmsprop"]["momentum"] == 0
    model = xb.compile(mlp_spec(), optimizer="adamw")
    assert isinstance(model.torch_optimizer, torch.optim.AdamW)


def test_fit_weight_decay_overrides_compile_for_that_run_only():
    x, y = classification_data(n=64)
    model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.1, weight_decay=0.0, seed=0)
    net = reference_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.2)
    fit(model, (x, y), epochs=2, batch_size=BATCH, shuffle=False, weight_decay=0.2)
    hand_loop(net, opt, x, y, F.cross_entropy, 2, BATCH)
    assert_same_params(model, net)
    assert model.weight_decay == 0.0
    assert model.torch_optimizer.param_groups[0]["weight_decay"] == 0.0
    # the next run is back to compile's weight decay (0), continuing the same state
    opt.param_groups[0]["weight_decay"] = 0.0
    fit(model, (x, y), epochs=2, batch_size=BATCH, shuffle=False)
    hand_loop(net, opt, x, y, F.cross_entropy, 2, BATCH)
    assert_same_params(model, net)


def test_fit_weight_decay_changes_the_result():
    x, y = classification_data(n=64)
    plain = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.1, seed=0)
    decayed = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.1, seed=0)
    fit(plain, (x, y), epochs=2, shuffle=False)
    fit(decayed, (x, y), epochs=2, shuffle=False, weight_decay=0.5)
    assert decayed.parameters()["hidden.weight"].norm().item() < \
        plain.parameters()["hidden.weight"].norm().item()


def test_nesterov_is_for_this_run_only():
    model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.1)
    fit(model, classification_data(), epochs=1, nesterov=True)
    assert model.torch_optimizer.param_groups[0]["nesterov"] is False


# ----------------------------------------------------------------- schedules
def torch_scheduler_lrs(kind: str, args: tuple, epochs: int) -> list[float]:
    """The learning rate of each epoch under the matching torch scheduler."""
    base = args[0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    if kind == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=args[1], gamma=args[2])
    elif kind == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=args[1])
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=args[1])
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


schedules = st.one_of(
    st.tuples(st.just("step"), st.floats(1e-4, 1.0), st.integers(1, 4), st.floats(0.05, 1.0)),
    st.tuples(st.just("exponential"), st.floats(1e-4, 1.0), st.floats(0.3, 1.0)),
    st.floats(1e-4, 1.0).flatmap(lambda base: st.tuples(
        st.just("cosine"), st.just(base), st.floats(0.0, base * 0.99)))
)


@settings(max_examples=40, deadline=None)
@given(schedule=schedules, epochs=st.integers(1, 9))
def test_schedules_match_torch_lr_schedulers(schedule, epochs):
    expected = torch_scheduler_lrs(schedule[0], schedule[1:], epochs)
    x, y = classification_data(n=8, n_in=2, classes=2)
    model = xb.compile(mlp_spec(n_in=2, hidden=2, n_out=2), optimizer="sgd")
    fit(model, (x, y), epochs=epochs, batch_size=4, lr_schedule=schedule)
    assert model.history["lr"].tolist() == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert model.batch_history["lr"].tolist() == pytest.approx(
        [lr for lr in expected for _ in range(2)], rel=1e-9, abs=1e-15)


def test_schedule_drives_the_optimizer_steps():
    x, y = classification_data(n=32)
    schedule = ("step", 0.2, 1, 0.5)
    model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=1.0, seed=0)
    net = reference_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9)
    fit(model, (x, y), epochs=3, batch_size=BATCH, shuffle=False, lr_schedule=schedule)
    hand_loop(net, opt, x, y, F.cross_entropy, 3, BATCH, scheduler_lrs=[0.2, 0.1, 0.05])
    assert_same_params(model, net)


def test_schedules_count_epochs_from_zero_in_each_run():
    model = xb.compile(mlp_spec(), optimizer="sgd")
    data = classification_data(n=16)
    for _ in range(2):
        fit(model, data, epochs=3, lr_schedule=("exponential", 0.1, 0.5))
    assert model.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert model.history["lr"].tolist() == pytest.approx([0.1, 0.05, 0.025] * 2)


def test_cosine_reaches_towards_min_lr_over_the_run():
    sched = make_schedule(("cosine", 0.1, 0.001), epochs=10)
    lrs = [sched(e) for e in range(10)]
    assert lrs[0] == 0.1
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.001 + 0.099 * (1 + math.cos(math.pi * 0.9)) / 2)


def test_callable_schedule_sets_each_epoch():
    model = xb.compile(mlp_spec(), optimizer="sgd")
    fit(model, classification_data(n=16), epochs=4, lr_schedule=lambda epoch: 0.1 / (1 + epoch))
    assert model.history["lr"].tolist() == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])
    assert model.torch_optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


@pytest.mark.parametrize("schedule", [
    ("bogus", 0.1),
    ("step", 0.1, 2),
    ("step", 0.1, 2, 0.5, 9),
    ("exponential", 0.1),
    ("exponential", 0.1, 0.9, 3),
    ("cosine", 0.1),
    ("step", 0.1, 0, 0.5),
    ("step", 0.1, 1.5, 0.5),
    ("step", 0.1, 2, -0.5),
    ("exponential", -0.1, 0.9),
    ("exponential", 0.1, 0.0),
    ("cosine", 0.0, 0.0),
    ("cosine", 0.1, -1.0),
    (),
    "step",
    0.1,
    lambda: 0.1,
    lambda epoch, extra: 0.1,
    lambda epoch: -1.0,
    lambda epoch: float("nan"),
    lambda epoch: "0.1",
])
def test_bad_schedules_are_value_errors_before_any_step(schedule):
    model = xb.compile(mlp_spec(), seed=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(model, classification_data(), epochs=2, lr_schedule=schedule)
    assert_state_equal(model, before)
    assert model.history.empty and model.batch_history.empty


# ------------------------------------------------------------------ the direct fused step
def _twin_optimizers(name: str, weight_decay: float, maximize: bool = False):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    twins = [[torch.nn.Parameter(p.detach().clone()) for p in params] for _ in range(2)]
    kind = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    opts = [kind(ps, lr=1e-2, weight_decay=weight_decay, fused=True, maximize=maximize)
            for ps in twins]
    return twins, opts


@pytest.mark.parametrize(("name", "weight_decay", "maximize"),
                         [("adam", 0.0, False), ("adam", 0.1, False), ("adamw", 0.01, False),
                          ("adam", 0.0, True)])
def test_direct_fused_step_equals_optimizer_step_bit_for_bit(name, weight_decay, maximize):
    """optimizer_step calls the fused kernel itself after the first step: the weights and
    the optimizer state are identical (torch.equal) to torch.optim's own step()."""
    from exburn_nb.core.optim import optimizer_step

    (ref, fast), (ref_opt, fast_opt) = _twin_optimizers(name, weight_decay, maximize)
    for i in range(5):
        grads = [torch.randn_like(p) for p in ref]
        for a, b, g in zip(ref, fast, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        if i == 3:  # a learning-rate change is read at the next step
            for opt in (ref_opt, fast_opt):
                opt.param_groups[0]["lr"] = 3e-3
        ref_opt.step()
        optimizer_step(fast_opt, fast)
    for a, b in zip(ref, fast, strict=True):
        assert torch.equal(a, b)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(ref_opt.state[a][key], fast_opt.state[b][key]), key


def test_fit_steps_fused_adam_without_the_optimizer_wrapper(monkeypatch):
    """After the first step (which creates Adam's state) fit takes its steps through the
    fused kernel, not Optimizer.step's Python wrapper; SGD+Nesterov still uses step().
    No zero_grad wrapper either, per step or at the end, and no gradient is left."""
    x, y = classification_data(n=96)
    for optimizer, wrapped in (("adam", 1), ("sgd", 6)):
        model = xb.compile(mlp_spec(), optimizer=optimizer, learning_rate=1e-2, seed=0,
                           device="cpu")
        opt = model.torch_optimizer
        calls = []
        real = opt.step
        monkeypatch.setattr(opt, "step", lambda *a, real=real, calls=calls, **k: (
            calls.append(1), real(*a, **k))[1])
        zero_grad_calls = []
        monkeypatch.setattr(opt, "zero_grad", lambda *a, c=zero_grad_calls, **k: c.append(1))
        xb.fit(model, (x, y), epochs=2, batch_size=BATCH * 2, verbose=False,
               seed=0, nesterov=optimizer == "sgd")
        assert len(calls) == wrapped, optimizer
        assert not zero_grad_calls  # gradients are dropped directly (set_to_none's effect)
        assert all(p.grad is None for p in model.module.parameters())


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(TORCH_OPTIMIZERS)), weight_decay=st.sampled_from([0.0, 0.05]),
       nesterov=st.booleans(), lr=st.floats(1e-4, 0.3), seed=st.integers(0, 2**16))
def test_the_captured_update_rule_follows_torch_optim(name, weight_decay, nesterov, lr, seed):
    """update_rule (the captured step's optimizer) against torch.optim's own step, five
    steps on the same weights and gradients: the same numbers within float32 round-off,
    the state included."""
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(7, 5, generator=g), torch.randn(5, generator=g)]
    grads = [[torch.randn(w.shape, generator=g) * 10 ** float(torch.randint(-4, 2, (), generator=g))
              for w in weights] for _ in range(5)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = TORCH_OPTIMIZERS[name](params, lr, weight_decay, nesterov and name == "sgd")
    rule, scalars = update_rule(name, opt.param_groups[0])
    slots = OPTIMIZER_STATE[name]
    ours = [(w.clone(), tuple(torch.zeros_like(w) for _ in slots)) for w in weights]
    for step, step_grads in enumerate(grads, start=1):
        for p, grad in zip(params, step_grads, strict=True):
            p.grad = grad.clone()
        opt.step()
        h = torch.tensor(scalars(lr, step), dtype=torch.float32)
        ours = [rule(w, grad, state, h) for (w, state), grad in zip(ours, step_grads, strict=True)]
    for p, (w, state) in zip(params, ours, strict=True):
        torch.testing.assert_close(w, p.detach(), rtol=1e-5, atol=1e-6)
        for key, value in zip(slots, state, strict=True):
            torch.testing.assert_close(value, opt.state[p][key], rtol=1e-5, atol=1e-7)
