"""Callbacks: the guide's metrics -> metrics functions, the hook class, and the built-ins
(log, early stopping, checkpoints, reduce-on-plateau)."""

import math
import os

import pytest
import torch
from torch_reference import (
    assert_state_equal,
    classification_data,
    fit,
    mlp_spec,
    snapshot,
)

import exburn_nb as xb
from exburn_nb.train.callbacks import EarlyStopping, ReduceLROnPlateau, format_metrics


def model_and_data(**compile_kwargs):
    compile_kwargs.setdefault("seed", 0)
    return xb.compile(mlp_spec(), **compile_kwargs), classification_data(n=32)


class Recorder:
    """A function callback that keeps a copy of every metrics dict it sees."""

    def __init__(self, returns=lambda m: m):
        self.seen, self.returns = [], returns

    def __call__(self, metrics):
        self.seen.append(dict(metrics))
        return self.returns(metrics)


def scripted(key, values):
    """A function callback that overwrites ``metrics[key]`` with the next scripted value."""
    it = iter(values)
    return lambda metrics: {**metrics, key: next(it)}


# ----------------------------------------------------------------- function callbacks
def test_function_callbacks_get_the_documented_keys():
    model, (x, y) = model_and_data()
    rec = Recorder()
    fit(model, (x, y), epochs=3, validation_data=(x, y), accuracy=True, callbacks=[rec])
    assert [m["epoch"] for m in rec.seen] == [1, 2, 3]
    for metrics, row in zip(rec.seen, model.history.itertuples(), strict=True):
        assert {"epoch", "loss", "val_loss", "accuracy", "val_accuracy", "lr",
                "model"} <= set(metrics)
        assert metrics["model"] is model
        assert metrics["loss"] == row.loss and metrics["val_loss"] == row.val_loss
        assert metrics["accuracy"] == row.accuracy and metrics["val_accuracy"] == row.val_accuracy
        assert metrics["lr"] == row.lr == 0.001
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
            assert type(metrics[key]) is float
        assert type(metrics["epoch"]) is int
        assert 0.0 <= metrics["accuracy"] <= 1.0


def test_without_validation_or_accuracy_those_keys_are_absent():
    model, data = model_and_data()
    rec = Recorder()
    fit(model, data, epochs=1, callbacks=[rec])
    assert not {"val_loss", "accuracy", "val_accuracy"} & set(rec.seen[0])


def test_epochs_count_on_across_fit_calls():
    model, data = model_and_data()
    rec = Recorder()
    fit(model, data, epochs=2, callbacks=[rec])
    fit(model, data, epochs=2, callbacks=[rec])
    assert [m["epoch"] for m in rec.seen] == [1, 2, 3, 4]


def test_stop_training_halts_after_that_epoch():
    model, data = model_and_data()
    rec = Recorder()

    def stop_at_two(metrics):
        return {**metrics, "stop_training": True} if metrics["epoch"] == 2 else metrics

    fit(model, data, epochs=10, batch_size=8, callbacks=[stop_at_two, rec])
    assert model.history["epoch"].tolist() == [1, 2]
    assert len(model.batch_history) == 2 * 4  # epoch 2 ran to its end
    assert [m["epoch"] for m in rec.seen] == [1, 2]  # later callbacks still see epoch 2
    assert rec.seen[1]["stop_training"] is True
    fit(model, data, epochs=1)  # a stopped run does not stop the next one
    assert model.epochs_trained == 3


def test_the_guide_converged_callback(capsys):
    model, data = model_and_data(learning_rate=0.05)

    def converged(metrics):
        if metrics["loss"] < 10.0:
            print("Converged!")
            return {"epoch": metrics["epoch"], "loss": metrics["loss"], "stop_training": True}
        return metrics

    fit(model, data, epochs=5, callbacks=[converged])
    assert model.epochs_trained == 1
    assert "Converged!" in capsys.readouterr().out


def test_returning_none_means_unchanged():
    model, data = model_and_data()
    rec = Recorder()
    fit(model, data, epochs=3, callbacks=[lambda metrics: None, rec])
    assert model.epochs_trained == 3
    assert all("model" in m and "loss" in m for m in rec.seen)


def test_returning_something_else_is_an_error():
    model, data = model_and_data()
    with pytest.raises(ValueError, match="returned list"):
        fit(model, data, epochs=2, callbacks=[lambda metrics: [metrics]])


