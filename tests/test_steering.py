"""Callbacks that steer (stop, set the learning rate, log values from any hook), monitors
with a direction, DataLoader inputs, and a loop that stays consistent under Ctrl-C,
raising callbacks and runner races."""

import contextlib
import os
import random
import signal
import threading
import time
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch_reference import classification_data, mlp_spec, regression_data

import exburn_nb as xb
from exburn_nb.train.runner import Runner


class Recorder(xb.Callback):
    """Records the hooks it sees; ``actions`` maps (hook, epoch, batch) to a function."""

    def __init__(self, actions=None):
        self.seen, self.actions = [], actions or {}

    def _do(self, hook, epoch, batch=None):
        self.seen.append((hook, epoch, batch))
        action = self.actions.get((hook, epoch, batch))
        if action is not None:
            action(self.trainer)

    def on_train_begin(self, logs):
        self.seen.append(("train_begin", logs["first_epoch"], None))

    def on_epoch_begin(self, epoch, logs):
        self._do("epoch_begin", epoch)

    def on_batch_begin(self, batch, logs):
        self._do("batch_begin", logs["epoch"], batch)

    def on_batch_end(self, batch, logs):
        self._do("batch_end", logs["epoch"], batch)

    def on_validation_end(self, epoch, logs):
        self._do("validation_end", epoch)

    def on_epoch_end(self, epoch, metrics):
        self._do("epoch_end", epoch)

    def on_train_end(self, logs):
        self.seen.append(("train_end", None, None))


def model_and_data(n=32):
    return xb.compile(mlp_spec(), seed=0), classification_data(n=n)


def test_hooks_come_in_order_with_the_trainer():
    model, data = model_and_data(16)
    rec = Recorder()
    xb.fit(model, data, epochs=1, batch_size=8, validation_data=data, callbacks=[rec],
           verbose=False)
    assert [h for h, _, _ in rec.seen] == [
        "train_begin", "epoch_begin", "batch_begin", "batch_end", "batch_begin", "batch_end",
        "validation_end", "epoch_end", "train_end"]
    assert isinstance(rec.trainer, xb.Trainer) and rec.trainer.model is model


def test_stop_from_a_batch_hook_acts_after_that_batch():
    model, data = model_and_data(48)
    rec = Recorder({("batch_end", 2, 3): lambda t: t.stop()})
    xb.fit(model, data, epochs=5, batch_size=8, callbacks=[rec], verbose=False)
    assert len(model.batch_history) == 6 + 3
    assert model.history["epoch"].tolist() == [1, 2]
    assert rec.trainer.stop_reason == "stopped"


def test_set_learning_rate_from_a_hook_applies_at_the_next_batch():
    model, data = model_and_data(32)
    rec = Recorder({("batch_end", 1, 2): lambda t: t.set_learning_rate(0.5)})
    xb.fit(model, data, epochs=2, batch_size=8, callbacks=[rec], verbose=False)
    lrs = model.batch_history["lr"].tolist()
    assert lrs == [0.001, 0.001] + [0.5] * 6
    assert model.torch_optimizer.param_groups[0]["lr"] == 0.5


def test_log_lands_in_the_batch_or_epoch_row_of_the_hook():
    model, data = model_and_data(16)
    rec = Recorder({("batch_begin", 1, 1): lambda t: t.log("before", 1.0),
                    ("batch_end", 1, 2): lambda t: t.log("after", 2.0),
                    ("epoch_begin", 2, None): lambda t: t.log("early", 3.0),
                    ("epoch_end", 2, None): lambda t: t.log("late", 4.0)})
    xb.fit(model, data, epochs=2, batch_size=8, callbacks=[rec], verbose=False)
    batches, epochs = model.batch_history, model.history
    assert batches["before"].tolist()[:2] == [1.0, pytest.approx(float("nan"), nan_ok=True)]
    assert batches["after"].isna().tolist() == [True, False, True, True]
    assert epochs["early"].isna().tolist() == [True, False]
    assert epochs["late"].tolist()[1] == 4.0
    with pytest.raises(ValueError, match="name must be a new column name; got 'loss'"):
        rec.trainer.log("loss", 1.0)


