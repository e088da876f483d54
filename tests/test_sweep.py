"""The stacked sweep engine: every member is the same computation as its own ``xb.fit``."""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import exburn_nb as xb
from exburn_nb import sweep
from exburn_nb.core.layers import (
    ACTIVATIONS,
    REGISTRY,
    Layer,
    LayerKind,
    Option,
    make_activation,
    stacked_activation,
)
from exburn_nb.sweep import stacked
from exburn_nb.sweep.stacked import member_bytes, member_loss
from exburn_nb.train.engine import finite_rows

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    (x, y), (tx, ty) = xb.datasets.digits()
    return (x[:400], y[:400]), (tx[:100], ty[:100])


def make_spec(rate: float = 0.0, width: int = 16):
    s = xb.input("input", shape=(None, 64)).dense(width, activation="relu", name="hidden")
    return s.dropout(rate, name="drop").dense(10, name="output")


def build(member: dict) -> xb.Model:
    return xb.compile(make_spec(member.get("rate", 0.0)), optimizer=member["optimizer"],
                      learning_rate=member["lr"], weight_decay=member.get("wd", 0.0),
                      seed=member["init"])


def run_code(code: str) -> xb.Spec:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the code under test
    return namespace["spec"]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def assert_same_run(stacked: xb.Model, alone: xb.Model, weights: float = 1e-5) -> None:
    """Weights (``weights`` relative), epoch and batch history and runs of two models agree."""
    for (name, p), q in zip(alone.module.named_parameters(), stacked.module.parameters(),
                            strict=True):
        assert relative_error(q.detach(), p.detach()) <= weights, name
    h1, h2 = stacked.history, alone.history
    assert list(h1.columns) == list(h2.columns)
    assert h1["epoch"].tolist() == h2["epoch"].tolist()
    for column in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        if column in h2:
            assert h1[column].tolist() == pytest.approx(h2[column].tolist(), rel=1e-5, nan_ok=True), column
    b1, b2 = stacked.batch_history, alone.batch_history
    for column in ("epoch", "batch", "step", "run"):
        assert b1[column].tolist() == b2[column].tolist(), column
    assert b1["loss"].tolist() == pytest.approx(b2["loss"].tolist(), rel=1e-5)
    assert b1["lr"].tolist() == pytest.approx(b2["lr"].tolist(), rel=1e-12)
    assert stacked.runs.to_dict("records") == alone.runs.to_dict("records")
    assert stacked.learning_rate == pytest.approx(alone.learning_rate)


def check_members(members: list[dict], configs: list[xb.FitConfig], data, val=None,
                  then_fit: bool = False, weights: float = 1e-5) -> sweep.StackedTrainer:
    models = [build(m) for m in members]
    trainer = sweep.StackedTrainer(models, configs, data, val)
    trainer.run()
    for member, cfg, model in zip(members, configs, models, strict=True):
        alone = build(member)
        xb.fit(alone, data, cfg, validation_data=val, verbose=False)
        assert_same_run(model, alone, weights)
        if then_fit:  # the optimizer state was written back as torch.optim keeps it
            more = cfg.replace(epochs=1, lr_schedule=None)
            xb.fit(model, data, more, verbose=False)
            xb.fit(alone, data, more, verbose=False)
            assert_same_run(model, alone)
    return trainer


OPTIMIZERS = [("adam", {}), ("adamw", {}), ("sgd", {}), ("sgd", {"nesterov": True}),
              ("rmsprop", {})]


@pytest.mark.parametrize(("optimizer", "extra"), OPTIMIZERS,
                         ids=["adam", "adamw", "sgd", "sgd-nesterov", "rmsprop"])
