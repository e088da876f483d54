"""fit: clipping, accumulation, continuing runs, history, NaN guard, interrupts, input
checks and input types, checked against hand-written PyTorch loops."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch_reference import (
    assert_same_params,
    assert_state_equal,
    classification_data,
    fit,
    hand_loop,
    mlp_spec,
    reference_net,
    regression_data,
    snapshot,
)

import exburn_nb as xb
from exburn_nb.core.data import to_tensor

TIMING = ["seconds", "samples_per_s"]


def sgd_model(**kwargs) -> xb.Model:
    kwargs.setdefault("learning_rate", 0.05)
    return xb.compile(mlp_spec(**kwargs.pop("spec", {})), optimizer="sgd", seed=0, **kwargs)


# ----------------------------------------------------------------- clipping
def clipped_reference(model, x, y, clip_norm=None, clip_value=None, order="value-norm"):
    net = reference_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=model.learning_rate, momentum=0.9)

    def clip(module):
        if order == "value-norm":
            if clip_value is not None:
                torch.nn.utils.clip_grad_value_(module.parameters(), clip_value)
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
        else:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
            torch.nn.utils.clip_grad_value_(module.parameters(), clip_value)

    hand_loop(net, opt, x, y, F.mse_loss, 2, 16, before_step=clip)
    return net


@pytest.mark.parametrize("clip", [{"clip_norm": 0.5}, {"clip_value": 0.05},
                                  {"clip_norm": 0.1, "clip_value": 0.05}])
def test_clipping_matches_torch_nn_utils(clip):
    x, y = regression_data(n=48, n_out=3, scale=10.0)
    spec = {"n_out": 3}
    model = sgd_model(spec=spec, loss="mse", learning_rate=0.01)
    unclipped = sgd_model(spec=spec, loss="mse", learning_rate=0.01)
    net = clipped_reference(model, x, y, **clip)
    fit(model, (x, y), epochs=2, batch_size=16, shuffle=False, **clip)
    fit(unclipped, (x, y), epochs=2, batch_size=16, shuffle=False)
    assert_same_params(model, net)
    # clipping bit: without it the weights end elsewhere
    difference = (model.parameters()["output.weight"] - unclipped.parameters()["output.weight"])
    assert difference.abs().max() > 1e-3


def test_both_clips_apply_value_first_then_norm():
    x, y = regression_data(n=48, n_out=3, scale=10.0)
    model = sgd_model(spec={"n_out": 3}, loss="mse", learning_rate=0.01)
    value_first = clipped_reference(model, x, y, clip_norm=0.1, clip_value=0.05)
    norm_first = clipped_reference(model, x, y, clip_norm=0.1, clip_value=0.05,
                                   order="norm-value")
    fit(model, (x, y), epochs=2, batch_size=16, shuffle=False, clip_norm=0.1, clip_value=0.05)
    assert_same_params(model, value_first)
    with pytest.raises(AssertionError):
        assert_same_params(model, norm_first)


# ----------------------------------------------------------------- accumulation
@pytest.mark.parametrize("optimizer, atol", [("sgd", 1e-6), ("adam", 1e-5)])
@pytest.mark.parametrize("n_accumulate", [2, 4])
def test_accumulation_equals_one_step_on_the_big_batch(optimizer, atol, n_accumulate):
    x, y = classification_data(n=32)
    kwargs = {"optimizer": optimizer, "learning_rate": 0.05, "seed": 0}
    small = xb.compile(mlp_spec(), **kwargs)
    big = xb.compile(mlp_spec(), **kwargs)
    plain = xb.compile(mlp_spec(), **kwargs)
    fit(small, (x, y), epochs=2, batch_size=4, accumulate_gradients=n_accumulate, shuffle=False)
    fit(big, (x, y), epochs=2, batch_size=4 * n_accumulate, shuffle=False)
    fit(plain, (x, y), epochs=2, batch_size=4, shuffle=False)
    for a, b in zip(small.parameters().values(), big.parameters().values(), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)
    assert small.history["loss"].tolist() == pytest.approx(big.history["loss"].tolist(),
                                                           rel=1e-5)
    steps = small.batch_history["step"].tolist()
    assert len(steps) == 2 * 8
    assert steps == [(i + 1) // n_accumulate for i in range(16)]  # steps done after batch i
    assert big.batch_history["step"].tolist() == list(range(1, 2 * 8 // n_accumulate + 1))
    # accumulating is not the same as stepping every small batch
    diff = small.parameters()["hidden.weight"] - plain.parameters()["hidden.weight"]
    assert diff.abs().max() > 1e-3


# ----------------------------------------------------------------- continuing and history
def test_second_fit_continues_numbering_history_and_optimizer_state():
    x, y = classification_data(n=48)
    once = xb.compile(mlp_spec(), optimizer="adam", learning_rate=0.01, seed=0)
    twice = xb.compile(mlp_spec(), optimizer="adam", learning_rate=0.01, seed=0)
    fit(once, (x, y), epochs=5, batch_size=16, shuffle=False, validation_data=(x, y))
    assert fit(twice, (x, y), epochs=2, batch_size=16, shuffle=False,
               validation_data=(x, y)) is twice
    fit(twice, (x, y), epochs=3, batch_size=16, shuffle=False, validation_data=(x, y))
    assert_state_equal(twice, snapshot(once))
    assert twice.history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert twice.epochs_trained == 5
    pd.testing.assert_frame_equal(twice.history.drop(columns=[*TIMING, "run"]),
                                  once.history.drop(columns=[*TIMING, "run"]))
    pd.testing.assert_frame_equal(twice.batch_history.drop(columns="run"),
                                  once.batch_history.drop(columns="run"))
    assert twice.history["run"].tolist() == [1, 1, 2, 2, 2]  # two fit calls, two runs
    assert twice.runs["epochs"].tolist() == [2, 3]
    state = twice.torch_optimizer.state[twice.module.hidden.weight]
    assert int(state["step"]) == 5 * 3


def test_history_columns_dtypes_and_plain_python_values():
    x, y = classification_data(n=48)
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, (x, y), epochs=2)
    assert model.history.columns.tolist() == ["epoch", "loss", "lr", "seconds", "samples_per_s",
                                              "run"]
    fit(model, (x, y), epochs=2, validation_data=(x, y), accuracy=True)
    frame = model.history
    assert frame.columns.tolist() == ["epoch", "loss", "val_loss", "accuracy", "val_accuracy",
                                      "lr", "seconds", "samples_per_s", "run"]
    assert frame["epoch"].dtype == np.int64 and frame["run"].tolist() == [1, 1, 2, 2]
    assert all(frame[c].dtype == np.float64 for c in frame.columns if c not in ("epoch", "run"))
    assert frame["epoch"].tolist() == [1, 2, 3, 4]
    # the two first epochs had no validation: missing, never NaN-filled into the rows
    rows = model.recorder.epoch_rows
    assert "val_loss" not in rows[0] and "val_loss" in rows[3]
    for row in rows:
        for key, value in row.items():
            assert type(value) in (int, float), (key, type(value))
            assert math.isfinite(value)
    json.dumps(model.recorder.to_state(), allow_nan=False)
    assert (frame[["seconds", "samples_per_s"]] > 0).all().all()
    assert frame["lr"].tolist() == [0.001] * 4


def test_batch_history_has_one_row_per_batch():
    x, y = classification_data(n=50)
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, (x, y), epochs=3, batch_size=16, shuffle=False)
    batches = model.batch_history
    assert len(batches) == 3 * 4
    assert batches["epoch"].tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert batches["batch"].tolist() == [1, 2, 3, 4] * 3
    assert batches["step"].tolist() == list(range(1, 13))
    assert batches.dtypes.tolist() == [np.int64] * 3 + [np.float64] * 2 + [np.int64]
    sizes = np.array([16, 16, 16, 2])
    for epoch in (1, 2, 3):
        losses = batches.loc[batches["epoch"] == epoch, "loss"].to_numpy()
        expected = float((losses * sizes).sum() / sizes.sum())  # the ragged batch weighs less
        assert model.history.loc[epoch - 1, "loss"] == pytest.approx(expected)


def test_recorded_batch_losses_are_the_losses_torch_computes():
    x, y = classification_data(n=48)
    model = sgd_model()
    net = reference_net(model)
    losses = hand_loop(net, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9), x, y,
                       F.cross_entropy, 2, 16)
    fit(model, (x, y), epochs=2, batch_size=16, shuffle=False)
    assert model.batch_history["loss"].tolist() == pytest.approx(losses, rel=1e-6)


def test_val_loss_and_accuracy_are_evaluate_on_the_epoch_end_weights():
    x, y = classification_data(n=48)
    vx, vy = classification_data(n=30, seed=7)
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, (x, y), epochs=2, validation_data=(vx, vy), accuracy=True)
    loss, acc = xb.evaluate(model, (vx, vy), accuracy=True)
    assert model.history["val_loss"].iloc[-1] == pytest.approx(loss)
    assert model.history["val_accuracy"].iloc[-1] == pytest.approx(acc)


def test_epoch_loss_covers_every_sample_once_even_shuffled():
    """With a negligible learning rate the weights stay put, so the epoch's mean loss must be
    the loss over the whole data set, whatever the order of the batches."""
    x, y = classification_data(n=53)
    model = xb.compile(mlp_spec(), optimizer="sgd", learning_rate=1e-30, seed=0)
    loss, acc = xb.evaluate(model, (x, y), accuracy=True)
    fit(model, (x, y), epochs=2, batch_size=8, shuffle=True, accuracy=True)
    assert model.history["loss"].tolist() == pytest.approx([loss, loss], rel=1e-5)
    assert model.history["accuracy"].tolist() == pytest.approx([acc, acc])


def test_shuffle_changes_the_batches():
    x, y = classification_data(n=48)
    ordered, shuffled = sgd_model(), sgd_model()
    fit(ordered, (x, y), epochs=1, batch_size=8, shuffle=False)
    torch.manual_seed(0)
    fit(shuffled, (x, y), epochs=1, batch_size=8, shuffle=True)
    assert ordered.batch_history["loss"].tolist() != shuffled.batch_history["loss"].tolist()


def test_zero_epochs_trains_nothing():
    model = sgd_model()
    before = snapshot(model)
    assert fit(model, classification_data(), epochs=0) is model
    assert_state_equal(model, before)
    assert model.history.empty and model.epochs_trained == 0


def test_verbose_prints_one_line_per_epoch(capsys):
    model = sgd_model()
    xb.fit(model, classification_data(), epochs=2, verbose=True)
    out = capsys.readouterr().out
    assert "Epoch 1: loss=" in out and "Epoch 2: loss=" in out
    model = sgd_model()
    xb.fit(model, classification_data(), epochs=2, verbose=False)
    assert "Epoch" not in capsys.readouterr().out


# ----------------------------------------------------------------- NaN guard
def assert_all_finite(model):
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters().values())
    for frame in (model.history, model.batch_history):
        values = frame.drop(columns=["epoch"]).to_numpy(dtype=float)
        assert np.isfinite(values).all()


@pytest.mark.parametrize("optimizer, lr", [("sgd", 1e10), ("sgd", 1e20), ("adam", 1e12)])
def test_a_huge_learning_rate_stops_with_a_warning_and_finite_state(optimizer, lr):
    x, y = regression_data(n=64, n_out=1, scale=100.0)
    model = xb.compile(mlp_spec(n_out=1, activation="relu"), loss="mse", optimizer=optimizer,
                       learning_rate=lr, seed=0)
    with pytest.warns(UserWarning, match="the loss is (nan|inf)"):
        fit(model, (x, y), epochs=5, batch_size=8, shuffle=False)
    assert_all_finite(model)
    assert len(model.batch_history) < 5 * 8  # it stopped early
    assert model.epochs_trained == 1


@pytest.mark.parametrize("where", ["x", "y", "vx", "vy"])
def test_non_finite_data_is_refused_before_any_step_naming_the_argument(where):
    x, y = regression_data(n=32, n_out=1)
    vx, vy = x.clone(), y.clone()
    {"x": x, "y": y, "vx": vx, "vy": vy}[where][3, 0] = float("nan")
    {"x": x, "y": y, "vx": vx, "vy": vy}[where][5, 0] = float("inf")
    model = xb.compile(mlp_spec(n_out=1), loss="mse", seed=0)
    before = snapshot(model)
    name = {"x": "data x", "y": "data y", "vx": "validation_data x",
            "vy": "validation_data y"}[where]
    with pytest.raises(ValueError, match=f"{name} holds 2 non-finite values"):
        fit(model, (x, y), epochs=3, batch_size=8, validation_data=(vx, vy))
    assert_state_equal(model, before)
    assert model.history.empty and model.batch_history.empty


@pytest.mark.parametrize("activation, symptom", [
    ("relu", "the loss is (inf|nan)"),
    # tanh saturates: the loss stays finite but the gradients are NaN (inf * 0)
    ("tanh", "the gradients are not finite"),
])
def test_data_with_inf_stops_before_the_first_step(activation, symptom):
    x, y = regression_data(n=32, n_out=1)
    x[0, 0] = float("inf")
    model = xb.compile(mlp_spec(n_out=1, activation=activation), loss="mse", seed=0)
    before = snapshot(model)
    with pytest.warns(UserWarning, match=f"epoch 1, batch 1: {symptom}"):
        fit(model, (x, y), epochs=3, batch_size=8, shuffle=False, check_data=False)
    assert_state_equal(model, before)
    assert_all_finite(model)
    assert model.history.empty and model.batch_history.empty


def test_nan_in_a_later_batch_keeps_the_finite_steps_before_it():
    x, y = regression_data(n=32, n_out=1)
    x[20, 0] = float("nan")  # batch 3 of 4
    model = xb.compile(mlp_spec(n_out=1), loss="mse", optimizer="sgd", learning_rate=0.01,
                       seed=0)
    net = reference_net(model)
    hand_loop(net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), x[:16], y[:16],
              F.mse_loss, 1, 8)
    with pytest.warns(UserWarning, match="batch 3"):
        fit(model, (x, y), epochs=2, batch_size=8, shuffle=False, check_data=False)
    assert_same_params(model, net)
    assert model.batch_history["step"].tolist() == [1, 2]
    assert_all_finite(model)


def test_non_finite_validation_stops_and_the_epoch_is_recorded_without_it():
    x, y = regression_data(n=32, n_out=1)
    vx = x.clone()
    vx[0, 0] = float("nan")
    model = xb.compile(mlp_spec(n_out=1), loss="mse", seed=0)
    with pytest.warns(UserWarning, match="validation gave a non-finite value"):
        fit(model, (x, y), epochs=3, validation_data=(vx, y), check_data=False)
    # the weights hold epoch 1, so the history does too (without the NaN val_loss)
    assert model.history["epoch"].tolist() == [1] and "val_loss" not in model.history
    assert len(model.batch_history) == 1
    assert_all_finite(model)
    fit(model, (x, y), epochs=1)  # the next run numbers on: no duplicate epoch rows
    assert model.history["epoch"].tolist() == [1, 2]


def test_a_step_that_overflows_the_weights_keeps_the_last_finite_weights():
    x, y = regression_data(n=64, n_out=1, scale=100.0)
    x = x * 10
    model = xb.compile(mlp_spec(n_out=1, activation="relu"), loss="mse", optimizer="adam",
                       learning_rate=1e36, seed=0)  # lr * exp_avg overflows float32
    with pytest.warns(UserWarning, match="overflowed the weights"):
        fit(model, (x, y), epochs=2, batch_size=8, shuffle=False)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters().values())
    # the refused step is not recorded: every recorded step is in the weights
    assert model.batch_history["step"].tolist() == list(range(1, len(model.batch_history) + 1))


# ----------------------------------------------------------------- interrupts and stops
class InterruptAt(xb.Callback):
    def __init__(self, epoch, batch, exc=KeyboardInterrupt):
        self.epoch, self.batch, self.exc = epoch, batch, exc

    def on_batch_end(self, batch, logs):
        if (logs["epoch"], batch) == (self.epoch, self.batch):
            raise self.exc


def test_keyboard_interrupt_returns_the_model_consistent_up_to_the_last_batch():
    x, y = classification_data(n=48)
    model = sgd_model()
    net = reference_net(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    hand_loop(net, opt, x, y, F.cross_entropy, 1, 8)      # epoch 1: 6 batches
    hand_loop(net, opt, x[:16], y[:16], F.cross_entropy, 1, 8)  # epoch 2: batches 1-2
    with pytest.warns(UserWarning, match="training interrupted"):
        result = fit(model, (x, y), epochs=4, batch_size=8, shuffle=False,
                     callbacks=[InterruptAt(2, 2)])
    assert result is model
    assert_same_params(model, net)
    batches = model.batch_history
    assert len(batches) == 6 + 2
    assert batches["step"].tolist() == list(range(1, 9))
    assert batches["epoch"].tolist() == [1] * 6 + [2] * 2
    assert model.torch_optimizer.state[model.module.hidden.weight]["momentum_buffer"] is not None
    assert all(p.grad is None for p in model.module.parameters())
    # the interrupted epoch's row holds the mean over its completed batches only
    assert model.history["epoch"].tolist() == [1, 2]
    assert model.history["loss"].iloc[-1] == pytest.approx(
        batches["loss"].iloc[-2:].mean())


def test_other_exceptions_from_callbacks_propagate():
    model = sgd_model()
    with pytest.raises(RuntimeError, match="callback bug"):
        fit(model, classification_data(), epochs=2, batch_size=8,
            callbacks=[InterruptAt(1, 3, RuntimeError("callback bug"))])
    assert all(p.grad is None for p in model.module.parameters())


def test_request_stop_acts_after_the_batch_in_progress():
    x, y = classification_data(n=48)
    model = sgd_model()

    class StopAtBatch(xb.Callback):
        def on_batch_end(self, batch, logs):
            if batch == 3:
                trainer.request_stop()

    trainer = xb.Trainer(model, (x, y), epochs=3, batch_size=8, verbose=False,
                         callbacks=[StopAtBatch()])
    assert trainer.run() is model
    assert trainer.stop_reason == "stopped"
    assert len(model.batch_history) == 3


# ----------------------------------------------------------------- bad input
X, Y = classification_data(n=24)
BAD_INPUTS = [
    ({"data": (torch.randn(24, 5), Y)}, "data x has shape"),
    ({"data": (torch.randn(24, 6, 1), Y)}, "data x has shape"),
    ({"data": (torch.randn(6), torch.tensor([0]))}, "data x"),
    ({"data": (X, torch.zeros(24, 4))}, "data y"),
    ({"data": (X, Y[:20])}, "same number of samples; got 24 and 20"),
    ({"data": (X, torch.where(Y == 0, 3, Y))}, r"label 3, outside \[0, 3\)"),
    ({"data": (X, torch.where(Y == 0, -1, Y))}, "label -1"),
    ({"data": (X, Y.float() + 0.5)}, "not whole numbers"),
    ({"data": (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long))}, "empty"),
    ({"data": (np.array([["a"] * 6] * 24), Y)}, "data x must hold numbers"),
    ({"data": (X, np.array(["cat"] * 24))}, "data y must hold numbers"),
    ({"data": (X.tolist(), [object()] * 24)}, "data y"),
    ({"data": X}, "data must be a pair"),
    ({"data": (X, Y, Y)}, "data must be a pair"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"epochs": 1.5}, "epochs"),
    ({"clip_norm": 0}, "clip_norm"),
    ({"clip_norm": -1.0}, "clip_norm"),
    ({"clip_norm": float("inf")}, "clip_norm"),
    ({"clip_value": 0.0}, "clip_value"),
    ({"clip_value": -2}, "clip_value"),
    ({"nesterov": True}, "nesterov"),
    ({"accumulate_gradients": 0}, "accumulate_gradients"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"validation_data": (torch.randn(5, 4), torch.zeros(5, dtype=torch.long))},
     "validation_data x"),
    ({"validation_data": (X, torch.full((24,), 7))}, "validation_data y holds label 7"),
    ({"callbacks": print}, "callbacks must be a list"),
    ({"callbacks": [42]}, r"callbacks\[0\]"),
    ({"callbacks": [xb.callbacks.EarlyStopping]}, "pass an instance"),
]


@pytest.mark.parametrize("change, match", BAD_INPUTS)
def test_bad_input_is_a_value_error_before_the_first_step(change, match):
    model = xb.compile(mlp_spec(), optimizer="adam", seed=0)
    before = snapshot(model)
    kwargs = {"epochs": 2, **change}
    data = kwargs.pop("data", (X, Y))
    with pytest.raises(ValueError, match=match):
        fit(model, data, **kwargs)
    assert_state_equal(model, before)
    assert not model.torch_optimizer.state
    assert model.history.empty and model.batch_history.empty


def test_a_model_that_is_not_compiled_is_an_error():
    with pytest.raises(ValueError, match="compiled exburn_nb Model"):
        fit(torch.nn.Linear(6, 3), (X, Y), epochs=1)


def test_mse_and_bce_targets_are_checked():
    x, y = regression_data(n=24, n_out=2)
    model = xb.compile(mlp_spec(n_out=2), loss="mse")
    with pytest.raises(ValueError, match="data y has shape"):
        fit(model, (x, y[:, :1]), epochs=1)
    bce = xb.compile(mlp_spec(n_out=1), loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="0.0/1.0 targets"):
        fit(bce, (x, torch.full((24, 1), 2.0)), epochs=1)
    fit(bce, (x, (y[:, 0] > 0).float()), epochs=1)  # (N,) targets for a (None, 1) output
    assert bce.epochs_trained == 1


# ----------------------------------------------------------------- input types
def test_torch_numpy_and_pandas_inputs_train_identically():
    x, y = classification_data(n=40)
    variants = {
        "torch": (x, y),
        "numpy": (x.numpy(), y.numpy()),
        "numpy float64 / int32": (x.double().numpy(), y.int().numpy()),
        "pandas": (pd.DataFrame(x.numpy(), columns=list("abcdef")), pd.Series(y.numpy())),
        "lists": (x.tolist(), y.tolist()),
    }
    results = {}
    for name, data in variants.items():
        model = sgd_model()
        fit(model, data, epochs=2, batch_size=8, shuffle=False, validation_data=data)
        results[name] = model
    reference = results.pop("torch")
    for name, model in results.items():
        for a, b in zip(model.parameters().values(), reference.parameters().values(),
                        strict=True):
            torch.testing.assert_close(a, b, msg=name)
        assert model.history["val_loss"].tolist() == pytest.approx(
            reference.history["val_loss"].tolist(), rel=1e-6)


@pytest.mark.parametrize("source", ["numpy", "pandas"])
def test_read_only_arrays_become_writable_tensors(source):
    """pandas' copy-on-write hands out read-only arrays; torch must not share them."""
    if source == "numpy":
        array = np.ones((3, 2), dtype=np.float32)  # C-contiguous: no copy needed for layout
        array.flags.writeable = False
        value = array
    else:
        value = pd.Series(np.ones(3, dtype=np.float32))
        array = value.to_numpy()
        assert not array.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns once about non-writable NumPy arrays
        tensor = to_tensor(value, "x")
    tensor += 1  # never writes into the caller's read-only memory
    assert (array == 1).all()


def test_pandas_one_hot_frames_and_regression_targets_are_accepted():
    x, y = classification_data(n=30)
    one_hot = pd.get_dummies(pd.Series(y.numpy())).astype("float32")
    model = sgd_model()
    fit(model, (pd.DataFrame(x.numpy()), one_hot), epochs=1)
    assert model.epochs_trained == 1
    rx, ry = regression_data(n=30, n_out=1)
    reg = xb.compile(mlp_spec(n_out=1), loss="mse")
    fit(reg, (pd.DataFrame(rx.numpy()), pd.Series(ry[:, 0].numpy())), epochs=1)
    assert reg.epochs_trained == 1