# ----------------------------------------------------------------- monitors
@pytest.mark.parametrize("monitor, values, stops_at", [
    ("val_accuracy", [0.5, 0.6, 0.55, 0.58, 0.7], 4),  # maximised
    ("val_loss", [0.5, 0.4, 0.45, 0.41, 0.3], 4),  # minimised
])
def test_early_stopping_picks_the_direction_from_the_name(monitor, values, stops_at):
    cb = xb.callbacks.early_stopping(patience=2, min_delta=0.0, monitor=monitor)
    cb.on_train_begin({"validation": True, "accuracy": True})
    for epoch, value in enumerate(values, start=1):
        out = cb.on_epoch_end(epoch, {"epoch": epoch, "loss": 1.0, "val_loss": 1.0,
                                      "val_accuracy": 1.0, monitor: value, "model": None})
        if out.get("stop_training"):
            break
    assert epoch == stops_at
    forced = xb.callbacks.early_stopping(patience=0, monitor="val_accuracy", mode="min")
    forced.on_train_begin({"validation": True, "accuracy": True})
    forced.on_epoch_end(1, {"val_accuracy": 0.5})
    assert forced.on_epoch_end(2, {"val_accuracy": 0.9}).get("stop_training")


def test_a_monitor_the_run_does_not_compute_is_reported_by_name():
    model, data = model_and_data(16)
    before = {k: v.clone() for k, v in model.parameters().items()}
    with pytest.raises(ValueError, match=r"monitor 'val_accuracy' is not computed by this run"):
        xb.fit(model, data, epochs=2, verbose=False,
               callbacks=[xb.callbacks.early_stopping(monitor="val_accuracy")])
    assert all(torch.equal(before[k], v) for k, v in model.parameters().items())
    with pytest.raises(ValueError, match=r"monitor 'val_los' is not in this run's metrics"):
        xb.fit(model, data, epochs=2, verbose=False, validation_data=data,
               callbacks=[xb.callbacks.reduce_lr_on_plateau(monitor="val_los")])
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or 'auto'"):
        xb.callbacks.early_stopping(mode="up")


