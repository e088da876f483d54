"""Run directories: ``fit(..., run_dir=...)`` writes ``run.json`` and ``history.jsonl`` as
it goes and stops on a ``STOP`` file; ``xb.read_run`` reads them back."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

import exburn_nb as xb
from exburn_nb.core.runs import GONE, RunFollower
from exburn_nb.io import rundir


def data(n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def tiny(seed=0):
    return xb.compile(xb.input("input", shape=(None, 4)).dense(8, activation="relu", name="h")
                      .dense(2, name="out"), seed=seed)


class TouchStop(xb.Callback):
    """Touch the stop file after batch ``batch`` of epoch ``epoch``, then hold that batch
    until the run directory's thread has seen it (so the test knows which batch ends)."""

    def __init__(self, run_dir, epoch, batch):
        self.run_dir, self.epoch, self.batch = run_dir, epoch, batch

    def on_batch_end(self, batch, logs):
        if (logs["epoch"], batch) == (self.epoch, self.batch):
            (self.run_dir / "STOP").touch()
            deadline = time.monotonic() + 60
            while not self.trainer.control.stopping and time.monotonic() < deadline:
                time.sleep(0.01)


def lines(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_fit_writes_every_row_and_how_the_run_ended(tmp_path):
    run_dir = tmp_path / "run"
    model = xb.fit(tiny(), data(), epochs=3, batch_size=16, accuracy=True,
                   validation_data=data(16), verbose=False, run_dir=run_dir, seed=0)
    run = xb.read_run(run_dir)
    assert run.status == "finished" and run.messages == []
    pd.testing.assert_frame_equal(run.history, model.history)
    pd.testing.assert_frame_equal(run.batches, model.batch_history)
    header = json.loads((run_dir / "run.json").read_text())
    assert header["status"] == "finished" and header["epochs_trained"] == 3
    assert (header["first_epoch"], header["last_epoch"], header["batches"]) == (1, 3, 3)
    assert header["config"]["run_dir"] == str(run_dir)
    # in file order: each epoch's batch rows, then its row
    kinds = [(next(iter(r)), next(iter(r.values()))["epoch"]) for r in lines(run_dir)]
    assert kinds == [(k, e) for e in (1, 2, 3) for k in ("batch",) * 3 + ("epoch",)]


def test_a_stop_file_stops_the_run_at_the_end_of_its_batch(tmp_path):
    run_dir = tmp_path / "run"
    model = xb.fit(tiny(), data(), epochs=5, batch_size=8, verbose=False, run_dir=run_dir,
                   callbacks=[TouchStop(run_dir, epoch=2, batch=3)])
    last = model.batch_history.iloc[-1]
    assert (last["epoch"], last["batch"]) == (2, 3)  # the batch in progress, then stop
    run = xb.read_run(run_dir)
    assert run.status == "stopped" and run.history["epoch"].tolist() == [1, 2]
    pd.testing.assert_frame_equal(run.batches, model.batch_history)


def test_a_run_started_with_a_stop_file_there_trains_nothing(tmp_path):
    rundir.request_stop(tmp_path / "run")
    model = xb.fit(tiny(), data(), epochs=5, batch_size=8, verbose=False,
                   run_dir=tmp_path / "run")
    assert model.epochs_trained == 0 and len(model.batch_history) == 0
    assert xb.read_run(tmp_path / "run").status == "stopped"


def test_another_runs_directory_is_refused_before_any_step(tmp_path):
    run_dir = tmp_path / "run"
    xb.fit(tiny(), data(), epochs=1, verbose=False, run_dir=run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    other = tiny(seed=1)
    weights = {k: v.clone() for k, v in other.parameters().items()}
    with pytest.raises(ValueError, match=r"run_dir .*run' holds another run .*uid"):
        xb.fit(other, data(), epochs=1, verbose=False, run_dir=run_dir)
    with pytest.raises(ValueError, match="holds another run"):  # the callback too
        xb.fit(other, data(), epochs=1, verbose=False,
               callbacks=[xb.callbacks.RunDirectory(run_dir)])
    assert other.epochs_trained == 0 and all(
        torch.equal(v, weights[k]) for k, v in other.parameters().items())
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


@pytest.mark.parametrize("bad, match", [(3, "run_dir must be None or a directory path"),
                                        ("", "run_dir must be None or a directory path")])
def test_a_bad_run_dir_is_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        xb.fit(tiny(), data(), epochs=1, verbose=False, run_dir=bad)


def test_a_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="run_dir .* is a file"):
        xb.fit(tiny(), data(), epochs=1, verbose=False, run_dir=tmp_path / "f")


def test_a_half_written_last_line_is_left_out_until_it_is_whole(tmp_path):
    run_dir = tmp_path / "run"
    model = xb.fit(tiny(), data(), epochs=2, batch_size=16, verbose=False, run_dir=run_dir)
    text = (run_dir / "history.jsonl").read_text()
    follower = RunFollower(run_dir)
    half = '{"epoch": {"epoch": 3, "loss": 0.'
    (run_dir / "history.jsonl").write_text(text + half)
    assert follower.poll() == 8 and follower.history.last_epoch == 2
    assert xb.read_run(run_dir).history.equals(model.history)
    with open(run_dir / "history.jsonl", "a") as f:  # the writer finishes its line
        f.write('5, "lr": 0.001}}\n')
    assert follower.poll() == 1 and follower.history.last_epoch == 3


def test_a_damaged_line_is_reported_with_the_file_and_line(tmp_path):
    run_dir = tmp_path / "run"
    xb.fit(tiny(), data(), epochs=1, batch_size=16, verbose=False, run_dir=run_dir)
    rows = (run_dir / "history.jsonl").read_text().splitlines()
    rows[1] = '{"batch": [1, 2]}'
    (run_dir / "history.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"history.jsonl' line 2 is not a row"):
        xb.read_run(run_dir)


def test_a_directory_without_a_run_is_waiting(tmp_path):
    run = xb.read_run(tmp_path / "not-yet")
    assert run.status == "waiting" and run.header is None
    assert run.history.empty and run.batches.empty


def test_a_killed_writer_leaves_whole_rows_and_reads_as_failed(tmp_path):
    """SIGKILL mid-run, after a half line: the rows before it read back, the run is
    failed (its process is gone), and a resumed run cuts the half line first."""
    run_dir = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {os.getcwd()!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        import exburn_nb as xb
        from test_rundir import data, tiny
        class Kill(xb.Callback):
            def on_batch_end(self, batch, logs):
                if (logs["epoch"], batch) == (3, 2):
                    with open({str(run_dir / "history.jsonl")!r}, "a") as f:
                        f.write('{{"batch": {{"epoch": 3, "ba')
                    os.kill(os.getpid(), signal.SIGKILL)
        xb.fit(tiny(), data(), epochs=5, batch_size=16, verbose=False, run_dir={str(run_dir)!r},
               callbacks=[xb.callbacks.checkpoint(1, {str(tmp_path / "ckpt")!r}), Kill()])
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=300)
    assert done.returncode == -signal.SIGKILL
    run = xb.read_run(run_dir)
    assert run.status == "failed" and GONE in run.messages
    assert run.history["epoch"].tolist() == [1, 2]  # epoch 3's row was never complete
    follower = RunFollower(run_dir)  # a watcher that was there before the resume
    follower.poll()
    # resumed from its epoch-2 checkpoint, the same run goes on in its directory
    model = xb.fit(tiny(), data(), verbose=False, resume_from=tmp_path / "ckpt",
                   callbacks=[xb.callbacks.checkpoint(1, tmp_path / "ckpt")])
    run = xb.read_run(run_dir)
    assert run.status == "finished" and run.header["resumed"] == 1
    pd.testing.assert_frame_equal(run.history, model.history)
    pd.testing.assert_frame_equal(run.batches, model.batch_history)
    follower.poll()  # the rewritten file is read again from its start: no row twice
    assert follower.restarts == 1
    pd.testing.assert_frame_equal(follower.history.epochs_frame(), model.history)
    pd.testing.assert_frame_equal(follower.history.batches_frame(), model.batch_history)


def test_only_rank_0_of_a_process_group_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    rundir.request_stop(tmp_path / "run")  # rank 1 does not read it either
    model = xb.fit(tiny(), data(), epochs=2, verbose=False, run_dir=tmp_path / "run")
    assert model.epochs_trained == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["STOP"]


def test_writing_rows_asks_no_device_sync_per_batch(tmp_path, monkeypatch):
    """Without the non-finite guard the loop keeps losses as tensors; a run directory
    reads them in bulk when it writes (no batch hook: the loop never reads one per batch),
    and its rows are the history's."""
    items = []
    real = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: items.append(1) or real(t))
    plain = xb.fit(tiny(), data(), epochs=2, batch_size=8, verbose=False, seed=0,
                   terminate_on_nan=False)
    without = len(items)
    model = xb.fit(tiny(), data(), epochs=2, batch_size=8, verbose=False, seed=0,
                   terminate_on_nan=False, run_dir=tmp_path / "run")
    assert len(items) - without == without  # the same .item() calls as without run_dir
    pd.testing.assert_frame_equal(xb.read_run(tmp_path / "run").batches, model.batch_history)
    pd.testing.assert_frame_equal(model.batch_history, plain.batch_history)
