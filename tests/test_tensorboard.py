"""xb.callbacks.tensorboard, read back with TensorBoard's own reader: every scalar's steps
and values are the history's, the graph is there (or a note says why not), the file is
whole after Ctrl-C or an error, and an experiment writes one directory per run with its
params as hparams."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import exburn_nb as xb
from exburn_nb.train.callbacks import listens_to_batches

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")
hparams_metadata = pytest.importorskip("tensorboard.plugins.hparams.metadata")

EPOCH_POSITION, BATCH_POSITION = ("epoch", "run"), ("run", "epoch", "batch", "step")


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long()


def spec(units=8):
    return (xb.input("input", shape=(None, 8)).dense(units, activation="relu")
            .dropout(0.2).dense(2))


def read(path):
    acc = event_accumulator.EventAccumulator(
        str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def series(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def as_float32(values):
    return [float(np.float32(v)) for v in values]


def assert_scalars_are_the_history(acc, epochs, batches):
    """Every column of both frames is a scalar series with the history's steps and values
    (float32, as TensorBoard stores them), and there is no other series."""
    expected = {}
    for column in epochs.columns.drop(list(EPOCH_POSITION), errors="ignore"):
        rows = epochs[["epoch", column]].dropna()
        expected[f"epoch/{column}"] = list(zip(rows["epoch"].tolist(),
                                               as_float32(rows[column]), strict=True))
    for column in batches.columns.drop(list(BATCH_POSITION)):
        rows = batches[["step", column]].dropna()
        expected[f"batch/{column}"] = list(zip(rows["step"].tolist(),
                                               as_float32(rows[column]), strict=True))
    found = {t: series(acc, t) for t in acc.Tags()["scalars"] if not t.startswith("final/")}
    assert found == expected


class LogsBatches(xb.Callback):
    """A batch extra (``grad_hint``) on every other batch: NaN elsewhere in the frame."""

    def on_batch_end(self, batch, logs):
        if batch % 2:
            self.trainer.log("grad_hint", logs["loss"] / 2)


def doubled(metrics):  # an epoch extra added by a callback after the TensorBoard one
    return {**metrics, "doubled": 2 * metrics["loss"]}


def test_scalars_and_graph_equal_the_history(tmp_path):
    model = xb.compile(spec(), seed=0)
    x, y = data()
    board = xb.callbacks.tensorboard(tmp_path / "tb")
    xb.fit(model, (x, y), epochs=3, batch_size=16, validation_data=data(32, 1),
           accuracy=True, lr_schedule=("step", 0.01, 1, 0.5), verbose=False,
           callbacks=[board, doubled, LogsBatches()])
    acc = read(tmp_path / "tb")
    assert acc.Tags()["graph"]
    history, batches = model.history, model.batch_history
    assert {"epoch/lr", "epoch/val_accuracy", "epoch/doubled", "batch/lr",
            "batch/grad_hint"} <= set(acc.Tags()["scalars"])
    assert_scalars_are_the_history(acc, history, batches)
    assert len(set(history["lr"])) == 3  # the schedule moved it: lr is a real series
    assert board.board is None  # closed at the run's end


def test_a_second_fit_writes_only_its_own_rows(tmp_path):
    model = xb.compile(spec(), seed=0)
    xb.fit(model, data(), epochs=2, batch_size=32, verbose=False)
    xb.fit(model, data(), epochs=2, batch_size=32, verbose=False,
           callbacks=[xb.callbacks.tensorboard(tmp_path)])
    acc = read(tmp_path)
    second = model.history["run"] == 2
    assert [s for s, _ in series(acc, "epoch/loss")] == [3, 4]
    assert_scalars_are_the_history(acc, model.history[second],
                                   model.batch_history[model.batch_history["run"] == 2])


def test_the_callback_costs_batches_nothing_and_changes_no_result(tmp_path):
    board = xb.callbacks.tensorboard(tmp_path)
    assert not listens_to_batches(board)  # the loop does not even call it per batch
    runs = []
    for callbacks in ([], [board]):
        model = xb.compile(spec(), seed=0)
        xb.fit(model, data(), epochs=2, batch_size=16, seed=3, verbose=False,
               callbacks=callbacks)
        runs.append(model.batch_history["loss"].tolist())
    assert runs[0] == runs[1]  # tracing the graph moved no weight and drew no random number


class RaiseAt(xb.Callback):
    def __init__(self, epoch, batch, exc):
        self.epoch, self.batch, self.exc = epoch, batch, exc

    def on_batch_end(self, batch, logs):
        if (logs["epoch"], batch) == (self.epoch, self.batch):
            raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError("callback bug")],
                         ids=["ctrl-c", "error"])
def test_the_files_are_whole_after_ctrl_c_or_an_error(tmp_path, exc):
    model = xb.compile(spec(), seed=0)
    board = xb.callbacks.tensorboard(tmp_path)
    callbacks = [board, RaiseAt(2, 2, exc)]
    if exc is KeyboardInterrupt:
        with pytest.warns(UserWarning, match="training interrupted"):
            xb.fit(model, data(), epochs=4, batch_size=16, verbose=False, callbacks=callbacks)
    else:
        with pytest.raises(RuntimeError, match="callback bug"):
            xb.fit(model, data(), epochs=4, batch_size=16, verbose=False, callbacks=callbacks)
    assert board.board is None
    acc = read(tmp_path)
    assert len(series(acc, "batch/loss")) == 4 + 2  # the interrupted epoch's two batches too
    assert_scalars_are_the_history(acc, model.history, model.batch_history)


class NeedsData(nn.Module):
    """Cannot be traced on one sample (as some normalisations need two or more)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 2)

    def forward(self, x):
        if x.shape[0] < 2:
            raise ValueError("needs a batch of two samples or more")
        return self.linear(x)


