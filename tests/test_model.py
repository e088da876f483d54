"""compile and Model: settings, summary, devices, torch modules, inference, freezing."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_reference import (
    assert_state_equal,
    classification_data,
    fit,
    mlp_spec,
    reference_net,
    snapshot,
)

import exburn_nb as xb
from exburn_nb.core.model import gpu_device

NO_GPU = gpu_device() is None


def guide_model(**kwargs) -> xb.Model:
    spec = (xb.input("input", shape=(None, 784))
            .dense(256, activation="relu", name="hidden1").dropout(rate=0.2)
            .dense(128, activation="relu", name="hidden2").dropout(rate=0.2)
            .dense(10, name="output"))
    return xb.compile(spec, **kwargs)


# ----------------------------------------------------------------- compile settings
def test_compile_keeps_the_guide_settings():
    model = guide_model(loss="cross_entropy", optimizer="adam", learning_rate=0.001,
                        device="cpu", weight_decay=1e-4)
    assert model.loss_function == "cross_entropy"
    assert model.optimizer == "adam"
    assert model.weight_decay == 1e-4
    assert model.learning_rate == 0.001
    assert model.device == "cpu"
    group = model.torch_optimizer.param_groups[0]
    assert isinstance(model.torch_optimizer, torch.optim.Adam)
    assert group["lr"] == 0.001 and group["weight_decay"] == 1e-4
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    assert model.input_shape == (None, 784) and model.output_shape == (None, 10)
    assert "235,146 params" in repr(model)


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "hinge"}, "loss must be one of"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"device": "tpu"}, "device must be one of"),
    ({"input_shape": (None, 5)}, "input_shape"),
])
def test_compile_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        xb.compile(mlp_spec(), **kwargs)


def test_compile_rejects_things_that_are_not_models():
    with pytest.raises(ValueError, match="spec_or_module"):
        xb.compile("dense(10)")
    with pytest.raises(ValueError, match="named children"):
        xb.compile(nn.Linear(4, 2))


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_gpu_device_on_a_cpu_only_machine_is_a_clear_error():
    with pytest.raises(ValueError, match="device='gpu'.*no CUDA or Apple MPS GPU"):
        xb.compile(mlp_spec(), device="gpu")
    model = xb.compile(mlp_spec())
    with pytest.raises(ValueError, match="device='gpu'"):
        model.to_device("gpu")
    assert model.device == "cpu"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_auto_device_is_the_cpu_here():
    model = xb.compile(mlp_spec(), device="auto")
    assert model.device == "cpu"
    assert xb.available_devices() == ["cpu"]
    assert all(p.device.type == "cpu" for p in model.parameters().values())


def test_to_device_cpu_is_a_no_op_returning_the_model():
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, classification_data(), epochs=1)
    before = snapshot(model)
    params = list(model.module.parameters())
    state = {k: dict(v) for k, v in model.torch_optimizer.state.items()}
    assert model.to_device("cpu") is model
    assert model.device == "cpu"
    assert all(a is b for a, b in zip(params, model.module.parameters(), strict=True))
    assert_state_equal(model, before)
    assert all(model.torch_optimizer.state[p]["exp_avg"] is state[p]["exp_avg"] for p in state)


# ----------------------------------------------------------------- torch modules
def plain_module() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(hidden=nn.Linear(4, 8), act=nn.ReLU(), out=nn.Linear(8, 3)))


def test_a_torch_module_is_accepted_and_its_children_become_layers():
    module = plain_module()
    weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    model = xb.compile(module, input_shape=(None, 4))
    assert list(model.layers) == ["hidden", "act", "out"]
    assert sorted(model.parameters()) == ["hidden.bias", "hidden.weight", "out.bias",
                                          "out.weight"]
    assert_state_equal(model, weights)  # a module keeps its own weights
    assert model.count_params() == 4 * 8 + 8 + 8 * 3 + 3
    model.freeze("hidden")
    assert model.is_frozen("hidden") and not model.module.hidden.weight.requires_grad


def test_input_shape_gives_each_module_layer_its_output_shape():
    model = xb.compile(plain_module(), input_shape=(None, 4))
    assert model.output_shape == (None, 3)
    rows = [line for line in model.summary().splitlines() if line.startswith("║ ")]
    assert any("hidden" in r and "Linear" in r and "(None, 8)" in r for r in rows)
    assert any("out" in r and "(None, 3)" in r for r in rows)
    out = model.forward(torch.randn(5, 4))  # the shape inference left the module working
    assert out.shape == (5, 3)


def test_input_shape_inference_also_works_for_conv_modules():
    module = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3), pool=nn.MaxPool2d(2),
                                       flat=nn.Flatten(), out=nn.Linear(4 * 3 * 3, 10)))
    model = xb.compile(module, input_shape=(None, 1, 8, 8))
    assert model.output_shape == (None, 10)
    assert model._shapes == [(None, 4, 6, 6), (None, 4, 3, 3), (None, 36), (None, 10)]


def test_input_shape_that_does_not_fit_the_module_is_an_error():
    with pytest.raises(ValueError, match=r"input_shape \(None, 5\) does not fit"):
        xb.compile(plain_module(), input_shape=(None, 5))


def test_module_without_input_shape_trains_and_its_shapes_are_unknown():
    model = xb.compile(plain_module(), optimizer="sgd", learning_rate=0.1)
    assert model.output_shape is None
    assert "?" in model.summary()
    x, y = classification_data(n=32, n_in=4)
    before = model.parameters()["out.weight"].detach().clone()
    fit(model, (x, y), epochs=2)
    assert not torch.equal(before, model.parameters()["out.weight"])
    assert len(model.history) == 2


def test_module_checks_labels_against_the_inferred_output():
    model = xb.compile(plain_module(), input_shape=(None, 4))
    x = torch.randn(6, 4)
    with pytest.raises(ValueError, match="label 3"):
        fit(model, (x, torch.tensor([0, 1, 2, 3, 0, 1])), epochs=1)


def test_module_ending_in_softmax_makes_the_loss_take_probabilities():
    module = nn.Sequential(OrderedDict(out=nn.Linear(4, 3), softmax=nn.Softmax(dim=1)))
    model = xb.compile(module, input_shape=(None, 4))
    assert model.loss.from_probs
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    logits = F.linear(x, module.out.weight, module.out.bias)
    assert xb.evaluate(model, (x, y)) == pytest.approx(F.cross_entropy(logits, y).item(),
                                                       rel=1e-5)


# ----------------------------------------------------------------- summary
def test_summary_is_the_guide_boxed_table():
    text = guide_model().summary()
    lines = text.splitlines()
    assert lines[0].startswith("╔") and lines[0].endswith("╗")
    assert lines[-1].startswith("╚") and lines[-1].endswith("╝")
    assert len({len(line) for line in lines}) == 1  # a rectangle
    assert all(line.startswith(("║", "╠")) for line in lines[1:-1])
    assert "ExBurn Model Summary" in lines[1]
    assert sum(line.startswith("╠") for line in lines) == 2
    for name, kind, shape, count in [("hidden1", "Dense", "(None, 256)", "200,960"),
                                     ("dropout_1", "Dropout", "(None, 256)", "0"),
                                     ("hidden2", "Dense", "(None, 128)", "32,896"),
                                     ("dropout_2", "Dropout", "(None, 128)", "0"),
                                     ("output", "Dense", "(None, 10)", "1,290")]:
        row = next(line for line in lines if f"║ {name} " in line)
        assert row.split()[1:5] == [name, kind, *shape.split()][:4]
        assert f" {count} " in row
    assert "Total params: 235,146" in text
    assert "Trainable params: 235,146" in text
    assert "frozen" not in text and "Non-trainable" not in text


def test_summary_marks_frozen_layers_and_counts_trainable_params():
    model = guide_model()
    model.freeze(["hidden1"])
    text = model.summary()
    row = next(line for line in text.splitlines() if "║ hidden1 " in line)
    assert "frozen" in row
    assert sum("frozen" in line for line in text.splitlines()) == 1
    assert "Total params: 235,146" in text
    assert "Trainable params: 34,186" in text
    assert "Non-trainable params: 200,960" in text
    assert model.count_params(trainable_only=True) == 34_186
    html = model._repr_html_()
    assert "235,146" in html and "34,186" in html and "frozen" in html
    model.unfreeze(["hidden1"])
    assert "Trainable params: 235,146" in model.summary()
    assert "frozen" not in model.summary()


def test_summary_html_of_a_module_model_lists_its_layers():
    module = nn.Sequential(OrderedDict(out=nn.Linear(2, 2)))
    html = xb.compile(module)._repr_html_()
    assert "<td>Linear</td>" in html and "<td>out</td>" in html


# ----------------------------------------------------------------- parameters and inference
def test_parameters_are_named_by_layer():
    model = xb.compile(mlp_spec(dropout=0.5))
    params = model.parameters()
    assert list(params) == ["hidden.weight", "hidden.bias", "output.weight", "output.bias"]
    assert params["hidden.weight"].shape == (8, 6)
    assert all(isinstance(p, torch.Tensor) for p in params.values())


def test_forward_is_inference_mode_and_matches_plain_torch():
    model = xb.compile(mlp_spec(dropout=0.5), seed=0)
    x = torch.randn(20, 6)
    a, b = model.forward(x), model.forward(x)
    assert torch.equal(a, b)  # no dropout
    assert not a.requires_grad
    net = reference_net(model).eval()
    torch.testing.assert_close(a, net(x))
    assert model.module.training  # the mode is restored


def test_predict_in_batches_equals_forward_and_is_on_the_cpu():
    model = xb.compile(mlp_spec(dropout=0.3), seed=0)
    x = torch.randn(50, 6)
    full = model.forward(x)
    for batch_size in (1, 7, 50, 1024):
        out = model.predict(x, batch_size=batch_size)
        assert out.device.type == "cpu"
        torch.testing.assert_close(out, full)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=0)


def test_forward_and_predict_accept_numpy_and_pandas():
    pd = pytest.importorskip("pandas")
    model = xb.compile(mlp_spec(), seed=0)
    x = torch.randn(9, 6)
    expected = model.forward(x)
    torch.testing.assert_close(model.forward(x.numpy()), expected)
    torch.testing.assert_close(model.predict(pd.DataFrame(x.numpy())), expected)
    torch.testing.assert_close(model.forward(x.double().numpy()), expected)


@pytest.mark.parametrize("x", [torch.randn(4, 5), torch.randn(6), torch.randn(2, 6, 1),
                               torch.zeros(0, 6)])
def test_forward_checks_the_input_shape(x):
    model = xb.compile(mlp_spec())
    with pytest.raises(ValueError, match="x"):
        model.forward(x)


# ----------------------------------------------------------------- freezing
def test_freeze_unfreeze_and_queries():
    model = xb.compile(mlp_spec())
    assert model.frozen_layers == set()
    assert model.freeze(["hidden"]) is model
    assert model.is_frozen("hidden") and not model.is_frozen("output")
    assert model.frozen_layers == {"hidden"}
    model.frozen_layers.add("output")  # a copy
    assert model.frozen_layers == {"hidden"}
    assert not any(p.requires_grad for p in model.layers["hidden"].parameters())
    assert model.unfreeze("hidden") is model
    assert model.frozen_layers == set() and not model.is_frozen("hidden")
    assert all(p.requires_grad for p in model.module.parameters())


@pytest.mark.parametrize("call", [
    lambda m: m.freeze(["hidden", "hiden"]),
    lambda m: m.unfreeze(["nope"]),
    lambda m: m.is_frozen("nope"),
])
def test_unknown_layer_names_list_the_real_ones(call):
    model = xb.compile(mlp_spec(dropout=0.1))
    with pytest.raises(ValueError, match="unknown layer") as info:
        call(model)
    for name in ("hidden", "dropout_1", "output"):
        assert name in str(info.value)
    assert model.frozen_layers == set()  # nothing half-done


def test_frozen_layers_do_not_move_under_momentum_and_weight_decay():
    model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=0.1, weight_decay=0.1,
                       seed=0)
    data = classification_data()
    fit(model, data, epochs=1)  # momentum buffers exist for every layer
    model.freeze(["hidden"])
    hidden = model.parameters()["hidden.weight"].detach().clone()
    output = model.parameters()["output.weight"].detach().clone()
    fit(model, data, epochs=2)
    assert torch.equal(model.parameters()["hidden.weight"], hidden)
    assert not torch.equal(model.parameters()["output.weight"], output)
    model.unfreeze(["hidden"])
    fit(model, data, epochs=1)
    assert not torch.equal(model.parameters()["hidden.weight"], hidden)


def test_frozen_batch_norm_keeps_its_statistics_while_training():
    spec = (xb.input("input", shape=(None, 6)).dense(8, activation="tanh", name="hidden")
            .batch_norm(name="bn").dense(3, name="output"))
    model = xb.compile(spec, seed=0)
    data = classification_data()
    fit(model, data, epochs=1)
    model.freeze("bn")
    stats = model.module.bn.running_mean.clone(), model.module.bn.running_var.clone()
    fit(model, data, epochs=1)
    assert torch.equal(model.module.bn.running_mean, stats[0])
    assert torch.equal(model.module.bn.running_var, stats[1])
    model.unfreeze("bn")
    fit(model, data, epochs=1)
    assert not torch.equal(model.module.bn.running_mean, stats[0])


def test_reset_weights_reinitialises_and_clears_history():
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, classification_data(), epochs=2)
    trained = snapshot(model)
    assert model.epochs_trained == 2
    model.reset_weights(seed=5)
    fresh = snapshot(model)
    assert not torch.equal(fresh["hidden.weight"], trained["hidden.weight"])
    assert torch.count_nonzero(fresh["hidden.bias"]) == 0  # the compile-time init
    assert float(fresh["hidden.weight"].abs().max()) <= (6 / (6 + 8)) ** 0.5
    assert model.history.empty and model.batch_history.empty
    assert model.epochs_trained == 0
    assert not model.torch_optimizer.state
    model.reset_weights(seed=5)
    assert_state_equal(model, fresh)  # the seed makes it reproducible


def test_reset_weights_with_a_seed_gives_the_compile_weights():
    spec = xb.input("input", shape=(None, 6)).dense(8, activation="relu", name="hidden") \
        .batch_norm().dense(3, name="output")
    model = xb.compile(spec, seed=7)
    fresh = {k: v.clone() for k, v in model.module.state_dict().items()}
    xb.fit(model, (torch.randn(32, 6), torch.randint(0, 3, (32,))), epochs=2, verbose=False)
    model.reset_weights(seed=7)
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, fresh[name]), name
    assert model.history.empty and not model.torch_optimizer.state


# ----------------------------------------------------------------- argument messages
@pytest.mark.parametrize("seed", ["x", 1.5, -1, 2**64, True, [1]])
def test_compile_rejects_bad_seeds_by_name(seed):
    with pytest.raises(ValueError, match=r"seed must be None or an integer in \[0, 2\*\*64 - 1\]"):
        xb.compile(mlp_spec(), seed=seed)
    with pytest.raises(ValueError, match="seed"):
        xb.compile(mlp_spec()).reset_weights(seed=seed)


def test_the_largest_seed_is_accepted():
    a = xb.compile(mlp_spec(), seed=2**64 - 1)
    b = xb.compile(mlp_spec(), seed=2**64 - 1)
    assert_state_equal(a, snapshot(b))


@pytest.mark.parametrize("names", [None, 123, [1], ["hidden", None], {"hidden": 1}.values(), b"hidden"])
@pytest.mark.parametrize("method", ["freeze", "unfreeze"])
def test_freeze_and_unfreeze_name_their_argument(names, method):
    model = xb.compile(mlp_spec())
    model.freeze("output")
    with pytest.raises(ValueError, match="names must be a layer name or a list of layer names"):
        getattr(model, method)(names)
    assert model.frozen_layers == {"output"}


def test_is_frozen_names_its_argument():
    with pytest.raises(ValueError, match="name must be a layer name"):
        xb.compile(mlp_spec()).is_frozen(None)


@pytest.mark.parametrize("params", [None, [1, 2], "w", {"hidden.weight": [[0.0]]}])
def test_load_params_rejects_what_is_not_a_parameter_dict(params):
    model = xb.compile(mlp_spec(), seed=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="params"):
        model.load_params(params)
    assert_state_equal(model, before)


def test_load_params_checks_every_tensor_before_copying_any():
    model = xb.compile(mlp_spec(), seed=0)
    params = {k: v.clone() + 1 for k, v in model.module.state_dict().items()}
    params["output.bias"] = torch.zeros(3, dtype=torch.long)  # the last one is wrong
    before = snapshot(model)
    with pytest.raises(ValueError, match="output.bias"):
        model.load_params(params)
    assert_state_equal(model, before)
