"""RunComparison driven in-process: buttons clicked, traits set, figure data read back."""

import math
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

import exburn_nb as xb
from exburn_nb.widgets import RunComparison, TrainingDashboard
from exburn_nb.widgets.compare import GROUPS, HIGHLIGHT, N_TRACES, PANELS, SERIES, SPECIAL


@pytest.fixture(scope="module")
def small(digits):
    (x, y), (tx, ty) = digits
    return (x[:300], y[:300]), (tx[:150], ty[:150])


def build(params):
    return (xb.input("input", shape=(None, 64))
            .dense(params["units"], activation="relu", name="hidden").dense(10, name="output"))


def make(small, **kw):
    data, val = small
    options = dict(validation_data=val, epochs=2, batch_size=64, accuracy=True,
                   params={"units": [4, 8], "learning_rate": [1e-3, 1e-2]})
    options.update(kw)
    return xb.Experiment(build, data, **options)


def drawn(view, groups=range(HIGHLIGHT)):
    """{(run, column): [(epoch, value), ...]} read back from the curve traces."""
    columns = (("loss", "val_loss"), view.right_columns)
    out = {}
    for group in groups:
        for panel in range(PANELS):
            for series in range(len(SERIES)):
                trace = view.curves.data[group * PANELS * len(SERIES) + panel * len(SERIES)
                                         + series]
                for x, y, run in zip(trace.x, trace.y, trace.customdata, strict=True):
                    if run is not None:
                        out.setdefault((run, columns[panel][series]), []).append((x, y))
    return out


def expected(frame):
    out = {}
    for column in ("loss", "val_loss", "accuracy", "val_accuracy"):
        if column not in frame:  # a run without validation data or accuracy
            continue
        for run, rows in frame[frame.epoch.notna()].groupby("run"):
            out[(run, column)] = list(zip(rows.epoch.astype(float), rows[column], strict=True))
    return out


def test_traces_equal_the_runs_frame_and_colour_by_regroups(small):
    exp = make(small).run()
    view = RunComparison(exp)
    assert len(view.curves.data) == N_TRACES
    assert drawn(view) == expected(exp.runs)
    groups = view.groups()
    assert len({groups[r] for r in exp.summary.query("units == 4").run}) == 1
    view.colour_by.value = "learning_rate"
    by_lr = view.groups()
    summary = exp.summary.set_index("run")
    assert all((by_lr[a] == by_lr[b]) == (summary.learning_rate[a] == summary.learning_rate[b])
               for a in by_lr for b in by_lr)
    assert drawn(view) == expected(exp.runs)
    names = {t.name for t in view.curves.data if t.visible is True}
    assert "learning_rate=0.001" in names and "learning_rate=0.01" in names
    view.highlight.value = (2,)
    highlighted = drawn(view, [HIGHLIGHT])
    assert {run for run, _ in highlighted} == {2}
    assert highlighted[(2, "val_loss")] == expected(exp.runs)[(2, "val_loss")]
    view.close()


def test_table_sorts_and_parallel_coordinates_hold_every_finished_run(small):
    exp = make(small, params={"units": [4, 8],
                              "learning_rate": [1e-3, 1e-2]}).run()
    view = RunComparison(exp)
    view.sort_by.value = "best_val_loss"
    view.descending.value = True
    rows = view.table_rows()
    assert rows.best_val_loss.is_monotonic_decreasing and len(rows) == 4
    html = view.table_html.value
    positions = [html.index(f"{v:.4g}") for v in rows.best_val_loss]
    assert positions == sorted(positions)
    view.descending.value = False
    assert view.table_rows().run.iloc[0] == exp.best_run
    dims = view.parallel.data[0].dimensions
    assert [d.label for d in dims] == ["units", "learning_rate", "best_val_loss"]
    assert list(dims[2]["values"]) == pytest.approx(exp.summary.best_val_loss.tolist())
    view.close()


def test_log_params_get_log_axes(small):
    exp = make(small, params={"units": [4], "learning_rate": xb.space.loguniform(1e-4, 1e-1)},
               search="random", n_trials=3).run()
    view = RunComparison(exp)
    dim = view.parallel.data[0].dimensions[1]
    assert dim.label == "learning_rate (log)"
    assert list(dim["values"]) == pytest.approx([__import__("math").log10(v) for v in
                                                 exp.summary.learning_rate])
    assert list(dim.ticktext) == ["0.0001", "0.001", "0.01", "0.1"]
    view.close()


def test_train_best_opens_a_dashboard_on_the_best_configuration(small):
    exp = make(small).run()
    view = RunComparison(exp)
    assert not view.best_button.disabled
    view.best_button.click()
    dash = view.dashboard
    assert isinstance(dash, TrainingDashboard) and dash in view.dashboard_box.children
    assert dash.model.learning_rate == exp.best["learning_rate"]
    assert dash.model.layers["hidden"].out_features == exp.best["units"]
    assert dash.model.history.empty  # fresh weights from the best run's seed
    view.close()


