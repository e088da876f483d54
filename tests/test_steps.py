"""Single steps: evaluate, train_step and compute_gradients (autograd against finite
differences, each against plain PyTorch)."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_reference import (
    assert_same_params,
    assert_state_equal,
    classification_data,
    mlp_spec,
    reference_net,
    regression_data,
    snapshot,
)

import exburn_nb as xb
from exburn_nb.train import steps


# ----------------------------------------------------------------- evaluate
def test_evaluate_is_the_mean_loss_in_inference_mode():
    x, y = classification_data(n=50)
    model = xb.compile(mlp_spec(dropout=0.5), seed=0)
    net = reference_net(model).eval()
    expected = F.cross_entropy(net(x), y).item()
    assert xb.evaluate(model, (x, y)) == pytest.approx(expected, rel=1e-6)
    # batching does not change the mean (a ragged last batch is weighted by its size)
    for batch_size in (1, 7, 50):
        assert xb.evaluate(model, (x, y), batch_size=batch_size) == pytest.approx(expected,
                                                                                  rel=1e-5)
    loss, acc = xb.evaluate(model, (x, y), accuracy=True)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert acc == pytest.approx((net(x).argmax(dim=1) == y).float().mean().item())
    assert type(loss) is float and type(acc) is float


def test_evaluate_leaves_the_model_alone():
    spec = (xb.input("input", shape=(None, 6)).dense(8, activation="tanh", name="hidden")
            .batch_norm(name="bn").dense(3, name="output"))
    model = xb.compile(spec, seed=0)
    before = snapshot(model)
    xb.evaluate(model, classification_data())
    assert_state_equal(model, before)  # batch-norm statistics included
    assert model.module.training


def test_evaluate_checks_its_arguments():
    model = xb.compile(mlp_spec())
    x, y = classification_data()
    with pytest.raises(ValueError, match="batch_size"):
        xb.evaluate(model, (x, y), batch_size=0)
    with pytest.raises(ValueError, match="data x has shape"):
        xb.evaluate(model, (x[:, :3], y))
    with pytest.raises(ValueError, match="label 5"):
        xb.evaluate(model, (x, torch.full_like(y, 5)))


# ----------------------------------------------------------------- train_step
def test_train_step_returns_the_loss_and_the_stepped_model():
    x, y = classification_data(n=16)
    model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.1, seed=0)
    net = reference_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(model)
    for _ in range(3):
        loss, returned = xb.train_step(model, (x, y))
        assert returned is model
        opt.zero_grad()
        expected = F.cross_entropy(net(x), y)
        expected.backward()
        opt.step()
        assert type(loss) is float
        assert loss == pytest.approx(expected.item(), rel=1e-6)  # the loss before the step
    assert_same_params(model, net)
    assert not torch.equal(model.parameters()["hidden.weight"], before["hidden.weight"])
    assert all(p.grad is None for p in model.module.parameters())


@pytest.mark.parametrize("clip", [{"clip_norm": 0.05}, {"clip_value": 0.01},
                                  {"clip_norm": 0.05, "clip_value": 0.01}])
def test_train_step_clips_like_torch(clip):
    x, y = regression_data(n=16, n_out=2, scale=10.0)
    model = xb.compile(mlp_spec(n_out=2), loss="mse", optimizer="sgd", learning_rate=0.1,
                       seed=0)
    net = reference_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        xb.train_step(model, (x, y), **clip)
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        if "clip_value" in clip:
            torch.nn.utils.clip_grad_value_(net.parameters(), clip["clip_value"])
        if "clip_norm" in clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip["clip_norm"])
        opt.step()
    assert_same_params(model, net)


def test_train_step_with_numerical_gradients_steps_like_autograd():
    x, y = classification_data(n=8, n_in=3)
    spec = mlp_spec(n_in=3, hidden=4)
    a = xb.compile(spec, optimizer="sgd", learning_rate=0.5, seed=0)
    b = xb.compile(spec, optimizer="sgd", learning_rate=0.5, seed=0)
    loss_a, _ = xb.train_step(a, (x, y), clip_norm=1.0)
    loss_b, _ = xb.train_step(b, (x, y), clip_norm=1.0, grad_method="numerical_batch")
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for p, q in zip(a.parameters().values(), b.parameters().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("call", [
    lambda m, d: xb.train_step(m, d, grad_method="symbolic"),
    lambda m, d: xb.compute_gradients(m, d, grad_method="finite"),
    lambda m, d: xb.train_step(m, d, clip_norm=0),
    lambda m, d: xb.train_step(m, d, clip_value=-1.0),
    lambda m, d: xb.train_step(m, (d[0][:, :2], d[1])),
])
def test_bad_step_arguments_are_value_errors_that_change_nothing(call):
    model = xb.compile(mlp_spec(), seed=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="grad_method|clip_norm|clip_value|batch x"):
        call(model, classification_data(n=8))
    assert_state_equal(model, before)
    assert not model.torch_optimizer.state


# ----------------------------------------------------------------- compute_gradients
def torch_gradients(model, x, y, loss_fn=F.cross_entropy):
    net = reference_net(model)
    loss_fn(net(x), y).backward()
    return [p.grad for p in net.parameters()]


def test_autograd_gradients_match_plain_torch_and_change_nothing():
    x, y = classification_data(n=12)
    model = xb.compile(mlp_spec(), seed=0)
    before = snapshot(model)
    grads = xb.compute_gradients(model, (x, y))
    assert list(grads) == list(model.parameters())
    for ours, theirs in zip(grads.values(), torch_gradients(model, x, y), strict=True):
        torch.testing.assert_close(ours, theirs)
    assert_state_equal(model, before)
    assert all(p.grad is None for p in model.module.parameters())


def gradient_specs():
    base = xb.input("input", shape=(None, 3))
    return {
        "tanh": base.dense(4, activation="tanh", name="hidden").dense(3, name="output"),
        "batch_norm": (base.dense(4, name="hidden").batch_norm(name="bn")
                       .activation("tanh").dense(3, name="output")),
        "sigmoid+softmax": (base.dense(4, activation="sigmoid", name="hidden")
                            .dense(3, activation="softmax", name="output")),
    }


@pytest.mark.parametrize("kind", ["tanh", "batch_norm", "sigmoid+softmax"])
def test_autograd_and_both_finite_difference_methods_agree(kind):
    x, y = classification_data(n=10, n_in=3)
    model = xb.compile(gradient_specs()[kind], seed=0)
    auto = xb.compute_gradients(model, (x, y), grad_method="autograd")
    numerical = xb.compute_gradients(model, (x, y), grad_method="numerical")
    batched = xb.compute_gradients(model, (x, y), grad_method="numerical_batch")
    assert auto.keys() == numerical.keys() == batched.keys()
    for name in auto:
        assert numerical[name].shape == auto[name].shape
        assert numerical[name].dtype == auto[name].dtype
        torch.testing.assert_close(numerical[name], auto[name], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(batched[name], auto[name], rtol=1e-4, atol=1e-6)
    assert max(float(g.abs().max()) for g in auto.values()) > 1e-3  # not trivially zero


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), loss=st.sampled_from(["mse", "binary_cross_entropy"]))
def test_numerical_gradients_agree_with_autograd_for_other_losses(seed, loss):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, generator=g)
    y = torch.randint(0, 2, (6, 2), generator=g).float()
    model = xb.compile(xb.input("input", shape=(None, 3)).dense(3, activation="tanh")
                       .dense(2), loss=loss, seed=seed)
    auto = xb.compute_gradients(model, (x, y))
    batched = xb.compute_gradients(model, (x, y), grad_method="numerical_batch")
    for name in auto:
        torch.testing.assert_close(batched[name], auto[name], rtol=1e-4, atol=1e-6)


def test_frozen_layers_get_no_gradient():
    x, y = classification_data(n=8)
    model = xb.compile(mlp_spec(), seed=0).freeze("hidden")
    for method in ("autograd", "numerical_batch"):
        grads = xb.compute_gradients(model, (x, y), grad_method=method)
        assert list(grads) == ["output.weight", "output.bias"]


def test_the_numerical_warning_threshold_is_ten_thousand_parameters():
    assert steps.NUMERICAL_WARN_PARAMS == 10_000


@pytest.mark.parametrize("method", ["numerical", "numerical_batch"])
def test_numerical_methods_warn_above_the_threshold(monkeypatch, method):
    """The threshold is lowered so the (slow) finite differences stay cheap here."""
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    model = xb.compile(xb.input("input", shape=(None, 3)).dense(5))  # 20 parameters
    monkeypatch.setattr(steps, "NUMERICAL_WARN_PARAMS", 19)
    with pytest.warns(UserWarning, match=f"grad_method={method!r} on 20 parameters"):
        xb.compute_gradients(model, (x, y), grad_method=method)
    monkeypatch.setattr(steps, "NUMERICAL_WARN_PARAMS", 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xb.compute_gradients(model, (x, y), grad_method=method)  # at the threshold: quiet
        xb.compute_gradients(model, (x, y), grad_method="autograd")
    monkeypatch.setattr(steps, "NUMERICAL_WARN_PARAMS", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xb.compute_gradients(model, (x, y), grad_method="autograd")  # autograd never warns


def test_compute_gradients_leaves_batch_norm_statistics_alone():
    spec = xb.input("input", shape=(None, 4)).dense(5, name="hidden").batch_norm(name="bn") \
        .dense(2, name="output")
    model = xb.compile(spec, seed=0)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    batch = (torch.randn(16, 4) * 3 + 1, torch.randint(0, 2, (16,)))
    for method in ("autograd", "numerical_batch"):
        xb.compute_gradients(model, batch, grad_method=method)
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, before[name]), name
    xb.train_step(model, batch)  # a real step does update them
    assert not torch.equal(model.module.state_dict()["bn.running_mean"], before["bn.running_mean"])