# ----------------------------------------------------------------- DataLoader inputs
def test_a_dataloader_trains_exactly_like_the_in_memory_path():
    x, y = classification_data(n=40)
    vx, vy = classification_data(n=16, seed=1)
    a, b = xb.compile(mlp_spec(), seed=0), xb.compile(mlp_spec(), seed=0)
    xb.fit(a, (x, y), epochs=3, batch_size=8, shuffle=False, validation_data=(vx, vy),
           accuracy=True, accumulate_gradients=2, verbose=False)
    xb.fit(b, DataLoader(TensorDataset(x, y), batch_size=8), epochs=3, accuracy=True,
           validation_data=DataLoader(TensorDataset(vx, vy), batch_size=5),
           accumulate_gradients=2, verbose=False)
    for p, q in zip(a.parameters().values(), b.parameters().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    cols = ["epoch", "loss", "val_loss", "accuracy", "val_accuracy"]
    torch.testing.assert_close(torch.tensor(a.history[cols].to_numpy()),
                               torch.tensor(b.history[cols].to_numpy()), rtol=1e-6, atol=1e-6)
    assert a.batch_history["step"].tolist() == b.batch_history["step"].tolist()


def test_a_dataset_is_wrapped_in_a_loader_and_bad_batches_are_named():
    x, y = regression_data(n=24, n_out=1)
    model = xb.compile(mlp_spec(n_out=1), loss="mse", seed=0)
    xb.fit(model, TensorDataset(x, y), epochs=2, batch_size=8, seed=0, verbose=False)
    assert len(model.batch_history) == 6
    x[10, 0] = float("nan")
    before = {k: v.clone() for k, v in model.parameters().items()}
    with pytest.raises(ValueError, match="data x holds 1 non-finite value"):
        xb.fit(model, DataLoader(TensorDataset(x, y), batch_size=8), epochs=1, verbose=False)
    assert len(model.batch_history) == 6 + 1  # the batches before the bad one, recorded
    assert not all(torch.equal(before[k], v) for k, v in model.parameters().items())
    with pytest.raises(ValueError, match="each DataLoader batch must be a pair"):
        xb.fit(model, DataLoader(x, batch_size=8), epochs=1, verbose=False)


# ----------------------------------------------------------------- consistency
def replay(model_factory, data, batches, **opts):
    """The same seeded run stopped after exactly ``batches`` batches."""
    model = model_factory()
    stopper = Recorder()

    class Stop(xb.Callback):
        def on_batch_end(self, batch, logs):
            if logs["step"] == batches:
                self.trainer.stop()

    if batches:
        xb.fit(model, data, callbacks=[Stop(), stopper], verbose=False, **opts)
    return model


def test_ctrl_c_at_random_moments_leaves_every_model_consistent():
    x, y = classification_data(n=64)
    opts = dict(epochs=100_000, batch_size=8, seed=3)  # ends only by the interrupt

    def factory():
        return xb.compile(mlp_spec(), optimizer="adam", learning_rate=0.01, seed=0)

    rng = random.Random(0)
    checked = 0
    for _ in range(12):
        model = factory()
        timer = threading.Timer(rng.uniform(0.02, 0.3),
                                lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # landing outside a batch it raises: nothing is half-done there either
            with contextlib.suppress(KeyboardInterrupt):
                xb.fit(model, (x, y), verbose=False, **opts)
        timer.join()
        steps = model.batch_history["step"].tolist()
        state = model.torch_optimizer.state
        optimizer_steps = int(next(iter(state.values()))["step"]) if state else 0
        assert optimizer_steps == (steps[-1] if steps else 0)
        assert steps == list(range(1, len(steps) + 1))
        if model.history.empty:
            continue
        assert model.history["epoch"].iloc[-1] == model.batch_history["epoch"].iloc[-1]
        again = replay(factory, (x, y), len(steps), **opts)
        for p, q in zip(model.parameters().values(), again.parameters().values(), strict=True):
            assert torch.equal(p, q)
        checked += 1
    assert checked >= 6


def test_a_raising_callback_leaves_the_completed_batches_recorded():
    model, data = model_and_data(48)

    def boom(t):
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug"):
        xb.fit(model, data, epochs=3, batch_size=8, verbose=False,
               callbacks=[Recorder({("batch_end", 2, 5): boom})])
    assert len(model.batch_history) == 6 + 5
    assert model.history["epoch"].tolist() == [1, 2]
    state = model.torch_optimizer.state[model.module.hidden.weight]
    assert int(state["step"]) == 11
    xb.fit(model, data, epochs=1, batch_size=8, verbose=False)
    assert model.history["epoch"].tolist() == [1, 2, 3]


# ----------------------------------------------------------------- the runner
def test_a_listener_that_raises_on_start_leaves_the_runner_startable():
    model, data = model_and_data(16)
    runner = Runner(model, data, epochs=1, batch_size=8)

    def bad(event, r):
        if event == "start":
            raise RuntimeError("listener bug")

    runner.add_listener(bad)
    with pytest.raises(RuntimeError, match="listener bug"):
        runner.start()
    assert runner.state == "idle" and not runner.running and runner.wait(1)
    runner._listeners.clear()
    assert runner.start() and runner.wait(30) and runner.state == "finished"


def test_pause_and_resume_racing_the_end_of_a_run_never_wedge_the_runner():
    model, data = model_and_data(16)
    runner = Runner(model, data, epochs=1, batch_size=8)
    for i in range(30):
        assert runner.start()
        time.sleep(random.Random(i).uniform(0, 0.01))
        runner.pause()
        runner.resume()
        assert runner.wait(30), runner.state
        assert runner.state == "finished", runner.state


# ----------------------------------------------------------------- train_step
def test_train_step_refuses_nan_data_and_skips_an_overflowing_step():
    x, y = regression_data(n=8, n_out=1)
    model = xb.compile(mlp_spec(n_out=1), loss="mse", seed=0)
    before = {k: v.clone() for k, v in model.parameters().items()}
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="batch x holds 1 non-finite value"):
        xb.train_step(model, (bad, y))
    with pytest.warns(UserWarning, match="the step was skipped"):
        xb.train_step(model, (bad, y), check_data=False)
    assert all(torch.equal(before[k], v) for k, v in model.parameters().items())
    huge = xb.compile(mlp_spec(n_out=1, activation="relu"), loss="mse", optimizer="adam",
                      learning_rate=1e36, seed=0)
    x2, y2 = regression_data(n=8, n_out=1, scale=100.0)
    kept = {k: v.clone() for k, v in huge.parameters().items()}
    with pytest.warns(UserWarning, match="overflowed the weights"):
        xb.train_step(huge, (x2 * 10, y2))
    assert all(torch.equal(kept[k], v) for k, v in huge.parameters().items())


# ----------------------------------------------------------------- review fixes
def test_an_undone_overflowing_step_leaves_the_optimizer_state_as_it_was():
    model = xb.compile(mlp_spec(n_out=1, activation="relu"), loss="mse", optimizer="adam",
                       learning_rate=1e36, seed=0)
    x, y = regression_data(n=8, n_out=1, scale=100.0)
    with pytest.warns(UserWarning, match="overflowed the weights"):
        xb.train_step(model, (x * 10, y))
    assert not model.torch_optimizer.state  # no step happened, not even in Adam's counters


def test_numpy_values_in_a_schedule_become_plain_numbers():
    import numpy as np

    model, data = model_and_data(16)
    xb.fit(model, data, epochs=2, batch_size=8, verbose=False,
           lr_schedule=("step", np.float32(0.01), np.int64(1), np.float64(0.5)))
    assert all(type(v) is float for v in model.history["lr"].tolist())
    assert type(model.recorder.epoch_rows[0]["lr"]) is float


def test_an_iterable_dataset_streams_in_its_own_order():
    from torch.utils.data import IterableDataset

    x, y = classification_data(n=16)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(x, y, strict=True))

    model = xb.compile(mlp_spec(), seed=0)
    xb.fit(model, Stream(), epochs=2, batch_size=8, verbose=False)
    assert len(model.batch_history) == 4


