"""The dashboard (and its Runner) over a data-parallel run: ``processes=2``, gloo, forked
ranks, driven in-process. Each test has a timeout and checks that no rank outlives it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import pytest
import torch
import torch.distributed as dist

import exburn_nb as xb
from exburn_nb.widgets import TrainingDashboard

TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def per_test_timeout_and_no_leftover_ranks():
    def expire(signum, frame):
        raise TimeoutError(f"test ran past {TIMEOUT_S} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert multiprocessing.active_children() == []


class RanksReport(xb.Callback):
    """On every rank, at the end: where it stopped; rank 0 also its weights."""

    def __init__(self, directory):
        self.directory = directory

    def on_train_end(self, logs):
        rank, model = dist.get_rank(), logs["model"]
        (self.directory / f"rank{rank}").write_text(f"{model.recorder.batch_count}")
        if rank == 0:
            (self.directory / "weights").write_bytes(model.serialize_params())


def test_dashboard_stop_while_a_cell_blocks_stops_every_rank_on_the_same_batch(digits, tmp_path):
    (x, y), (tx, ty) = digits
    model = xb.compile(xb.input("input", shape=(None, 64)).dense(16, activation="relu")
                       .dense(10), seed=0)
    dash = TrainingDashboard(model, (x, y), validation_data=(tx, ty), epochs=50,
                             batch_size=32, accuracy=True, processes=2, seed=0,
                             callbacks=[RanksReport(tmp_path)])
    seen = []

    class StopAt(xb.Callback):  # runs here, in the kernel, on rank 0's rows
        def on_batch_end(self, batch, logs):
            seen.append((logs["epoch"], batch))
            if (logs["epoch"], batch) == (2, 5):
                dash.stop_button.click()

    dash.runner.add_callback(StopAt())
    assert dash.start()
    assert dash.wait(100)  # the cell blocks here; the Stop comes from the training thread
    assert dash.runner.state == "stopped", dash.runner.error_traceback
    rows = dash.model.batch_history
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == str(len(rows))
    assert seen == list(zip(rows["epoch"], rows["batch"], strict=True))  # streamed live
    assert (2, 5) <= seen[-1] < (50, 1)  # stopped soon after the click, mid-run
    saved = xb.deserialize_params((tmp_path / "weights").read_bytes())
    assert all(torch.equal(v, saved[k]) for k, v in dash.model.parameters().items())
    fig = dash.plot.figure
    assert list(fig.data[0].x) == dash.history["epoch"].tolist()
    assert "stopped" in dash.status.value


class RanksLearningRates(xb.Callback):
    """On every rank, at the end: the learning rate of each batch row."""

    def __init__(self, directory):
        self.directory = directory

    def on_train_end(self, logs):
        lrs = logs["model"].recorder.batch_rows_since(0)["lr"]
        (self.directory / f"lr{dist.get_rank()}").write_text(repr(lrs))


def test_runner_pause_resume_and_learning_rate_reach_every_rank_on_the_same_batch(tmp_path):
    from exburn_nb.train.runner import Runner

    g = torch.Generator().manual_seed(0)
    x = torch.randn(640, 4, generator=g)
    y = (x[:, 0] > 0).long()
    model = xb.compile(xb.input("input", shape=(None, 4)).dense(2), seed=0)
    runner = Runner(model, (x, y), epochs=4, batch_size=16, processes=2, seed=0,
                    callbacks=[RanksLearningRates(tmp_path)])
    states = []

    class Steer(xb.Callback):  # in the kernel, on rank 0's rows
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (1, 3):
                runner.pause()
                states.append(runner.state)
                runner.set_learning_rate(0.01)
                threading.Timer(0.5, runner.resume).start()

    runner.add_callback(Steer())
    assert runner.start()
    assert runner.wait(100)
    assert runner.state == "finished", runner.error_traceback
    assert states == ["paused"]
    lrs = runner.model.batch_history["lr"].tolist()
    assert (tmp_path / "lr0").read_text() == (tmp_path / "lr1").read_text() == repr(lrs)
    assert lrs[0] == 0.001 and lrs[-1] == 0.01 and len(lrs) == 4 * 40
    assert runner.model.torch_optimizer.param_groups[0]["lr"] == 0.01


def boom_on_rank_one(metrics):
    if dist.get_rank() == 1:
        raise RuntimeError("boom on rank 1")
    return metrics


def test_an_error_on_a_rank_is_shown_in_the_dashboard_and_every_rank_ends(digits):
    (x, y), _ = digits
    model = xb.compile(xb.input("input", shape=(None, 64)).dense(10), seed=0)
    before = {k: v.clone() for k, v in model.parameters().items()}
    dash = TrainingDashboard(model, (x, y), epochs=3, batch_size=32, processes=2,
                             callbacks=[boom_on_rank_one])
    assert dash.start()
    assert dash.wait(100)
    assert dash.runner.state == "error"
    assert "rank 1 of 2 raised RuntimeError: boom on rank 1" in dash.error_box.value
    assert all(torch.equal(v, before[k]) for k, v in dash.model.parameters().items())
    assert dash.model.history.empty and dash.model.batch_history.empty  # rows streamed, undone
    assert not dash.start_button.disabled


class InterruptEveryRank(xb.Callback):
    """What Jupyter's Interrupt does: SIGINT to every process of the kernel's group (here
    to each rank; the test's own process is left out)."""

    def on_batch_end(self, batch, logs):
        if (logs["epoch"], batch) == (1, 3):
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupt_reaching_the_ranks_is_a_clean_stop_on_the_same_batch(tmp_path):
    from exburn_nb.train.runner import Runner

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6400, 4, generator=g)
    y = (x[:, 0] > 0).long()
    model = xb.compile(xb.input("input", shape=(None, 4)).dense(2), seed=0)
    runner = Runner(model, (x, y), epochs=5, batch_size=16, processes=2, seed=0,
                    callbacks=[InterruptEveryRank(), RanksReport(tmp_path)])
    assert runner.start()
    assert runner.wait(100)
    assert runner.state == "stopped", runner.error_traceback
    rows = len(runner.model.batch_history)
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == str(rows)
    assert 3 <= rows < 400