def test_live_updates_while_running_then_all_runs(small):
    # long enough for several draws at 2 per second however fast fit runs (small batches),
    # short enough for every point to be drawn (3 runs x 120 epochs in a curve's budget)
    exp = make(small, params={"units": [4, 8, 16]}, epochs=120, batch_size=16)
    view = RunComparison(exp)
    assert view.stop_button.disabled
    view.start_button.click()
    assert view.start_button.disabled and not view.stop_button.disabled
    seen_running, deadline = False, time.monotonic() + 120
    while exp.running and time.monotonic() < deadline:
        frame = view.runs_frame
        if not frame.empty and (frame.state == "running").any() and drawn(view):
            seen_running = True
        time.sleep(0.01)
    assert view.wait(120) and seen_running
    assert view.wait_drawn()
    assert drawn(view) == expected(exp.runs)
    assert set(view.summary_frame.state) == {"finished"}
    assert exp.summary.epochs.tolist() == [120] * 3
    assert not view.start_button.disabled and view.stop_button.disabled
    assert "3 runs (3 finished)" in view.status.value
    view.close()


def test_stop_button_stops_the_experiment(small):
    exp = make(small, params={"units": [4, 8]}, epochs=500)
    view = RunComparison(exp)
    view.start()
    deadline = time.monotonic() + 60
    while exp.runs.empty or exp.runs.epoch.isna().all():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    view.stop_button.click()
    assert view.wait(60)
    assert exp.summary.state.tolist() == ["stopped"]
    view.close()