@pytest.mark.parametrize("input_shape, note", [((None, 8), "could not trace"),
                                               (None, "no input_shape")])
def test_no_graph_is_a_note_not_a_failure(tmp_path, input_shape, note):
    model = xb.compile(NeedsData(), input_shape=input_shape, seed=0)
    with pytest.warns(UserWarning, match=f"no graph.*{note}"):
        xb.fit(model, data(), epochs=2, batch_size=32, verbose=False,
               callbacks=[xb.callbacks.tensorboard(tmp_path)])
    acc = read(tmp_path)
    assert not acc.Tags()["graph"]
    assert "graph/text_summary" in acc.Tags()["tensors"]
    assert note in acc.Tensors("graph/text_summary")[0].tensor_proto.string_val[0].decode()
    assert_scalars_are_the_history(acc, model.history, model.batch_history)


@pytest.mark.parametrize("parallel", [None, "vmap"])
def test_an_experiment_writes_a_directory_per_run_with_hparams(tmp_path, parallel):
    x, y = data()
    exp = xb.Experiment(spec(), (x, y), validation_data=data(32, 1),
                        params={"learning_rate": [1e-3, 1e-2], "batch_size": [16, 32]},
                        epochs=2, parallel=parallel)
    exp.add_listener(xb.callbacks.tensorboard(tmp_path))
    exp.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"run_000{i}" for i in range(4)]
    runs = exp.runs
    for number in range(4):
        params = exp.results.get(number).params
        acc = read(tmp_path / f"run_{number:04d}")
        rows = runs[runs["run"] == number]
        assert acc.Tags()["graph"]
        for column in ("loss", "val_loss", "lr", "seconds"):
            assert series(acc, f"epoch/{column}") == list(zip(
                rows["epoch"].tolist(), as_float32(rows[column]), strict=True))
        batches_per_epoch = math.ceil(64 / params["batch_size"])
        assert [s for s, _ in series(acc, "batch/loss")] == list(
            range(1, 2 * batches_per_epoch + 1))
        content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        start = hparams_metadata.parse_session_start_info_plugin_data(
            content[hparams_metadata.SESSION_START_INFO_TAG])
        assert {k: v.number_value for k, v in start.hparams.items()} == params
        experiment = hparams_metadata.parse_experiment_plugin_data(
            content[hparams_metadata.EXPERIMENT_TAG])
        assert sorted(m.name.tag for m in experiment.metric_infos) == ["final/loss",
                                                                       "final/val_loss"]
        for metric in ("loss", "val_loss"):
            assert series(acc, f"final/{metric}") == [(2, float(np.float32(
                rows[metric].iloc[-1])))]
    best = exp.best_model  # its own batch rows, all of them
    acc = read(tmp_path / f"run_{exp.best_run:04d}")
    assert_scalars_are_the_history(acc, best.history, best.batch_history)


def test_missing_tensorboard_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install 'exburn_nb\[export\]'"):
        xb.callbacks.tensorboard("runs")


@pytest.mark.parametrize("log_dir", [None, "", 3])
def test_a_bad_log_dir_is_named(log_dir):
    with pytest.raises(ValueError, match="log_dir"):
        xb.callbacks.tensorboard(log_dir)
