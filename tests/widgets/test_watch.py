"""``xb.widgets.watch(run_dir)``: a run written elsewhere, shown live, with a Stop that
works; and issue 22's test 10 (its run-directory half): a ``torchrun`` script with
``run_dir=`` exits 0 and ``watch`` of its directory shows every epoch."""

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import exburn_nb as xb
from exburn_nb.io import rundir

# Ranks of the torchrun test (issue 22, test 10): rank 0 writes the run directory.
TORCHRUN_PROCESSES = 2
TESTS = Path(__file__).resolve().parents[1]


def data(n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def tiny():
    return xb.compile(xb.input("input", shape=(None, 4)).dense(8, activation="relu", name="h")
                      .dense(2, name="out"), seed=0)


def shows_every_epoch(view, model_history):
    """The watch's figure and status show exactly the run's epochs."""
    assert list(view.plot.figure.data[0].x) == model_history["epoch"].tolist()
    assert list(view.plot.figure.data[0].y) == pytest.approx(model_history["loss"].tolist())
    return True


def until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_watch_of_an_ended_run_shows_it_and_polls_nothing(tmp_path):
    model = xb.fit(tiny(), data(), epochs=3, batch_size=16, verbose=False,
                   run_dir=tmp_path / "run", accuracy=True)
    view = xb.widgets.watch(tmp_path / "run")
    assert shows_every_epoch(view, model.history)
    assert list(view.plot.figure.data[3].y) == pytest.approx(model.history["accuracy"].tolist())
    assert not view.polling and view.stop_button.disabled
    assert view.status.value.startswith("finished · 3 epochs trained")
    assert (view.progress.value, view.progress.max) == (9, 9)
    assert view.progress_label.value.startswith("epoch 3/3 · batch 3/3")
    view.close()


def test_watch_waits_for_a_run_then_follows_it_to_its_end(tmp_path):
    run_dir = tmp_path / "run"
    view = xb.widgets.watch(run_dir, poll_s=0.05)
    assert "waiting for a run" in view.status.value and view.polling
    assert view.stop_button.disabled
    model = tiny()
    seen = []

    class Slow(xb.Callback):  # epochs slow enough for the watch to see each one go by
        def on_epoch_end(self, epoch, metrics):
            until(lambda: view.follower.status == "running"
                  and view.follower.history.last_epoch == epoch - 1)
            seen.append(epoch)

    fit = threading.Thread(target=xb.fit, args=(model, data()), kwargs=dict(
        epochs=4, batch_size=8, verbose=False, run_dir=run_dir, callbacks=[Slow()]))
    fit.start()
    fit.join(120)
    assert view.wait(60) and not view.polling
    assert seen == [1, 2, 3, 4]  # the watch saw the run going at each epoch's end
    assert shows_every_epoch(view, model.history)
    assert view.status.value.startswith("finished · 4 epochs trained")
    assert view.follower.history.batch_count == len(model.batch_history)
    view.close()


def test_the_watch_stop_button_stops_a_run_at_the_end_of_its_batch(tmp_path):
    run_dir = tmp_path / "run"
    model = tiny()
    view = xb.widgets.watch(run_dir, poll_s=0.02)
    fit = threading.Thread(target=xb.fit, args=(model, data(2048)), kwargs=dict(
        epochs=10_000, batch_size=8, verbose=False, run_dir=run_dir))
    fit.start()
    until(lambda: view.follower.history.last_epoch >= 1 and not view.stop_button.disabled)
    view.stop_button.click()
    fit.join(120)
    assert not fit.is_alive() and 1 <= model.epochs_trained < 10_000
    assert view.wait(60)
    assert view.status.value.startswith("stopped")
    assert shows_every_epoch(view, model.history)
    view.close()


def test_closing_the_watch_ends_its_polling(tmp_path):
    view = xb.widgets.watch(tmp_path / "never", poll_s=0.02)
    assert view.polling
    view.close()
    assert view.wait(10) and not view.polling


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
def test_a_torchrun_script_writes_its_run_dir_and_watch_shows_every_epoch(tmp_path):
    """Issue 22, test 10 (run-directory half), at ``TORCHRUN_PROCESSES`` ranks."""
    run_dir = tmp_path / "run"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(TESTS.parent)!r}, {str(Path(__file__).parent)!r}]
        import exburn_nb as xb
        from test_watch import data, tiny
        model = xb.fit(tiny(), data(), epochs=3, batch_size=16, verbose=False,
                       run_dir={str(run_dir)!r})
        if model.epochs_trained != 3:
            sys.exit(1)
    """))
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable),
                                                        "torchrun")
    done = subprocess.run([torchrun, "--standalone",
                           f"--nproc-per-node={TORCHRUN_PROCESSES}", str(script)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # stacks on an abort
    assert done.returncode == 0, done.stderr[-3000:]
    run = xb.read_run(run_dir)
    assert run.status == "finished" and run.history["epoch"].tolist() == [1, 2, 3]
    view = xb.widgets.watch(run_dir)
    assert shows_every_epoch(view, run.history)
    assert view.status.value.startswith("finished · 3 epochs trained")
    view.close()


def test_a_damaged_rows_file_ends_polling_with_the_error_shown(tmp_path):
    run_dir = tmp_path / "run"
    view = xb.widgets.watch(run_dir, poll_s=0.02)
    rundir.write_header(run_dir, {"uid": "0123456789abcdef", "status": "running",
                                  "first_epoch": 1, "last_epoch": 2, "batches": 3})
    (run_dir / "history.jsonl").write_text('{"batch": {"epoch": 1, "batch": 1}}\n{oops\n')
    assert view.wait(30) and not view.polling
    assert "ValueError" in view.error_box.value and "line 2" in view.error_box.value
    view.close()


@pytest.mark.parametrize("option, value, match", [
    ("poll_s", 0, "poll_s must be a finite number > 0"),
    ("height", 10, "height must be an integer >= 100"),
    ("run_dir", 3, "run_dir must be a directory path")])
def test_bad_watch_arguments_are_refused_by_name(tmp_path, option, value, match):
    options = {"run_dir": tmp_path / "run", option: value}
    with pytest.raises(ValueError, match=match):
        xb.widgets.watch(**options)