def test_each_member_equals_its_own_fit(digits, optimizer, extra):
    data, val = digits
    lr = 0.05 if optimizer == "sgd" else 3e-3
    members = [{"optimizer": optimizer, "lr": lr * f, "wd": wd, "init": i, "rate": rate}
               for i, (f, wd, rate) in enumerate([(1.0, 0.0, 0.0), (0.3, 1e-3, 0.2),
                                                  (2.0, 1e-2, 0.5), (1.0, 0.0, 0.2)])]
    configs = [
        xb.FitConfig(epochs=3, batch_size=32, seed=7, accuracy=True, **extra),
        xb.FitConfig(epochs=3, batch_size=32, seed=8, clip_norm=0.5, accuracy=True),
        xb.FitConfig(epochs=3, batch_size=32, seed=9, clip_value=0.01, weight_decay=1e-3,
                     lr_schedule=("step", lr, 1, 0.5), accuracy=True, **extra),
        xb.FitConfig(epochs=3, batch_size=32, seed=7, lr_schedule=("cosine", lr, lr / 10),
                     clip_norm=1.0, clip_value=0.05, accuracy=True),
    ]
    trainer = check_members(members, configs, data, val, then_fit=True)
    assert trainer.stop_reasons == [None] * 4


@pytest.mark.parametrize(("optimizer", "extra"), OPTIMIZERS[:4],
                         ids=["adam", "adamw", "sgd", "sgd-nesterov"])
def test_the_fused_path_equals_each_members_own_fit(digits, monkeypatch, optimizer, extra):
    """Large members step through torch's fused kernel, one member at a time."""
    monkeypatch.setattr(stacked, "FUSED_MIN_PARAMS", 0)
    data, val = digits
    lr = 0.05 if optimizer == "sgd" else 3e-3
    members = [{"optimizer": optimizer, "lr": lr * f, "wd": wd, "init": i, "rate": 0.2}
               for i, (f, wd) in enumerate([(1.0, 0.0), (0.3, 1e-3), (1e35, 0.0)])]
    configs = [xb.FitConfig(epochs=2, seed=7, clip_norm=1.0, **extra),
               xb.FitConfig(epochs=2, seed=8, lr_schedule=("step", lr, 1, 0.5)),
               xb.FitConfig(epochs=2, seed=9, **extra)]
    with pytest.warns(UserWarning):  # the huge learning rate diverges, in both runs
        trainer = check_members(members, configs, data, val, then_fit=True)
    assert trainer.engine.opt.fused and trainer.stop_reasons == [None, None, "non-finite"]


def test_accumulation_and_ragged_batches(digits):
    (x, y), _ = digits
    data = (x[:150], y[:150])  # 150 = 4 x 32 + 22: a ragged last batch and a ragged group
    members = [{"optimizer": "adam", "lr": lr, "init": i, "rate": 0.2}
               for i, lr in enumerate((1e-3, 1e-2))]
    configs = [xb.FitConfig(epochs=2, batch_size=32, accumulate_gradients=3, seed=s,
                            clip_norm=cn) for s, cn in ((1, None), (2, 0.3))]
    check_members(members, configs, data)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_random_groups_equal_their_separate_runs(digits, draw):
    data = draw.draw
    optimizer = data(st.sampled_from(["adam", "sgd", "rmsprop"]))
    size = data(st.integers(2, 3))
    epochs = data(st.integers(1, 2))
    batch = data(st.sampled_from([16, 50]))
    accumulate = data(st.integers(1, 2))
    members, configs = [], []
    for _ in range(size):
        lr = data(st.sampled_from([1e-3, 3e-3, 1e-2]))
        members.append({"optimizer": optimizer, "lr": lr, "init": data(st.integers(0, 3)),
                        "wd": data(st.sampled_from([0.0, 1e-3])),
                        "rate": data(st.sampled_from([0.0, 0.3]))})
        configs.append(xb.FitConfig(
            epochs=epochs, batch_size=batch, accumulate_gradients=accumulate,
            seed=data(st.integers(0, 3)), clip_norm=data(st.sampled_from([None, 0.5])),
            lr_schedule=data(st.sampled_from([None, ("exponential", lr, 0.5)])),
            nesterov=optimizer == "sgd" and data(st.booleans())))
    (x, y), _ = digits
    # clip_norm sums each member's squares in another order than clip_grad_norm_; with
    # dropout and lr 1e-2 the round-off grows to 1.8e-5 (adam, 3 members, batch 16,
    # accumulation 2, the third with lr 1e-2, wd 1e-3, rate 0.3, clip 0.5: the same before
    # and after the loop's rewrite)
    check_members(members, configs, (x[:200], y[:200]), weights=5e-5)


