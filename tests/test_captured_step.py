"""``compile=True``: the captured step engine (exburn_nb.train.captured) computes what the
eager step computes (float32 round-off: within 1e-5), reuses its graph, and is refused
clearly where it cannot run.

Tiny models: a compile takes seconds; the tests share settings so that most reuse one
graph (and inductor's on-disk cache)."""

import math

import pytest
import torch
import torch._dynamo.utils

import exburn_nb as xb
from exburn_nb.core.layers import REGISTRY, LayerKind
from exburn_nb.train import captured
from exburn_nb.train.captured import CapturedEngine

SPEC = xb.input("x", shape=(None, 8)).dense(16, activation="relu").dropout(0.3).dense(3)
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _data(n=100):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _fit(compile_, compile_options=(), epochs=2, model=None, **options):
    model = model or xb.compile(SPEC, seed=0, **dict(compile_options))
    # 100 samples in batches of 16: six full batches and a ragged one of 4 per epoch
    return xb.fit(model, _data(), epochs=epochs, batch_size=16, seed=0, accuracy=True,
                  verbose=False, compile=compile_, **options)


def _dynamo_graphs() -> int:
    """Graphs torch.compile has built (the stacked sweep's captured step goes through it)."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("compile_options, options", [
    ({}, {}),  # adam, dropout drawn from the seeded generator
    ({"optimizer": "sgd", "learning_rate": 0.1}, {"nesterov": True}),
    ({}, {"clip_norm": 0.05, "clip_value": 0.02}),
    ({}, {"accumulate_gradients": 3}),
    ({"optimizer": "rmsprop"}, {"lr_schedule": ("exponential", 1e-3, 0.5)}),
    ({"optimizer": "adamw", "weight_decay": 0.1}, {}),
    ({}, {"weight_decay": 0.05}),  # adam's L2 decay, added to the gradient
    ({"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 0.01}, {}),
], ids=["adam-dropout", "sgd-nesterov", "clip-norm-and-value", "accumulation", "rmsprop",
        "adamw-decay", "adam-l2", "sgd-decay"])
def test_the_captured_step_equals_the_eager_step(compile_options, options):
    eager = _fit(False, compile_options, **options)
    fast = _fit(True, compile_options, **options)
    for name, p in eager.parameters().items():
        torch.testing.assert_close(fast.parameters()[name], p, **TOL)
    for column in ("loss", "accuracy", "lr"):
        assert fast.history[column].tolist() == pytest.approx(eager.history[column].tolist(),
                                                              rel=1e-5)
    assert fast.batch_history["loss"].tolist() == pytest.approx(
        eager.batch_history["loss"].tolist(), rel=1e-5)
    run = fast.recorder.runs[-1]
    assert ("compile_seconds" in run) == (options.get("accumulate_gradients", 1) == 1)
    # the optimizer state carries on: a later eager fit continues the same way
    again_eager = _fit(False, epochs=1, model=eager)
    again_fast = _fit(False, epochs=1, model=fast)
    for name, p in again_eager.parameters().items():
        torch.testing.assert_close(again_fast.parameters()[name], p, **TOL)


def test_one_graph_for_every_epoch_the_ragged_batch_and_a_second_fit():
    before = captured.graphs_built()
    model = _fit(True, epochs=3, lr_schedule=("step", 1e-3, 1, 0.5))  # a new rate each epoch
    assert captured.graphs_built() - before == 1
    assert model.recorder.runs[-1]["compile_seconds"] > 0
    _fit(True, epochs=2, model=model)  # same shapes and settings: the cached step
    assert captured.graphs_built() - before == 1
    assert len(model.history) == 5
    _fit(True, epochs=1, model=model, clip_norm=1.0)  # other settings: another graph
    assert captured.graphs_built() - before == 2


def test_the_captured_cpu_step_goes_around_dynamo():
    """On the CPU the graph is compiled from a trace and called directly: torch.compile's
    frame hook (and its guards, about 130 µs a call) is not in the step."""
    before = _dynamo_graphs()
    _fit(True, epochs=1)
    assert _dynamo_graphs() == before


def test_without_the_guard_an_epoch_of_captured_and_eager_batches_sums_its_loss():
    """With terminate_on_nan off and no batch callbacks the loop reads no loss: the
    captured step's come as floats, the eager last batch's as a tensor, in one epoch."""
    eager, fast = _fit(False, terminate_on_nan=False), _fit(True, terminate_on_nan=False)
    assert fast.history["loss"].tolist() == pytest.approx(eager.history["loss"].tolist(),
                                                          rel=1e-5)


def test_a_step_taken_between_captured_steps_counts_in_their_bias_correction():
    """An optimizer step outside the engine (train_step from a callback) moves Adam's step
    count; the captured step reads it, as the eager step does."""

    class Extra(xb.Callback):
        def on_batch_begin(self, batch, logs):
            if batch % 3 == 0:
                xb.train_step(self.model, _data(8))

    runs = []
    for compile_ in (False, True):
        model = xb.compile(SPEC, seed=0)
        extra = Extra()
        extra.model = model
        runs.append(_fit(compile_, model=model, callbacks=[extra]))
    for name, p in runs[0].parameters().items():
        torch.testing.assert_close(runs[1].parameters()[name], p, **TOL)


def test_a_refused_captured_step_leaves_weights_and_state_unchanged():
    model = xb.compile(SPEC, seed=0)
    _fit(True, epochs=1, model=model)
    engine = CapturedEngine(model, xb.FitConfig(batch_size=16, accuracy=True, seed=0))
    engine.start([0])
    weights = {k: v.clone() for k, v in model.parameters().items()}
    opt = model.torch_optimizer
    state = {i: {k: v.clone() for k, v in opt.state[p].items()}
             for i, p in enumerate(engine.params)}
    x, y = _data(16)
    x[3, 2] = float("nan")
    losses, _ = engine.forward_backward(x, y, 1.0, [True])
    assert len(losses) == 1 and math.isnan(losses[0]), "read on the host, with the outcome"
    assert engine.step([True]) == ["the gradients are not finite"]
    engine.finish()
    for name, w in weights.items():
        torch.testing.assert_close(model.parameters()[name], w, rtol=0, atol=0)
    for i, p in enumerate(engine.params):
        for k, v in state[i].items():
            torch.testing.assert_close(opt.state[p][k], v, rtol=0, atol=0)


def test_a_refused_step_ends_the_run_as_eagerly():
    def poisoned(compile_):
        model = xb.compile(SPEC, seed=0)
        with torch.no_grad():
            model.module[0].weight[0, 0] = float("inf")
        with pytest.warns(UserWarning, match="the loss is nan"):
            return _fit(compile_, epochs=1, model=model)

    eager, fast = poisoned(False), poisoned(True)
    assert fast.recorder.runs[-1]["config"]["compile"] is True
    assert len(fast.history) == len(eager.history) == 0 or (
        fast.history["loss"].isna().tolist() == eager.history["loss"].isna().tolist())
    for name, p in eager.parameters().items():
        torch.testing.assert_close(fast.parameters()[name], p, rtol=0, atol=0,
                                   equal_nan=True)


def test_without_a_cpp_compiler_compile_is_refused_before_any_step(monkeypatch):
    monkeypatch.setattr(captured.shutil, "which", lambda name: None)
    model = xb.compile(SPEC, seed=0)
    with pytest.raises(ValueError, match=r"compile=True needs a C\+\+ compiler .*g\+\+"):
        _fit(True, model=model)
    assert model.epochs_trained == 0 and not model.recorder.runs


def test_compile_seconds_survive_save_and_load(tmp_path):
    model = _fit(True, epochs=1)
    seconds = model.recorder.runs[-1]["compile_seconds"]
    model.save(tmp_path / "m.exburn")
    assert xb.load(tmp_path / "m.exburn").recorder.runs[-1]["compile_seconds"] == seconds


def _digits_spec(rate):
    s = xb.input("input", shape=(None, 64)).dense(16, activation="relu", name="hidden")
    return (s.dropout(rate, name="drop") if rate else s).dense(10, name="output")


@pytest.mark.parametrize("optimizer, rate", [("adam", 0.0), ("sgd", 0.2)],
                         ids=["adam-captured-forward", "sgd-dropout-eager-forward"])
def test_the_captured_stacked_sweep_equals_the_eager_one(optimizer, rate):
    (x, y), _ = xb.datasets.digits()
    data = (x[:150], y[:150])  # 150 = 4 x 32 + 22: a ragged last batch
    lr = 0.05 if optimizer == "sgd" else 3e-3

    def sweep(compile_):
        models = [xb.compile(_digits_spec(rate), optimizer=optimizer, learning_rate=lr * f,
                             weight_decay=wd, seed=i)
                  for i, (f, wd) in enumerate([(1.0, 0.0), (0.3, 1e-3), (2.0, 1e-2)])]
        configs = [xb.FitConfig(epochs=2, seed=7, accuracy=True, compile=compile_),
                   xb.FitConfig(epochs=2, seed=8, clip_norm=0.5, accuracy=True,
                                compile=compile_, nesterov=optimizer == "sgd"),
                   xb.FitConfig(epochs=2, seed=9, clip_value=0.01, accuracy=True,
                                lr_schedule=("step", lr, 1, 0.5), compile=compile_)]
        return xb.sweep.fit_stacked(models, configs, data)

    eagerly = sweep(False)
    before = _dynamo_graphs(), captured.graphs_built()
    fast = sweep(True)
    if rate:  # the members draw dropout masks eagerly: torch.compile captures the update
        assert _dynamo_graphs() > before[0]
    else:  # the whole step is traced and compiled once, without dynamo; a sweep of the
        # same shapes and settings reuses it
        assert (_dynamo_graphs(), captured.graphs_built()) == (before[0], before[1] + 1)
        again = sweep(True)
        assert captured.graphs_built() == before[1] + 1
        for one, two in zip(fast, again, strict=True):
            assert one.batch_history["loss"].tolist() == two.batch_history["loss"].tolist()
    for eager, member in zip(eagerly, fast, strict=True):
        for name, p in eager.parameters().items():
            torch.testing.assert_close(member.parameters()[name], p, **TOL)
        assert member.batch_history["loss"].tolist() == pytest.approx(
            eager.batch_history["loss"].tolist(), rel=1e-5)
        assert member.history["accuracy"].tolist() == eager.history["accuracy"].tolist()


def test_frozen_layers_stay_put_under_compile():
    def frozen(compile_):
        model = xb.compile(SPEC, seed=0).freeze("dense_1")
        return _fit(compile_, epochs=1, model=model)

    eager, fast = frozen(False), frozen(True)
    start = xb.compile(SPEC, seed=0).parameters()
    for name, p in eager.parameters().items():
        torch.testing.assert_close(fast.parameters()[name], p, **TOL)
        if name.startswith("dense_1."):
            torch.testing.assert_close(p, start[name], rtol=0, atol=0)


class _Gate(torch.nn.Module):
    def forward(self, h):
        return h if float(h.detach().sum()) >= 0 else -h  # Python branching on a value


class _GateKind(LayerKind):
    """A layer kind the tracer cannot follow: it flips the batch when its sum is < 0."""
    kind, type_name, help = "test_gate", "Gate", "Flips the batch when its sum is < 0."

    def output_shape(self, layer, shape):
        return shape

    def build(self, layer, shape):
        return _Gate()

    def stacked_forward(self, layers, params):
        return lambda h, generators: h if float(h.detach().sum()) >= 0 else -h


@pytest.fixture
def gate_spec(monkeypatch):
    """A spec with :class:`_GateKind` between two dense layers (registered for the test)."""
    monkeypatch.setitem(REGISTRY, "test_gate", _GateKind())
    return xb.input("x", shape=(None, 8)).dense(16, activation="relu").test_gate().dense(3)


def test_a_network_the_tracer_cannot_follow_trains_eagerly_with_a_warning(gate_spec):
    spec = gate_spec

    def fit(compile_):
        return xb.fit(xb.compile(spec, seed=0), _data(), epochs=2, batch_size=16, seed=0,
                      verbose=False, compile=compile_)

    eager = fit(False)
    with pytest.warns(RuntimeWarning, match="could not be captured .*; it trains eagerly"):
        fast = fit(True)
    assert "compile_seconds" not in fast.recorder.runs[-1]
    assert fast.history["loss"].tolist() == eager.history["loss"].tolist()
    for name, p in eager.parameters().items():
        torch.testing.assert_close(fast.parameters()[name], p, rtol=0, atol=0)


def test_a_stacked_sweep_the_tracer_cannot_follow_trains_eagerly_with_a_warning(gate_spec):
    spec = gate_spec

    def sweep(compile_):
        models = [xb.compile(spec, learning_rate=lr, seed=0) for lr in (1e-3, 3e-3)]
        return xb.sweep.fit_stacked(models, xb.FitConfig(epochs=2, batch_size=16, seed=0,
                                                         compile=compile_), _data())

    eager = sweep(False)
    built = captured.graphs_built()
    with pytest.warns(RuntimeWarning, match="could not be captured .*; it trains eagerly"):
        fast = sweep(True)
    assert captured.graphs_built() == built
    for one, two in zip(eager, fast, strict=True):
        assert two.history["loss"].tolist() == one.history["loss"].tolist()
        for name, p in one.parameters().items():
            torch.testing.assert_close(two.parameters()[name], p, rtol=0, atol=0)