def test_failed_and_pruned_runs_are_drawn_distinctly(small):
    optuna = pytest.importorskip("optuna")
    exp = make(small, search="optuna", n_trials=4, epochs=5,
               params={"units": [16], "learning_rate": [1e-2, 1e-5]},
               pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for lr in (1e-2, 1e-2, 1e-2, 1e-5):
        exp.study.enqueue_trial({"units": 16, "learning_rate": lr})
    exp.run()
    view = RunComparison(exp)
    pruned = drawn(view, [GROUPS + SPECIAL.index("pruned")])
    assert {run for run, _ in pruned} == {3}
    assert drawn(view) == expected(exp.runs)
    assert view.importance_box.layout.display != "none"
    assert set(view.importance.data[0].y) <= {"units", "learning_rate"}
    view.close()


def test_a_loaded_experiment_is_shown_read_only(small, tmp_path):
    exp = make(small).run()
    exp.save(tmp_path)
    view = RunComparison(xb.Experiment.load(tmp_path))
    assert view.start_button.disabled and view.best_button.disabled
    assert drawn(view) == expected(exp.runs)
    view.close()


def test_it_polls_a_study_that_another_experiment_fills(small, tmp_path):
    pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    params = {"units": [4, 8], "learning_rate": xb.space.loguniform(1e-3, 1e-1)}
    writer = make(small, search="optuna", n_trials=2, params=params, storage=storage,
                  study_name="s", pruner=None)
    watcher = make(small, search="optuna", n_trials=1, params=params, storage=storage,
                   study_name="s", pruner=None)
    view = RunComparison(watcher, poll_s=0.05)
    assert view.summary_frame.empty
    writer.run()
    deadline = time.monotonic() + 60
    while len(view.summary_frame) < 2 or set(view.summary_frame.state) != {"finished"} \
            or drawn(view) != expected(writer.runs):  # the table and curves catch up
        assert time.monotonic() < deadline
        time.sleep(0.05)
    view.close()
    assert drawn(view) == expected(writer.runs)


WORKER_SCRIPT = """
import torch
import exburn_nb as xb

x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
experiment = xb.Experiment(
    xb.input("input", shape=(None, 4)).dense(2, name="output"), (x, (x[:, 0] > 0).long()),
    params={"learning_rate": xb.space.loguniform(1e-3, 1e-1)}, search="optuna", n_trials=1,
    epochs=2, metric="loss", batch_size=32, pruner=None, verbose=False)
"""


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_it_shows_the_runs_a_worker_process_adds_to_the_study(tmp_path, request, backend):
    """The study another machine fills: its runs appear as they finish, and a trial that
    has not drawn its params yet (asked elsewhere a moment ago) does not stop the view."""
    storage = request.getfixturevalue("postgres") if backend == "postgres" \
        else f"journal://{tmp_path / 'study.log'}"
    study = f"s-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "search.py"
    script.write_text(WORKER_SCRIPT)
    namespace = {}
    exec(compile(WORKER_SCRIPT, str(script), "exec"), namespace)  # noqa: S102 - our own
    watcher = namespace["experiment"].replace(storage=storage, study_name=study)
    view = RunComparison(watcher, poll_s=0.1)
    assert view.summary_frame.empty
    bare = watcher.study.ask()  # asked on another machine, its params not drawn yet
    worker = subprocess.Popen(
        [sys.executable, "-m", "exburn_nb.experiment", "worker", str(script), "--storage",
         storage, "--study", study, "--trials", "2"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 120
        while list(view.summary_frame.get("state", [])) != ["running", "finished", "finished"] \
                or drawn(view) != expected(watcher.runs):  # the table and curves catch up
            assert time.monotonic() < deadline, worker.poll() is None or worker.communicate()
            time.sleep(0.1)
        assert worker.wait(120) == 0, worker.communicate()[1]
    finally:
        view.close()
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
    assert view.summary_frame.run.tolist() == [bare.number, 1, 2]
    assert {run for run, _ in drawn(view)} == {1, 2}
    assert "3 runs (" in view.status.value and "2 finished" in view.status.value


def test_bad_arguments(small):
    with pytest.raises(ValueError, match="experiment must be an xb.Experiment"):
        RunComparison("nope")
    with pytest.raises(ValueError, match="colour_by must be one of"):
        RunComparison(make(small), colour_by="depth")


def test_a_click_on_a_curve_highlights_its_run(small):
    exp = make(small, params={"units": [4, 8]}).run()
    view = RunComparison(exp)
    number, trace = next((i, t) for i, t in enumerate(view.curves.data) if 1 in t.customdata)
    index = list(trace.customdata).index(1)
    # what the page sends for a click on the curve (figure.js: a message of its own)
    view.curves._handle_custom_msg({"type": "xb-click", "callback": {
        "event_type": "plotly_click", "points": {
            "trace_indexes": [number], "point_indexes": [index],
            "xs": [trace.x[index]], "ys": [trace.y[index]]},
        "device_state": {"alt": False, "ctrl": False, "meta": False, "shift": False,
                         "button": 0, "buttons": 1}, "selector": None}}, [])
    assert view.highlight.value == (1,)
    assert {run for run, _ in drawn(view, [HIGHLIGHT])} == {1}
    view.close()


def test_a_click_on_a_table_row_highlights_its_run_as_a_curve_click_does(small):
    exp = make(small, params={"units": [4, 8]}).run()
    view = RunComparison(exp)
    # what the browser sends when the row of run 1 is clicked
    view.table_html._handle_custom_msg({"type": "row", "run": 1}, [])
    assert view.highlight.value == (1,)
    assert {run for run, _ in drawn(view, [HIGHLIGHT])} == {1}
    assert view.table_html.highlighted == [1]  # the row is marked too
    view.table_html.click(0)
    assert view.highlight.value == (0,)
    view.table_html._handle_custom_msg({"type": "row", "run": 99}, [])  # no such run
    assert view.highlight.value == (0,)
    view.close()


def test_a_running_run_shows_running_and_its_epochs_and_dashes_not_na(small):
    exp = make(small, params={"units": [4]}, epochs=3)
    started, go = threading.Event(), threading.Event()

    def hold(event, _exp):  # in the training thread: the run has started, no epoch yet
        if event == "run_start":
            started.set()
            go.wait(30)
    exp.add_listener(hold)
    view = RunComparison(exp)
    view.start()
    try:
        assert started.wait(60)
        view.refresh()
        html = view.table_html.value
        assert view.summary_frame.state.tolist() == ["running"]
        assert "<NA>" not in html and "nan" not in html.lower()
        assert "running · 0 epochs" in html and "<td>–</td>" in html  # best_*: none yet
    finally:
        go.set()
    assert view.wait(60)
    view.refresh()
    assert "running" not in view.table_html.value
    view.close()


def test_one_run_is_said_in_the_singular(small):
    view = RunComparison(make(small, params={"units": [4]}).run())
    assert "1 run (1 finished)" in view.status.value
    view.close()


def test_start_on_a_finished_experiment_says_so(small):
    exp = make(small, params={"units": [4]}).run()
    view = RunComparison(exp)
    assert view.notice.value == ""
    view.start_button.click()
    assert "every run is finished" in view.notice.value
    assert not exp.running and view.start() is False
    view.close()


@pytest.mark.parametrize("rate", [3e-3, 2e-4, 7e-6, 0.05])
def test_train_best_shows_exactly_the_rate_used_on_the_slider_grid(small, rate):
    exp = make(small, params={"units": [4], "learning_rate": [rate]}, epochs=1).run()
    view = RunComparison(exp)
    slider = view.train_best().learning_rate
    assert slider.value == rate == view.dashboard.model.learning_rate
    # a browser snaps the slider to min + k * step: the rate must be one of those values
    k = (math.log10(rate) - slider.min) / slider.step
    assert abs(k - round(k)) < 1e-9, (slider.min, slider.step)
    assert f"{10 ** (slider.min + round(k) * slider.step):.2e}" == f"{rate:.2e}"
    view.close()