def test_a_diverging_member_is_frozen_and_the_others_go_on(digits):
    data, val = digits
    members = [{"optimizer": "sgd", "lr": lr, "init": i} for i, lr in enumerate((0.05, 1e12,
                                                                                0.01))]
    configs = [xb.FitConfig(epochs=2, seed=i) for i in range(3)]
    with pytest.warns(UserWarning):  # the separate run of the diverging member warns
        trainer = check_members(members, configs, data, val)
    assert trainer.stop_reasons == [None, "non-finite", None]
    assert any(msg.startswith("member 1:") for msg in trainer.messages)
    assert all(math.isfinite(float(p.detach().abs().max()))
               for p in trainer.engine.models[1].module.parameters())
    assert len(trainer.engine.models[0].history) == 2 and len(trainer.engine.models[1].history) == 1


def test_stop_ends_every_member_like_a_stopping_callback(digits):
    data, _ = digits
    members = [{"optimizer": "adam", "lr": lr, "init": 0} for lr in (1e-3, 1e-2)]
    configs = [xb.FitConfig(epochs=4, seed=i) for i in range(2)]
    models = [build(m) for m in members]
    trainer = sweep.StackedTrainer(models, configs, data)
    seen = []

    def listener(member, metrics):
        seen.append((member, metrics["epoch"]))
        if metrics["epoch"] == 2:
            trainer.stop()

    trainer.on_epoch_end(listener)
    trainer.run()
    assert trainer.stop_reasons == ["stopped", "stopped"]
    assert seen == [(0, 1), (1, 1), (0, 2), (1, 2)]

    class StopAt2(xb.Callback):
        def on_epoch_end(self, epoch, metrics):
            if epoch == 2:
                self.trainer.stop()

    for member, cfg, model in zip(members, configs, models, strict=True):
        alone = build(member)
        xb.fit(alone, data, cfg, callbacks=[StopAt2()], verbose=False)
        assert_same_run(model, alone)


def test_a_group_runs_in_a_thread_and_its_histories_grow_live(digits):
    data, _ = digits
    models = [build({"optimizer": "adam", "lr": 1e-3, "init": i}) for i in range(2)]
    trainer = sweep.StackedTrainer(models, [xb.FitConfig(epochs=500, seed=0)] * 2, data)
    thread = threading.Thread(target=trainer.run)
    thread.start()
    while models[1].recorder.batch_count < 3:  # rows appear as the batches end
        time.sleep(0.01)
    trainer.stop()
    thread.join(timeout=60)
    assert not thread.is_alive() and trainer.stop_reasons == ["stopped", "stopped"]
    assert len(models[0].batch_history) == len(models[1].batch_history) < 500 * 13


def test_stop_member_freezes_one_member(digits):
    data, _ = digits
    models = [build({"optimizer": "adam", "lr": 1e-3, "init": i}) for i in range(3)]
    trainer = sweep.StackedTrainer(models, [xb.FitConfig(epochs=3, seed=0)] * 3, data)
    trainer.on_epoch_end(lambda m, metrics: trainer.stop_member(1) if m == 1 else None)
    trainer.run()
    assert trainer.stop_reasons == [None, "pruned", None]
    assert [len(m.history) for m in models] == [3, 1, 3]  # frozen before epoch 2 began
    with pytest.raises(ValueError, match="index must be a member index"):
        trainer.stop_member(3)