def test_every_on_train_end_runs_even_when_one_raises():
    model, data = model_and_data(16)
    ended = []

    class Ends(xb.Callback):
        def __init__(self, fail):
            self.fail = fail

        def on_train_end(self, logs):
            ended.append(self.fail)
            if self.fail:
                raise RuntimeError("end failed")

    with pytest.raises(RuntimeError, match="end failed"):
        xb.fit(model, data, epochs=1, verbose=False, callbacks=[Ends(True), Ends(False)])
    assert ended == [True, False]


def test_plateau_never_raises_the_learning_rate():
    cb = xb.callbacks.reduce_lr_on_plateau(factor=0.5, patience=0, min_lr=1e-3)
    cb.on_train_begin({})
    lrs = [cb.on_epoch_end(e, {"epoch": e, "loss": 1.0, "lr": 1e-5})["lr"] for e in (1, 2, 3)]
    assert lrs == [1e-5, 1e-5, 1e-5]


def test_a_stop_after_the_run_ended_changes_nothing():
    model, data = model_and_data(16)
    trainer = xb.Trainer(model, data, epochs=1, batch_size=8, verbose=False)
    trainer.run()
    trainer.stop()
    assert trainer.stop_reason is None


def test_a_dict_where_the_config_goes_is_named():
    model, data = model_and_data(16)
    with pytest.raises(ValueError, match="config must be an xb.FitConfig"):
        xb.fit(model, data, {"epochs": 2})


def ctrl_c_once(original, when):
    """``original`` wrapped to send this process a SIGINT (Ctrl-C) the first time
    ``when(*args)`` holds, just before it would run."""
    fired = []

    def wrapped(*args, **kwargs):
        if not fired and when(*args):
            fired.append(True)
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("where", ["building the epoch row", "recording the epoch row"])
def test_ctrl_c_between_an_epochs_last_batch_and_its_row_still_records_the_row(
        monkeypatch, where):
    """A Ctrl-C after an epoch's last batch row and before its epoch row (outside any
    batch, so it raises at once) still leaves that epoch's row: the batch history never
    names an epoch the epoch history lacks."""
    from exburn_nb.core.history import History
    from exburn_nb.train.members import EpochTally

    if where == "building the epoch row":
        calls = []
        monkeypatch.setattr(EpochTally, "loss_sums", ctrl_c_once(
            EpochTally.loss_sums, lambda tally: calls.append(1) or len(calls) == 2))
    else:
        monkeypatch.setattr(History, "record_epoch", ctrl_c_once(
            History.record_epoch, lambda history, row: row["epoch"] == 2))
    model, data = model_and_data(48)
    with pytest.warns(UserWarning, match="training interrupted"):
        xb.fit(model, data, epochs=4, batch_size=8, verbose=False)
    batches = model.batch_history
    assert batches["epoch"].tolist() == [1] * 6 + [2] * 6  # epoch 2 ran to its end
    assert model.history["epoch"].tolist() == [1, 2]
    assert model.history["loss"].iloc[-1] == pytest.approx(batches["loss"].iloc[-6:].mean())
