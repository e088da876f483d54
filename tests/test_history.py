"""History: the epoch and batch frames, their stable schema, and their plain-data state."""

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from torch_reference import classification_data, fit, mlp_spec

import exburn_nb as xb
from exburn_nb.core.history import BATCH_COLUMNS, EPOCH_COLUMNS, History


def row(epoch, **extra):
    return {"epoch": epoch, "loss": 1.0 / epoch, "lr": 0.01, "seconds": 0.5,
            "samples_per_s": 100.0, **extra}


def test_an_empty_history_has_the_schema_and_no_rows():
    h = History()
    assert h.last_epoch == 0 and h.last_step == 0
    assert h.epochs_frame().empty
    batches = h.batches_frame()
    assert batches.empty and batches.columns.tolist() == list(BATCH_COLUMNS)
    assert batches.dtypes.tolist() == [np.int64, np.int64, np.int64, np.float64, np.float64,
                                       np.int64]


def test_optional_columns_appear_in_order_once_some_epoch_has_them():
    h = History()
    h.record_epoch(row(1))
    assert h.epochs_frame().columns.tolist() == ["epoch", "loss", "lr", "seconds",
                                                 "samples_per_s"]
    h.record_epoch(row(2, val_accuracy=0.5, accuracy=0.4, val_loss=0.3))
    h.record_epoch(row(3, val_accuracy=0.5, accuracy=0.4, val_loss=0.3, run=2))
    frame = h.epochs_frame()
    assert frame.columns.tolist() == list(EPOCH_COLUMNS)
    assert frame["val_loss"].isna().tolist() == [True, False, False]  # missing in epoch 1
    assert frame["epoch"].dtype == np.int64


def test_extra_columns_come_after_the_base_ones_sorted():
    h = History()
    h.record_epoch(row(1, zeta=1.0))
    h.record_epoch(row(2))
    h.update_last_epoch({"alpha": 2.0, "zeta": 3.0})
    frame = h.epochs_frame()
    assert frame.columns.tolist()[-2:] == ["alpha", "zeta"]
    assert frame["zeta"].tolist() == [1.0, 3.0]


def test_rows_are_copies():
    h = History()
    original = row(1)
    h.record_epoch(original)
    original["loss"] = 99.0
    h.epoch_rows[0]["loss"] = 42.0
    assert h.epoch_rows[0]["loss"] == 1.0


def test_batches_and_last_step():
    h = History()
    h.record_batch(1, 1, 1, 1, 0.5, 0.1)
    h.record_batch(1, 1, 2, 2, torch.tensor(0.4), 0.1)  # a loss still on the device: read lazily
    h.record_batch(2, 2, 1, 3, 0.3, 0.05)
    frame = h.batches_frame()
    assert frame.to_dict("list") == {"epoch": [1, 1, 2], "batch": [1, 2, 1], "step": [1, 2, 3],
                                     "loss": [0.5, pytest.approx(0.4), 0.3],
                                     "lr": [0.1, 0.1, 0.05], "run": [1, 1, 2]}
    assert h.last_step == 3 and h.batch_count == 3
    assert h.batch_rows_since(2) == {"epoch": [2], "batch": [1], "step": [3], "loss": [0.3],
                                     "lr": [0.05], "run": [2]}


def test_logged_batch_values_become_columns_padded_with_nan():
    h = History()
    h.record_batch(1, 1, 1, 1, 0.5, 0.1)
    h.record_batch(1, 1, 2, 2, 0.4, 0.1, {"grad_norm": 3.0})
    h.update_last_batch({"other": 1.0})
    h.record_batch(1, 1, 3, 3, 0.3, 0.1)
    frame = h.batches_frame()
    assert frame.columns.tolist()[-2:] == ["grad_norm", "other"]
    assert frame["grad_norm"].isna().tolist() == [True, False, True]
    assert frame["other"].tolist()[1] == 1.0


def test_runs_record_their_configs():
    h = History()
    assert h.start_run({"epochs": 2}) == 1 and h.start_run({"epochs": 5}) == 2
    assert h.runs_frame()["epochs"].tolist() == [2, 5]
    again = History.from_state(json.loads(json.dumps(h.to_state())))
    assert again.runs == h.runs


def test_state_round_trips_through_json():
    h = History()
    h.record_epoch(row(1, val_loss=0.2))
    h.record_epoch(row(2, val_loss=0.1, extra=3))
    h.record_batch(1, 1, 1, 1, 0.5, 0.1)
    h.record_batch(1, 2, 1, 2, 0.4, 0.1)
    state = json.loads(json.dumps(h.to_state(), allow_nan=False))
    again = History.from_state(state)
    pd.testing.assert_frame_equal(again.epochs_frame(), h.epochs_frame())
    pd.testing.assert_frame_equal(again.batches_frame(), h.batches_frame())
    assert again.last_epoch == 2
    assert History.from_state({}).epochs_frame().empty


def test_clear_forgets_everything():
    h = History()
    h.record_epoch(row(1))
    h.record_batch(1, 1, 1, 1, 0.5, 0.1)
    h.start_run({})
    h.clear()
    assert not h.runs
    assert h.last_epoch == 0 and h.epochs_frame().empty and h.batches_frame().empty


def test_concurrent_writers_and_readers_see_whole_rows():
    h = History()
    errors = []

    def write(start):
        for i in range(200):
            h.record_batch(1, start, i, i, 1.0, 0.1)

    def read():
        for _ in range(50):
            try:
                frame = h.batches_frame()
                assert frame.notna().all().all()
            except Exception as exc:  # collected for the main thread
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(h.batches_frame()) == 600


def test_model_history_is_a_fresh_frame_each_time():
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, classification_data(), epochs=2)
    frame = model.history
    frame.loc[0, "loss"] = -1.0
    assert model.history.loc[0, "loss"] != -1.0
    assert model.history["loss"].notna().all()
    assert (model.history["loss"] > 0).all()


@pytest.mark.parametrize("accuracy, validation", [(False, False), (True, True)])
def test_fit_history_holds_plain_finite_numbers(accuracy, validation):
    x, y = classification_data()
    model = xb.compile(mlp_spec(), seed=0)
    fit(model, (x, y), epochs=2, accuracy=accuracy,
        validation_data=(x, y) if validation else None)
    state = model.recorder.to_state()
    json.dumps(state, allow_nan=False)  # no NaN, no tensors, no NumPy scalars
    for r in state["epochs"]:
        assert all(type(v) in (int, float) for v in r.values())
    for column, values in state["batches"].items():
        assert all(type(v) is (int if column in ("epoch", "batch", "step", "run") else float)
                   for v in values), column
    assert model.history.notna().all().all()