def test_plan_groups_by_what_must_be_equal():
    def model(width=16, optimizer="adam", rate=0.0):
        return xb.compile(make_spec(rate, width), optimizer=optimizer)

    cfg = xb.FitConfig(epochs=2)
    models = [model(), model(rate=0.3), model(width=8), model(width=8), model(optimizer="sgd"),
              model(), model(), model(), xb.compile(nn.Sequential(OrderedDict(h=nn.Linear(64, 10))),
                                                    input_shape=(None, 64))]
    configs = [cfg, cfg.replace(seed=3, clip_norm=1.0), cfg, cfg, cfg, cfg.replace(batch_size=64),
               cfg.replace(precision="bf16"), cfg.replace(epochs=3), cfg]
    result = sweep.plan(models, configs)
    assert result.groups == [[0, 1], [2, 3]]
    assert set(result.sequential) == {4, 5, 6, 7, 8}
    assert "no other member shares" in result.sequential[4]
    assert "batch_size=64" in result.sequential[5]
    assert "precision='bf16'" in result.sequential[6]
    assert "epochs=3" in result.sequential[7]
    assert "torch.nn.Module" in result.sequential[8]
    text = result.describe()
    assert "stacked group 1: members [0, 1]" in text and "member 8 runs alone" in text


def test_plan_names_unstackable_models():
    conv = (xb.input("input", shape=(None, 1, 8, 8)).conv2d(4, 3).flatten().dense(10))
    trained = xb.compile(make_spec())
    xb.fit(trained, (torch.randn(20, 64), torch.randint(0, 10, (20,))), epochs=1, verbose=False)
    frozen = xb.compile(make_spec()).freeze("hidden")
    models = [xb.compile(conv), xb.compile(conv), trained, frozen]
    result = sweep.plan(models, [xb.FitConfig()] * 4)
    assert "conv2d" in result.sequential[0] and "trained already" in result.sequential[2]
    assert "frozen" in result.sequential[3]


def test_memory_budget_splits_groups():
    models = [xb.compile(make_spec()) for _ in range(5)]
    configs = [xb.FitConfig()] * 5
    one = member_bytes(models[0], 32)
    result = sweep.plan(models, configs, memory_budget=int(2.5 * one))
    assert result.groups == [[0, 1], [2, 3]]
    assert "memory budget" in result.sequential[4]
    assert sweep.plan(models, configs, memory_budget=10 * one).groups == [[0, 1, 2, 3, 4]]


def test_the_default_memory_budget_splits_groups_of_big_models():
    # about a million parameters: 19 MB per member with Adam, so 256 MiB holds 13 of them
    spec = xb.input("input", shape=(None, 64)).dense(2048, activation="relu").dense(512)
    models = [xb.compile(spec, seed=0) for _ in range(16)]
    configs = [xb.FitConfig(batch_size=32)] * 16
    size = sweep.planning.MEMORY_BUDGET // member_bytes(models[0], 32)
    assert 2 <= size < 16
    result = sweep.plan(models, configs)  # "auto": sweep.planning.MEMORY_BUDGET
    assert result.groups == [list(range(size)), list(range(size, 16))]
    assert result.groups == sweep.plan(models, configs, memory_budget="auto").groups
    assert sweep.plan(models, configs, memory_budget=None).groups == [list(range(16))]
    for group in result.groups:
        assert sum(member_bytes(models[m], 32) for m in group) <= sweep.planning.MEMORY_BUDGET