def test_extra_numeric_keys_are_recorded_in_history():
    model, data = model_and_data()

    def extras(metrics):
        return {**metrics, "grad_norm": float(metrics["epoch"]) * 1.5, "note": "text",
                "count": metrics["epoch"], "bad": math.nan, "tensor": torch.ones(1)}

    fit(model, data, epochs=3, callbacks=[extras])
    frame = model.history
    assert frame["grad_norm"].tolist() == [1.5, 3.0, 4.5]
    assert frame["count"].tolist() == [1, 2, 3]
    assert not {"note", "bad", "tensor", "model", "stop_training"} & set(frame.columns)
    assert frame.columns.tolist()[-2:] == ["count", "grad_norm"]  # extras after the base


def test_returning_a_changed_lr_changes_the_next_epochs_lr():
    model, data = model_and_data(optimizer="sgd", learning_rate=0.1)

    def halve_after_two(metrics):
        return {**metrics, "lr": metrics["lr"] / 2} if metrics["epoch"] == 2 else metrics

    fit(model, data, epochs=4, batch_size=16, callbacks=[halve_after_two])
    assert model.history["lr"].tolist() == [0.1, 0.1, 0.05, 0.05]
    assert model.batch_history["lr"].tolist() == [0.1] * 4 + [0.05] * 4
    assert model.torch_optimizer.param_groups[0]["lr"] == 0.05
    assert model.learning_rate == 0.05


def test_a_callback_lr_replaces_the_schedule_for_the_rest_of_the_run():
    model, data = model_and_data(optimizer="sgd")
    fit(model, data, epochs=4, lr_schedule=("exponential", 0.1, 0.5),
        callbacks=[lambda m: {**m, "lr": 0.3} if m["epoch"] == 1 else m])
    assert model.history["lr"].tolist() == pytest.approx([0.1, 0.3, 0.3, 0.3])


def test_a_bad_lr_from_a_callback_is_an_error():
    model, data = model_and_data()
    with pytest.raises(ValueError, match="lr returned by a callback"):
        fit(model, data, epochs=2, callbacks=[lambda m: {**m, "lr": -1.0}])


# ----------------------------------------------------------------- the hook class
class Events(xb.Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs):
        self.events.append(("train_begin", logs["epochs"], logs["batches"], logs["first_epoch"]))
        assert logs["model"] is not None

    def on_epoch_begin(self, epoch, logs):
        self.events.append(("epoch_begin", epoch, logs["lr"]))

    def on_batch_end(self, batch, logs):
        assert isinstance(logs["loss"], float)
        self.events.append(("batch_end", logs["epoch"], batch, logs["step"], logs["size"]))

    def on_epoch_end(self, epoch, metrics):
        self.events.append(("epoch_end", epoch))

    def on_train_end(self, logs):
        self.events.append(("train_end",))


def test_hooks_are_called_in_order():
    model, (x, y) = model_and_data()
    cb = Events()
    fit(model, (x[:24], y[:24]), epochs=2, batch_size=16, shuffle=False, callbacks=[cb])
    assert cb.events == [
        ("train_begin", 2, 2, 1),
        ("epoch_begin", 1, 0.001), ("batch_end", 1, 1, 1, 16), ("batch_end", 1, 2, 2, 8),
        ("epoch_end", 1),
        ("epoch_begin", 2, 0.001), ("batch_end", 2, 1, 3, 16), ("batch_end", 2, 2, 4, 8),
        ("epoch_end", 2),
        ("train_end",),
    ]


def test_train_end_runs_however_the_run_ends():
    model, data = model_and_data()
    cb = Events()
    fit(model, data, epochs=5, callbacks=[lambda m: {**m, "stop_training": True}, cb])
    assert cb.events[-1] == ("train_end",)
    cb = Events()

    def boom(metrics):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(model, data, epochs=5, callbacks=[cb, boom])
    assert cb.events[-1] == ("train_end",)


def test_hook_callbacks_may_change_metrics_like_functions():
    class Stopper(xb.Callback):
        def on_epoch_end(self, epoch, metrics):
            return {**metrics, "stop_training": epoch == 3, "score": 2.0 * epoch}

    model, data = model_and_data()
    fit(model, data, epochs=10, callbacks=[Stopper()])
    assert model.history["score"].tolist() == [2.0, 4.0, 6.0]


