"""``xb.to_torch_code``: the generated plain-PyTorch script trains to the weights ``xb.fit``
reaches with the same seeds (run in a subprocess on saved data, and in-process for the
many configurations), and says clearly what it cannot write."""

import ast
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import exburn_nb as xb
from exburn_nb.core.codegen import ACTIVATION_CODE
from exburn_nb.core.layers import ACTIVATIONS, REGISTRY, LayerKind, Option
from exburn_nb.core.optim import make_schedule

# Same ops in the same order on the same CPU: the weights come out bit for bit equal here
# (measured: max |difference| 0.0); the tolerance leaves room for other BLAS builds.
ATOL = 1e-6
N = 240  # digits samples per test


def script_namespace(code):
    """The generated script as a module, its ``__main__`` block not run."""
    namespace = {"__name__": "generated"}
    exec(compile(code, "<generated>", "exec"), namespace)  # noqa: S102 - the code under test
    return namespace


def imports(code):
    tree = ast.parse(code)
    return ({a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
            | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)})


def assert_same_weights(model, state, loss=None):
    kit = model.module.state_dict()
    assert set(kit) == set(state)
    for name, value in kit.items():
        torch.testing.assert_close(state[name].float(), value.float(), rtol=0, atol=ATOL,
                                   msg=name)
    if loss is not None:
        assert loss == pytest.approx(model.history["loss"].iloc[-1], rel=1e-6)


def fit_and_generate(spec, data, config, **compile_options):
    """``xb.fit`` of ``xb.compile(spec, **compile_options)``, and the generated script's
    ``train`` on the same data: (model, script's state_dict, script's last loss)."""
    code = xb.to_torch_code(spec, config, **compile_options)
    model = xb.fit(xb.compile(spec, **compile_options), data, config, verbose=False)
    ns = script_namespace(code)
    x, y = data
    net, loss = ns["train"](torch.as_tensor(x).float(), ns["prepare_targets"](torch.as_tensor(y)))
    return model, net.state_dict(), loss


@pytest.fixture(scope="module")
def small_digits(digits):
    (x, y), _ = digits
    return x[:N], y[:N]


def mlp_spec(dropout=0.3, output_activation=None):
    return (xb.input("input", shape=(None, 64)).dense(32, activation="relu", name="hidden")
            .dropout(dropout).dense(10, activation=output_activation, name="output"))