@pytest.mark.parametrize("bad", [0, -5, 1.5, "big", True])
def test_a_bad_memory_budget_is_refused(bad):
    models = [xb.compile(make_spec()) for _ in range(2)]
    with pytest.raises(ValueError, match="memory_budget must be 'auto', None or a number of "
                                         "bytes >= 1; got"):
        sweep.plan(models, [xb.FitConfig()] * 2, memory_budget=bad)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_member_bytes_counts_the_real_weights_gradients_and_optimizer_state(digits,
                                                                            optimizer):
    (x, y), _ = digits
    model = xb.compile(make_spec(width=32), optimizer=optimizer, seed=0)
    xb.fit(model, (x[:64], y[:64]), xb.FitConfig(epochs=1, batch_size=32, seed=0),
           verbose=False)
    params = list(model.module.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    state = sum(t.numel() * t.element_size() for slots in model.torch_optimizer.state.values()
                for t in slots.values() if torch.is_tensor(t) and t.numel() > 1)
    activations = 4 * 3 * 32 * stacked.layer_widths(model)
    assert grads in (0, weights)  # fit may free them; a stacked group holds them
    assert member_bytes(model, 32) - activations == 2 * weights + state


def test_memory_is_members_times_one_model_and_data_is_shared(digits):
    (x, y), _ = digits
    models = [build({"optimizer": "adam", "lr": 1e-3, "init": i}) for i in range(4)]
    trainer = sweep.StackedTrainer(models, [xb.FitConfig(epochs=1, seed=0)] * 4, (x, y))
    trainer.run()
    assert trainer.source.x.data_ptr() == x.data_ptr()  # not copied, let alone per member
    params = sum(p.numel() * 4 for p in models[0].module.parameters())
    assert trainer.engine.net.nbytes() == 4 * params  # gradients freed after the run
    assert trainer.engine.opt.nbytes() == 4 * 2 * params  # Adam's two slots
    state = models[0].torch_optimizer.state_dict()["state"]
    assert set(state[0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_member_loss_equals_each_members_loss():
    torch.manual_seed(0)
    for loss, out, target in [("cross_entropy", torch.randn(3, 5, 4), torch.randint(0, 4, (3, 5))),
                              ("mse", torch.randn(3, 5, 4), torch.randn(3, 5, 4))]:
        model = xb.compile(xb.input("input", shape=(None, 2)).dense(4), loss=loss)
        got = member_loss(model)(out, target)
        want = torch.stack([model.loss(o, t) for o, t in zip(out, target, strict=True)])
        torch.testing.assert_close(got, want)


def test_errors_are_raised_before_training(digits):
    data, _ = digits
    models = [xb.compile(make_spec()) for _ in range(2)]
    cfg = xb.FitConfig(epochs=1)
    with pytest.raises(ValueError, match="configs must be a list of one FitConfig per model"):
        sweep.StackedTrainer(models, [cfg], data)
    with pytest.raises(ValueError, match=r"configs\[1\] must be an xb.FitConfig"):
        sweep.StackedTrainer(models, [cfg, {"epochs": 1}], data)
    with pytest.raises(ValueError, match="one stacked group"):
        sweep.StackedTrainer(models, [cfg, cfg.replace(batch_size=8)], data)
    loader = torch.utils.data.TensorDataset(*data)
    with pytest.raises(ValueError, match="data must be \\(x, y\\) in memory"):
        sweep.StackedTrainer(models, [cfg, cfg], loader)
    assert all(len(m.history) == 0 for m in models)


# ----------------------------------------------------------------- layer kinds own their stacked forward
def stacked_vs_own(models: list[xb.Model], x: torch.Tensor, seeds: list[int] | None):
    """The stacked net's output and each member's own module's, on the same ``(M, B, ...)``
    inputs: in inference (``seeds`` None) or training, dropout drawn from ``seeds``."""
    net = stacked.StackedNet(models)
    gens = None if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]
    got = net.forward(x, gens)
    want = []
    for m, model in enumerate(models):
        module = model.module.train(seeds is not None)
        if seeds is not None:
            torch.manual_seed(seeds[m])
        want.append(module(x[m]))
    return got, torch.stack(want)


@pytest.mark.parametrize("seeds", [None, [3, 4, 5]], ids=["inference", "training"])
def test_every_stackable_kind_equals_each_members_own_module(seeds):
    """Rank-3 inputs too: a stacked softmax normalises the member's own dimension 1."""
    torch.manual_seed(0)
    specs = [xb.input("x", shape=(None, 3, 5)).dense(4, activation="softmax", name="d")
             .dropout(rate, name="p").activation("softmax").flatten().dense(6, name="o")
             .activation("tanh") for rate in (0.0, 0.3, 0.6)]
    assert all(REGISTRY[la.kind].stackable for la in specs[0].layers)
    models = [xb.compile(spec, seed=i) for i, spec in enumerate(specs)]
    got, want = stacked_vs_own(models, torch.randn(3, 7, 3, 5), seeds)
    torch.testing.assert_close(got, want)


def test_a_stacked_net_refuses_members_that_differ_beyond_member_options():
    base = xb.input("x", shape=(None, 4)).dense(3, name="h").dropout(0.1)
    stacked.StackedNet([xb.compile(base), xb.compile(base.replace(1, rate=0.4))])
    with pytest.raises(ValueError, match=r"models\[1\] has another spec"):
        stacked.StackedNet([xb.compile(base), xb.compile(base.replace("h", units=5))])
    conv = xb.compile(xb.input("x", shape=(None, 1, 4, 4)).conv2d(2, 3))
    with pytest.raises(ValueError, match="Conv2D layers have no stacked forward"):
        stacked.StackedNet([conv, conv])


class Scale(nn.Module):
    """``x * weight + bias`` on the last axis (randomly initialised weight)."""

    def __init__(self, features: int):
        super().__init__()
        self.weight = nn.Parameter(1 + 0.5 * torch.randn(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class ScaleKind(LayerKind):
    """A layer kind that only this test knows: one class, registered for the test."""

    kind, type_name = "scale", "Scale"
    help = "A learnt scale and shift per feature, then an optional activation."
    options = (Option("activation", str, None, choices=ACTIVATIONS, optional=True,
                      help="the activation applied to the output"),)

    def build(self, layer: Layer, shape: tuple) -> nn.Module:
        act = layer.options["activation"]
        scale = Scale(shape[-1])
        return nn.Sequential(scale) if act is None else nn.Sequential(scale, make_activation(act))

    def count_params(self, layer: Layer, shape: tuple) -> int:
        return 2 * shape[-1]

    def activation_after(self, layer: Layer, before: str | None) -> str | None:
        return layer.options["activation"]

    def stacked_forward(self, layers, params):
        w, b = params  # (M, features)
        act = stacked_activation(layers[0].options["activation"])

        def forward(h, generators):
            y = h * w.unsqueeze(1) + b.unsqueeze(1)
            return y if act is None else act(y)

        return forward


def test_adding_a_layer_kind_is_one_class(digits, monkeypatch):
    """The kit's files stay as they are: the spec builds, summarises, writes and reads its
    code and JSON, compiles, and a stacked sweep trains it as each member's own fit."""
    monkeypatch.setitem(REGISTRY, "scale", ScaleKind())
    spec = (xb.input("input", shape=(None, 64)).dense(16, activation="relu", name="hidden")
            .scale("tanh").dropout(0.2, name="drop").dense(10, name="output"))
    assert spec.layer_shapes[1] == (Layer("scale", "scale_1", {"activation": "tanh"}), (None, 16))
    assert "scale_1  Scale" in spec.summary() and spec.count_params() == 1040 + 32 + 170
    assert '.scale(activation="tanh")' in spec.to_code() and "scale" in dir(spec)
    assert str(inspect.signature(spec.scale)).startswith("(activation=None, *, name=None)")
    assert run_code(spec.to_code()) == spec == xb.Spec.from_json(spec.to_json())
    assert spec.scale("softmax").output_activation == "softmax"
    with pytest.raises(TypeError, match="option 'activation' twice"):
        spec.scale("relu", activation="tanh")
    with pytest.raises(ValueError, match="layer 's' \\(Scale\\): activation must be one of"):
        spec.scale("cube", name="s")
    model = xb.compile(spec)
    assert model.summary() == spec.summary() and model.count_params() == spec.count_params()
    assert stacked.unstackable_reason(model) is None

    def build_scaled(member: dict) -> xb.Model:
        return xb.compile(spec.replace("drop", rate=member["rate"]), optimizer="adam",
                          learning_rate=member["lr"], seed=member["init"])

    data, val = digits
    members = [{"lr": 3e-3, "init": 0, "rate": 0.2}, {"lr": 1e-2, "init": 1, "rate": 0.5}]
    configs = [xb.FitConfig(epochs=2, batch_size=32, seed=s, accuracy=True) for s in (7, 8)]
    models = [build_scaled(m) for m in members]
    assert sweep.plan(models, configs).groups == [[0, 1]]
    sweep.StackedTrainer(models, configs, data, val).run()
    for member, cfg, model in zip(members, configs, models, strict=True):
        alone = build_scaled(member)
        xb.fit(alone, data, cfg, validation_data=val, verbose=False)
        assert_same_run(model, alone)


def test_unstackable_kinds_are_named_and_the_stackable_ones_listed(monkeypatch):
    conv = xb.compile(xb.input("x", shape=(None, 1, 4, 4)).conv2d(2, 3).batch_norm())
    assert stacked.unstackable_reason(conv) == (
        "its layers include batch_norm, conv2d (the stacked engine handles dense, dropout, "
        "activation, flatten)")
    monkeypatch.setitem(REGISTRY, "scale", ScaleKind())
    assert stacked.unstackable_reason(conv).endswith("dense, dropout, activation, flatten, scale)")


@settings(max_examples=40, deadline=None)
@given(lrs=st.lists(st.floats(1e-5, 1.0), min_size=1, max_size=6),
       step=st.integers(0, 10**6), lagging=st.integers(0, 6))
def test_adams_bias_corrections_are_the_same_on_the_shortcut_as_member_by_member(
        lrs, step, lagging):
    """With every member at one step, the stacked Adam computes its two corrections once;
    the values are bit for bit those computed member by member, in float64 then rounded."""
    spec = xb.input("x", shape=(None, 2)).dense(2)
    models = [xb.compile(spec, learning_rate=lr, seed=0) for lr in lrs]
    opt = stacked.StackedOptimizer("adam", models, stacked.StackedNet(models).params)
    steps = [step] * len(lrs)
    if lagging < len(lrs):
        steps[lagging] = step // 2  # one member behind (one that skipped steps)
    h = opt.hyper(steps)
    expected = (
        [a / (1 - 0.9 ** t) if t else 0.0 for a, t in zip(opt.lr, steps, strict=True)],
        [1 / (1 - 0.999 ** t) ** 0.5 if t else 1.0 for t in steps])
    for key, values in zip(("step_size", "inv_bc2"), expected, strict=True):
        assert torch.equal(h[key], torch.tensor(values, dtype=torch.float64).float()), key


_FINITE_ROWS = torch.compile(finite_rows, backend="inductor", fullgraph=True)


@settings(max_examples=25, deadline=None)
@given(spots=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 40),
                                st.sampled_from([math.nan, math.inf, -math.inf, 3e38])),
                      max_size=4))
def test_the_captured_finite_check_finds_each_members_non_finite_values(spots):
    """The captured steps' gradient check (per member of a stacked step; one row for a
    single model's), compiled by inductor as the steps compile it, flags exactly the
    rows holding a NaN or an infinity (a large finite value is not one), in any tensor,
    at any position."""
    tensors = [torch.randn(5, 41), torch.randn(5, 7, 6), torch.randn(5, 3)]
    for which, member, at, value in spots:
        t = tensors[which % 3]
        t.view(5, -1)[member, at % t[0].numel()] = value
    expected = torch.stack([torch.isfinite(t.reshape(5, -1)).all(dim=1)
                            for t in tensors]).all(dim=0)
    assert _FINITE_ROWS(tensors).tolist() == expected.tolist()
    assert stacked.finite_members(tensors) == expected.tolist()