# ----------------------------------------------------------------- log
def test_log_prints_one_line_per_epoch_and_returns_the_metrics(capsys):
    model, (x, y) = model_and_data()
    fit(model, (x, y), epochs=2, validation_data=(x, y), accuracy=True,
        callbacks=[xb.callbacks.log])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    row = model.history.iloc[1]
    assert lines[1] == (f"Epoch 2: loss={row.loss:.4f} val_loss={row.val_loss:.4f} "
                        f"accuracy={row.accuracy:.4f} val_accuracy={row.val_accuracy:.4f} "
                        f"lr=0.001")
    metrics = {"epoch": 7, "loss": 0.5}
    assert xb.callbacks.log(metrics) is metrics
    assert capsys.readouterr().out == "Epoch 7: loss=0.5000\n"


def test_format_metrics_skips_missing_values():
    assert format_metrics({"epoch": 1, "loss": 1.0, "val_loss": None, "lr": 1e-4}) == \
        "Epoch 1: loss=1.0000 lr=0.0001"


# ----------------------------------------------------------------- early stopping
def run_early_stopping(values, key="val_loss", **kwargs):
    cb = EarlyStopping(**kwargs)
    cb.on_train_begin({"validation": key.startswith("val_")})
    for epoch, value in enumerate(values, start=1):
        metrics = {"epoch": epoch, "loss": 1.0, key: value, "model": None}
        if cb.on_epoch_end(epoch, metrics).get("stop_training"):
            return epoch, cb
    return None, cb


def test_early_stopping_waits_patience_epochs():
    assert run_early_stopping([1.0, 0.9, 0.95, 0.95, 0.95, 0.5], patience=2)[0] == 4
    assert run_early_stopping([1.0, 0.9, 0.95, 0.95, 0.95, 0.5], patience=3)[0] == 5
    assert run_early_stopping([1.0, 0.9, 0.95, 0.85, 0.95, 0.8], patience=2)[0] is None
    epoch, cb = run_early_stopping([3.0, 2.0, 1.0, 1.5, 1.2], patience=2)
    assert epoch == 5 and cb.best == 1.0 and cb.best_epoch == 3 and cb.stopped_epoch == 5


def test_early_stopping_min_delta_ignores_tiny_improvements():
    values = [1.0, 0.99995, 0.9999, 0.99985]
    assert run_early_stopping(values, patience=3, min_delta=1e-3)[0] == 4
    assert run_early_stopping(values, patience=3, min_delta=0.0)[0] is None


def test_early_stopping_falls_back_to_loss_without_validation():
    cb = EarlyStopping(patience=1)
    cb.on_train_begin({})
    assert not cb.on_epoch_end(1, {"epoch": 1, "loss": 1.0}).get("stop_training")
    assert cb.on_epoch_end(2, {"epoch": 2, "loss": 1.0}).get("stop_training")


def test_early_stopping_in_fit_watches_val_loss_and_restores_the_best_weights():
    model, (x, y) = model_and_data(learning_rate=0.01)
    snapshots = {}

    def keep(metrics):
        snapshots[metrics["epoch"]] = snapshot(metrics["model"])
        return metrics

    fit(model, (x, y), epochs=20, validation_data=(x, y),
        callbacks=[scripted("val_loss", [3.0, 1.0, 2.0, 2.0, 2.0, 0.1]),
                   xb.callbacks.early_stopping(patience=3, min_delta=1e-4, restore_best=True),
                   keep])
    assert model.epochs_trained == 5
    assert_state_equal(model, snapshots[2])  # the best epoch's weights are back
    assert not torch.equal(snapshots[2]["hidden.weight"], snapshots[5]["hidden.weight"])


def test_early_stopping_in_fit_without_validation_watches_loss():
    model, data = model_and_data()
    fit(model, data, epochs=20, callbacks=[scripted("loss", [1.0, 0.5, 0.6, 0.6, 0.1]),
                                           xb.callbacks.early_stopping(patience=2)])
    assert model.epochs_trained == 4