def test_the_script_run_in_a_subprocess_trains_to_fits_weights(small_digits, tmp_path):
    """Adam, seeded dropout, a step schedule, norm clipping and accumulation (a ragged
    last group: 240 samples in batches of 32 are 8 batches, in groups of 3)."""
    x, y = small_digits
    config = xb.FitConfig(epochs=3, batch_size=32, seed=7, lr_schedule=("step", 0.01, 2, 0.5),
                          clip_norm=0.5, accumulate_gradients=3)
    code = xb.to_torch_code(mlp_spec(), config, seed=0)
    assert "exburn_nb" not in imports(code)
    compile(code, "train.py", "exec")
    (tmp_path / "train.py").write_text(code)
    np.savez(tmp_path / "data.npz", x=np.asarray(x), y=np.asarray(y))
    done = subprocess.run([sys.executable, "train.py", "data.npz", "weights.pt"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    model = xb.fit(xb.compile(mlp_spec(), seed=0), (x, y), config, verbose=False)
    assert_same_weights(model, state)
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"epoch 3/3: loss {model.history['loss'].iloc[-1]:.4f}"


@pytest.mark.parametrize("optimizer, compile_options, options", [
    ("sgd", {"learning_rate": 0.05}, {"lr_schedule": ("exponential", 0.05, 0.8),
                                      "clip_value": 0.1, "weight_decay": 1e-3}),
    ("sgd", {"learning_rate": 0.05, "weight_decay": 1e-4},
     {"nesterov": True, "shuffle": False, "lr_schedule": ("cosine", 0.05, 0.001)}),
    ("adam", {"learning_rate": 3e-3}, {"accumulate_gradients": 2, "clip_norm": 1.0,
                                       "clip_value": 0.5}),
    ("adamw", {"learning_rate": 3e-3, "weight_decay": 0.05}, {}),
    ("rmsprop", {"learning_rate": 1e-3}, {"lr_schedule": ("step", 1e-3, 1, 0.7)}),
])
def test_each_optimizer_and_schedule_trains_to_fits_weights(small_digits, optimizer,
                                                             compile_options, options):
    config = xb.FitConfig(epochs=3, batch_size=40, seed=3, **options)
    model, state, loss = fit_and_generate(mlp_spec(), small_digits, config, optimizer=optimizer,
                                          seed=1, **compile_options)
    assert_same_weights(model, state, loss)


def test_bf16_autocast_trains_to_fits_weights(small_digits):
    config = xb.FitConfig(epochs=2, batch_size=32, seed=0, precision="bf16")
    model, state, loss = fit_and_generate(mlp_spec(), small_digits, config, seed=0)
    assert_same_weights(model, state, loss)


def test_torch_compile_is_written_when_the_run_compiles():
    code = xb.to_torch_code(mlp_spec(), xb.FitConfig(compile=True))
    assert "compiled = torch.compile(model)" in code and "loss_fn(compiled(xb), yb)" in code
    compile(code, "<x>", "exec")


def test_a_cnn_with_batch_norm_and_a_softmax_output_trains_to_fits_weights(small_digits):
    x, y = small_digits
    spec = (xb.input("image", shape=(None, 1, 8, 8)).conv2d(4, 3, activation="relu")
            .batch_norm().conv2d(6, 3, stride=2, activation="tanh").max_pool2d()
            .conv2d(4, 1, padding="valid").flatten().dropout(0.2).dense(12).batch_norm()
            .activation("gelu").dense(10, activation="softmax"))
    config = xb.FitConfig(epochs=2, batch_size=32, seed=0)
    model, state, loss = fit_and_generate(spec, (x.reshape(-1, 1, 8, 8), y), config, seed=0)
    assert_same_weights(model, state, loss)  # running statistics included


@pytest.mark.parametrize("loss, activation, targets", [
    ("mse", None, "column"), ("mse", "tanh", "flat"),
    ("binary_cross_entropy", None, "flat"), ("binary_cross_entropy", "sigmoid", "column"),
    ("cross_entropy", None, "one_hot"),
])
def test_each_loss_and_target_form_trains_to_fits_weights(small_digits, loss, activation,
                                                          targets):
    x, y = small_digits
    y = torch.as_tensor(y)
    classes = 10 if targets == "one_hot" else 1
    target = {"column": (y % 2).float().view(-1, 1), "flat": (y % 2).float(),
              "one_hot": nn.functional.one_hot(y, 10).float()}[targets]
    spec = (xb.input("input", shape=(None, 64)).dense(16, activation="elu")
            .dense(classes, activation=activation))
    config = xb.FitConfig(epochs=2, batch_size=32, seed=0)
    model, state, last = fit_and_generate(spec, (x, target), config, loss=loss, seed=2)
    assert_same_weights(model, state, last)


def test_a_compiled_model_gives_its_settings_and_frozen_layers(small_digits):
    x, y = small_digits
    spec = (xb.input("input", shape=(None, 64)).dense(24, activation="silu", name="hidden")
            .batch_norm(name="bn").dropout(0.25).dense(10, name="output"))
    make = lambda: xb.compile(spec, optimizer="sgd", learning_rate=0.03,  # noqa: E731
                              weight_decay=1e-3, seed=5).freeze(["hidden", "bn"])
    config = xb.FitConfig(epochs=2, batch_size=32, seed=4)
    code = xb.to_torch_code(make(), config, seed=5)
    assert "FROZEN = ['bn', 'hidden']" in code and "torch.optim.SGD(" in code
    model = xb.fit(make(), (x, y), config, verbose=False)
    ns = script_namespace(code)
    net, loss = ns["train"](torch.as_tensor(x), ns["prepare_targets"](torch.as_tensor(y)))
    assert_same_weights(model, net.state_dict(), loss)
    assert not any(p.requires_grad for p in net.hidden.parameters())


@pytest.mark.parametrize("fn", ACTIVATIONS)
def test_every_activation_computes_what_the_kits_layer_computes(fn):
    spec = (xb.input("input", shape=(None, 6)).dense(5, activation=fn).activation(fn)
            .dense(3))
    assert_the_scripts_net_is_the_model(spec, xb.to_torch_code(spec, seed=0))


def assert_the_scripts_net_is_the_model(spec, code):
    """The script's ``Net`` starts from the compiled model's weights and computes the same."""
    ns = script_namespace(code)
    torch.manual_seed(0)
    net = ns["Net"]()
    ns["init_weights"](net)
    model = xb.compile(spec, seed=0)
    assert_same_weights(model, net.state_dict())
    x = torch.randn(4, 6)
    torch.testing.assert_close(net.eval()(x), model.predict(x), rtol=0, atol=ATOL)


def test_layers_named_like_python_keywords_are_written_as_names():
    spec = (xb.input("input", shape=(None, 6)).dense(5, activation="relu", name="lambda")
            .dropout(0.1, name="pass").batch_norm(name="class").dense(3, name="return"))
    assert_the_scripts_net_is_the_model(spec, xb.to_torch_code(spec, seed=0))


def test_every_activation_has_code():
    assert set(ACTIVATION_CODE) == set(ACTIVATIONS)


@pytest.mark.parametrize("schedule", [("step", 0.1, 3, 0.5), ("exponential", 0.2, 0.9),
                                      ("cosine", 0.1, 0.001), ("step", 1, 2, 2)])
def test_the_schedule_gives_the_kits_rates(schedule):
    ns = script_namespace(xb.to_torch_code(mlp_spec(), xb.FitConfig(epochs=7,
                                                                    lr_schedule=schedule)))
    kit = make_schedule(schedule, 7)
    assert [ns["lr_at"](e) for e in range(7)] == [kit(e) for e in range(7)]


def test_the_defaults_write_a_script_that_compiles():
    code = xb.to_torch_code(xb.input("input", shape=(None, 3)).dense(2))
    compile(code, "<x>", "exec")
    assert "INIT_SEED = None" in code and "SEED = None" in code and "lr_at" not in code


class _Scale(LayerKind):
    kind, type_name, help = "scale", "Scale", "Multiplies by a constant."
    options = (Option("factor", float, help="the constant"),)


def test_a_layer_it_cannot_write_is_named(monkeypatch):
    monkeypatch.setitem(REGISTRY, "scale", _Scale())
    spec = xb.input("input", shape=(None, 3)).dense(4).scale(2.0, name="twice").dense(2)
    with pytest.raises(ValueError, match=r"layer 'twice' \(Scale\): to_torch_code cannot"):
        xb.to_torch_code(spec)


def test_bad_sources_and_options_are_refused_with_their_name(mlp):
    spec = mlp_spec()
    with pytest.raises(ValueError, match="lr_schedule: a callable"):
        xb.to_torch_code(spec, xb.FitConfig(lr_schedule=lambda e: 0.1))
    with pytest.raises(ValueError, match="nesterov=True needs optimizer 'sgd'"):
        xb.to_torch_code(spec, xb.FitConfig(nesterov=True))
    with pytest.raises(ValueError, match="config must be an xb.FitConfig"):
        xb.to_torch_code(spec, {"epochs": 3})
    with pytest.raises(ValueError, match="colour: not an option"):
        xb.to_torch_code(spec, colour="red")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        xb.to_torch_code(spec, optimizer="lbfgs")
    with pytest.raises(ValueError, match="learning_rate: a compiled model's"):
        xb.to_torch_code(mlp(), learning_rate=0.1)
    with pytest.raises(ValueError, match="seed"):
        xb.to_torch_code(mlp(), seed=-1)
    module_model = xb.compile(nn.Sequential(OrderedDict(out=nn.Linear(3, 2))))
    with pytest.raises(ValueError, match="compiled from a torch.nn.Module"):
        xb.to_torch_code(module_model)
    with pytest.raises(ValueError, match="source must be an exburn_nb spec"):
        xb.to_torch_code("dense(3)")


def test_the_builder_shows_the_drafts_pytorch_code_in_a_tab():
    from exburn_nb.widgets import ModelBuilder

    b = ModelBuilder(input_shape=(None, 8), output_units=3, loss="cross_entropy", epochs=4,
                     batch_size=16)
    b.add("dense", units=5, activation="relu")
    b.optimizer.value, b.learning_rate.value, b.seed.value = "sgd", 0.02, 3
    text = b.torch_code_box.value
    assert text == xb.to_torch_code(b.spec, xb.FitConfig(epochs=4, batch_size=16),
                                    loss="cross_entropy", optimizer="sgd", learning_rate=0.02,
                                    weight_decay=0.0, device="cpu", seed=3)
    compile(text, "<x>", "exec")
    assert b.code_tabs.get_title(1) == "PyTorch" and b.code_tabs.children[1] is b.torch_code_box
    b.add("dropout", rate=0.2)
    assert "Dropout(0.2)" in b.torch_code_box.value
    compile(b.torch_code_box.value, "<x>", "exec")
