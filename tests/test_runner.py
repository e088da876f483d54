"""The runner: fit in a background thread with stop, pause, resume and events."""

import threading
import time

import pytest
import torch

import exburn_nb as xb
from exburn_nb.train.runner import Runner


class Every(xb.Callback):
    """Calls ``fn(epoch, batch)`` after every batch."""

    def __init__(self, fn):
        self.fn = fn

    def on_batch_end(self, batch, logs):
        self.fn(logs["epoch"], batch)


def test_run_finishes_and_emits_events(mlp, digits):
    (x, y), _ = digits
    runner = Runner(mlp(), (x, y), epochs=2, batch_size=64)
    events = []
    runner.add_listener(lambda event, r: events.append((event, r.state)))
    assert runner.start()
    assert runner.wait(30)
    assert events == [("start", "running"), ("end", "finished")]
    assert runner.model.epochs_trained == 2 and not runner.running


def test_second_start_while_running_is_refused(mlp, digits):
    (x, y), _ = digits
    runner = Runner(mlp(), (x, y), epochs=50, batch_size=8)
    assert runner.start()
    assert not runner.start()
    runner.stop()
    assert runner.wait(30)
    assert runner.state == "stopped"


def test_stop_acts_within_one_batch(mlp, digits):
    (x, y), _ = digits
    runner = Runner(mlp(), (x, y), epochs=5, batch_size=16)
    runner.add_callback(Every(lambda e, b: runner.stop() if (e, b) == (1, 7) else None))
    runner.start()
    runner.wait(30)
    batches = runner.model.batch_history
    assert len(batches) == 7
    assert runner.model.history["epoch"].tolist() == [1]  # the partial epoch is recorded
    assert runner.model.history["loss"].iloc[0] == pytest.approx(
        (batches["loss"] * 16).sum() / (7 * 16))


def test_pause_holds_and_resume_continues(mlp, digits):
    (x, y), _ = digits
    runner = Runner(mlp(), (x, y), epochs=2, batch_size=16)
    paused = threading.Event()
    runner.add_callback(Every(lambda e, b: (runner.pause(), paused.set()) if (e, b) == (1, 3)
                              else None))
    runner.start()
    assert paused.wait(30)
    time.sleep(0.3)
    assert runner.state == "paused" and runner.running
    assert len(runner.model.batch_history) == 3  # rows land as batches end; no progress
    assert runner.trainer.step == 3  # steps so far
    runner.resume()
    assert runner.wait(30)
    assert runner.state == "finished" and runner.model.epochs_trained == 2


def test_error_in_a_callback_is_kept_with_its_traceback(mlp, digits):
    (x, y), _ = digits

    def broken(metrics):
        raise RuntimeError("callback exploded")

    runner = Runner(mlp(), (x, y), epochs=3, callbacks=[broken])
    runner.start()
    runner.wait(30)
    assert runner.state == "error"
    assert isinstance(runner.error, RuntimeError)
    assert "callback exploded" in runner.error_traceback and "broken" in runner.error_traceback
    assert runner.model.epochs_trained == 1  # the epoch before the error is kept


def test_bad_input_raises_at_start_before_any_thread(mlp, digits):
    (x, y), _ = digits
    runner = Runner(mlp(), (x[:, :10], y), epochs=1)
    with pytest.raises(ValueError, match="shape"):
        runner.start()
    assert runner.state == "idle" and runner.trainer is None


def test_learning_rate_change_lands_at_the_next_batch(mlp, digits):
    (x, y), _ = digits
    runner = Runner(mlp(), (x, y), epochs=2, batch_size=100)
    runner.add_callback(Every(lambda e, b: runner.set_learning_rate(0.05) if (e, b) == (1, 4)
                              else None))
    runner.start()
    runner.wait(30)
    lrs = runner.model.batch_history["lr"].tolist()
    assert lrs[:4] == [1e-3] * 4 and set(lrs[4:]) == {0.05}
    assert runner.model.history["lr"].tolist() == [0.05, 0.05]
    assert runner.model.torch_optimizer.param_groups[0]["lr"] == 0.05


def test_freeze_at_next_batch_keeps_those_weights_still(mlp, digits):
    (x, y), _ = digits
    model = mlp()
    runner = Runner(model, (x, y), epochs=2, batch_size=100)
    snapshot = {}

    def freeze_hidden(epoch, batch):
        if (epoch, batch) == (1, 2):
            def act():
                model.freeze(["hidden"])
                snapshot["w"] = model.parameters()["hidden.weight"].detach().clone()
            runner.at_next_batch(act)

    runner.add_callback(Every(freeze_hidden))
    before = model.parameters()["output.weight"].detach().clone()
    runner.start()
    runner.wait(30)
    assert torch.equal(model.parameters()["hidden.weight"], snapshot["w"])
    assert not torch.equal(model.parameters()["output.weight"], before)


def test_at_next_batch_runs_now_when_idle(mlp):
    runner = Runner(mlp(), (torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)))
    done = []
    runner.at_next_batch(lambda: done.append(1))
    runner.set_learning_rate(0.2)
    assert done == [1] and runner.model.torch_optimizer.param_groups[0]["lr"] == 0.2