def test_early_stopping_without_restore_keeps_the_last_weights():
    model, data = model_and_data()
    last = {}
    fit(model, data, epochs=20, callbacks=[
        scripted("loss", [1.0, 2.0, 2.0]), xb.callbacks.early_stopping(patience=2),
        lambda m: last.update(snapshot(m["model"])) or m])
    assert model.epochs_trained == 3
    assert_state_equal(model, last)


def test_early_stopping_state_resets_for_each_run():
    model, data = model_and_data()
    cb = xb.callbacks.early_stopping(patience=1)
    fit(model, data, epochs=5, callbacks=[scripted("loss", [1.0, 1.0]), cb])
    assert model.epochs_trained == 2
    fit(model, data, epochs=5, callbacks=[scripted("loss", [5.0, 4.0, 4.0]), cb])
    assert model.epochs_trained == 5


@pytest.mark.parametrize("kwargs", [{"patience": -1}, {"patience": 1.5},
                                    {"min_delta": -0.1}, {"min_delta": "x"}])
def test_early_stopping_checks_its_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        xb.callbacks.early_stopping(**kwargs)


# ----------------------------------------------------------------- checkpoints
def test_checkpoint_saves_every_n_epochs_loadable_files(tmp_path):
    model, data = model_and_data()
    directory = tmp_path / "ckpt" / "run1"  # created on demand
    snapshots = {}

    def keep(metrics):
        snapshots[metrics["epoch"]] = snapshot(metrics["model"])
        return metrics

    fit(model, data, epochs=5, callbacks=[xb.callbacks.checkpoint(every=2, directory=directory),
                                          keep])
    assert sorted(os.listdir(directory)) == ["epoch_0002.exburn", "epoch_0004.exburn"]
    for epoch in (2, 4):
        loaded = xb.load(directory / f"epoch_{epoch:04d}.exburn")
        assert_state_equal(loaded, snapshots[epoch])
        assert loaded.epochs_trained == epoch
        assert loaded.spec == model.spec


def test_checkpoint_epochs_count_on_across_runs(tmp_path):
    model, data = model_and_data()
    cb = xb.callbacks.checkpoint(every=3, directory=tmp_path)
    fit(model, data, epochs=2, callbacks=[cb])
    assert os.listdir(tmp_path) == []
    fit(model, data, epochs=2, callbacks=[cb])
    assert os.listdir(tmp_path) == ["epoch_0003.exburn"]


def test_checkpoint_checks_every():
    for every in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="every"):
            xb.callbacks.checkpoint(every=every, directory="x")


# ----------------------------------------------------------------- reduce on plateau
def test_reduce_lr_on_plateau_unit():
    cb = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.02)
    cb.on_train_begin({})
    lrs, lr = [], 0.1
    for epoch, value in enumerate([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], start=1):
        lr = cb.on_epoch_end(epoch, {"epoch": epoch, "loss": value, "lr": lr})["lr"]
        lrs.append(lr)
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])


def test_reduce_lr_on_plateau_in_fit():
    model, (x, y) = model_and_data(optimizer="sgd", learning_rate=0.1)
    fit(model, (x, y), epochs=6, validation_data=(x, y),
        callbacks=[scripted("val_loss", [1.0, 0.5, 0.5, 0.5, 0.5, 0.5]),
                   xb.callbacks.reduce_lr_on_plateau(factor=0.5, patience=2)])
    assert model.history["lr"].tolist() == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    assert model.torch_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs", [{"factor": 1.0}, {"factor": 0.0}, {"patience": -1}])
def test_reduce_lr_on_plateau_checks_its_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        xb.callbacks.reduce_lr_on_plateau(**kwargs)


def test_for_every_run_gives_its_callbacks_to_this_threads_fits_inside_the_block():
    import threading

    from exburn_nb.train.callbacks import Callback, for_every_run

    class Epochs(Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, epoch, logs):
            self.seen.append(epoch)
            return logs

    model, data = model_and_data()
    watcher = Epochs()
    with for_every_run(watcher):
        xb.fit(model, data, epochs=2, verbose=False)
        other = threading.Thread(target=xb.fit, args=(model, data), kwargs={"epochs": 1,
                                                                            "verbose": False})
        other.start()
        other.join()  # another thread's run: not given the block's callbacks
    xb.fit(model, data, epochs=1, verbose=False)  # after the block: not given them either
    assert watcher.seen == [1, 2]
    assert len(model.history) == 4
