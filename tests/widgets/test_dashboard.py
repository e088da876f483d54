"""The dashboard driven in-process: buttons clicked, traits set, figure data read back."""

import math
import threading

import ipywidgets as W
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import exburn_nb as xb
from exburn_nb.widgets import TrainingDashboard
from exburn_nb.widgets.controls import learning_rate_slider, show_rate
from exburn_nb.widgets.progress import RunProgress


@pytest.fixture
def dash(mlp, digits):
    (x, y), (tx, ty) = digits
    d = TrainingDashboard(mlp(), (x, y), validation_data=(tx, ty), epochs=3, batch_size=64,
                          accuracy=True)
    yield d
    d.stop()
    d.wait(30)


def test_start_trains_and_the_figure_holds_the_history(dash):
    dash.start_button.click()
    assert dash.wait(60)
    h = dash.history
    fig = dash.plot.figure
    assert list(fig.data[0].x) == h["epoch"].tolist() == [1, 2, 3]
    assert list(fig.data[0].y) == pytest.approx(h["loss"].tolist())
    assert list(fig.data[1].y) == pytest.approx(h["val_loss"].tolist())
    assert list(fig.data[3].y) == pytest.approx(h["accuracy"].tolist())
    assert list(fig.data[4].y) == pytest.approx(h["val_accuracy"].tolist())
    assert len(fig.data[2].x) == len(dash.model.batch_history)  # smoothed batch loss
    assert dash.progress.value == dash.progress.max == 3 * 23
    assert "samples/s" in dash.progress_label.value
    assert "finished" in dash.status.value and "3 epochs" in dash.status.value
    assert "<table" in dash.table.value and "val_accuracy" in dash.table.value
    assert not dash.start_button.disabled and dash.stop_button.disabled


def test_double_click_starts_one_run(dash):
    dash.epochs.value = 30
    dash.start_button.click()
    dash.start_button.click()
    assert dash.start_button.disabled
    dash.stop_button.click()
    assert dash.wait(30)
    assert len([t for t in threading.enumerate() if t.name == "exburn-fit"]) == 0
    assert dash.model.epochs_trained < 30


def test_stop_acts_within_one_batch(dash):
    class StopAt(xb.Callback):
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (2, 5):
                dash.stop_button.click()

    dash.runner.add_callback(StopAt())
    dash.start()
    assert dash.wait(30)
    b = dash.model.batch_history
    assert len(b) == 23 + 5
    assert dash.runner.state == "stopped"
    dash.start()  # Start again continues, epochs numbered on
    assert dash.wait(60)
    assert dash.history["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_pause_button_toggles_to_resume(dash):
    paused = threading.Event()

    class PauseAt(xb.Callback):
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (1, 2):
                dash.pause_button.click()
                paused.set()

    dash.runner.add_callback(PauseAt())
    dash.start()
    assert paused.wait(30)
    assert dash.pause_button.description == "Resume" and dash.status.value == "paused"
    dash.pause_button.click()
    assert dash.wait(60)
    assert dash.pause_button.description == "Pause" and dash.model.epochs_trained == 3


def test_step_trains_exactly_one_epoch(dash):
    dash.step_button.click()
    assert dash.wait(30)
    dash.step_button.click()
    assert dash.wait(30)
    assert dash.history["epoch"].tolist() == [1, 2]


def test_freeze_toggle_freezes_the_layer(dash):
    assert set(dash.freeze_toggles) == {"hidden", "output"}
    before = dash.model.parameters()["hidden.weight"].detach().clone()
    dash.freeze_toggles["hidden"].value = True
    assert dash.model.frozen_layers == {"hidden"}
    dash.start()
    assert dash.wait(60)
    assert torch.equal(dash.model.parameters()["hidden.weight"], before)
    dash.freeze_toggles["hidden"].value = False
    assert dash.model.frozen_layers == set()


def test_learning_rate_slider_feeds_the_optimizer_and_history(dash):
    dash.learning_rate.value = 0.01
    assert dash.model.torch_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    dash.start(epochs=1)
    assert dash.wait(30)
    assert dash.history["lr"].tolist() == [pytest.approx(0.01)]


def test_lr_change_mid_run_is_marked_on_the_curve(dash):
    class Bump(xb.Callback):
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (1, 10):
                dash.learning_rate.value = 0.02

    dash.runner.add_callback(Bump())
    dash.start(epochs=2)
    assert dash.wait(60)
    marks = dash.plot.figure.data[5]
    assert len(marks.x) == 1 and marks.hovertext[0].startswith("lr 0.001 → 0.02 at epoch 0.")
    assert marks.mode == "markers"  # hover text, not labels piling up on the curve
    assert 0 < marks.x[0] < 1


def test_controls_feed_fit(dash):
    dash.batch_size.value = 100
    dash.epochs.value = 2
    dash.clip_norm.value = 1.0
    dash.schedule.value = "exponential"
    dash.accumulate.value = 2
    opts = dash.fit_overrides()
    assert opts["clip_norm"] == 1.0 and opts["accumulate_gradients"] == 2
    assert opts["lr_schedule"] == ("exponential", pytest.approx(1e-3), 0.9)
    dash.start()
    assert dash.wait(60)
    assert len(dash.model.batch_history) == 2 * 15
    assert dash.history["lr"].tolist() == pytest.approx([1e-3, 0.9e-3])


def test_optimizer_dropdown_switches_the_optimizer(dash):
    dash.optimizer.value = "sgd"
    assert dash.model.optimizer == "sgd"
    assert isinstance(dash.model.torch_optimizer, torch.optim.SGD)


def test_raising_callback_shows_its_error_in_red(mlp, digits):
    (x, y), _ = digits

    def broken(metrics):
        raise RuntimeError("boom from a callback")

    d = TrainingDashboard(mlp(), (x, y), epochs=2, callbacks=[broken])
    d.start()
    assert d.wait(30)
    assert "color:#c00" in d.error_box.value
    assert "RuntimeError: boom from a callback" in d.error_box.value
    assert "<details><summary>traceback</summary>" in d.error_box.value
    assert d.runner.state == "error" and not d.start_button.disabled


def test_bad_option_shows_an_error_and_starts_nothing(dash):
    dash.start(batch_size=0)
    assert "batch_size must be an integer &gt;= 1" in dash.error_box.value
    assert not dash.running


def test_nan_loss_is_reported(mlp, digits):
    (x, y), _ = digits
    d = TrainingDashboard(mlp(optimizer="sgd", learning_rate=1e6), (x * 1e3, y), epochs=3)
    d.start()
    d.wait(30)
    assert "the loss is nan" in d.error_box.value or "the loss is inf" in d.error_box.value
    assert "last finite weights" in d.error_box.value
    assert all(torch.isfinite(p).all() for p in d.model.parameters().values())


def test_reset_weights_clears_history_and_figure(dash):
    dash.start(epochs=1)
    assert dash.wait(30)
    before = dash.model.parameters()["hidden.weight"].detach().clone()
    dash.reset_button.click()
    fig = dash.plot.figure
    assert dash.history.empty and list(fig.data[0].x) == [None]  # a null point: legend kept
    assert all(list(t.x) == [None] for t in fig.data)
    assert dash.progress_label.value == "" and dash.status.value.startswith("weights reset")
    assert fig._widget_data[0]["x"] == [None]  # what a re-render shows
    assert not torch.equal(dash.model.parameters()["hidden.weight"], before)


def test_wrongly_shaped_data_fails_at_construction(mlp, digits):
    (x, y), (tx, ty) = digits
    with pytest.raises(ValueError, match="data x"):
        TrainingDashboard(mlp(), (x[:, :10], y), epochs=1)
    with pytest.raises(ValueError, match="validation_data"):
        TrainingDashboard(mlp(), (x, y), validation_data=(tx, ty[:5]), epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        TrainingDashboard(mlp(), (x, y), batch_size=0)
    with pytest.raises(TypeError, match="unknown fit option 'epochz'; did you mean 'epochs'"):
        TrainingDashboard(mlp(), (x, y), epochz=3)
    with pytest.raises(ValueError, match="nesterov=True needs optimizer 'sgd'"):
        TrainingDashboard(mlp(), (x, y), nesterov=True)
    with pytest.raises(ValueError, match="data y holds label"):
        TrainingDashboard(mlp(), (x, y + 10), epochs=1)


def test_pause_shows_where_the_run_holds_and_stops_the_clock(dash):
    paused = threading.Event()

    class PauseAt(xb.Callback):
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (1, 3):
                dash.pause_button.click()
                paused.set()

    dash.runner.add_callback(PauseAt())
    dash.start()
    assert paused.wait(30)
    assert dash.progress_label.value == "paused at epoch 1/3 · batch 3/23"
    held = dash.progress_cb.elapsed()
    threading.Event().wait(0.3)
    assert dash.progress_cb.elapsed() == pytest.approx(held, abs=0.05)  # paused time not counted
    dash.pause_button.click()
    assert dash.wait(60)
    assert "ETA" not in dash.progress_label.value and "samples/s" in dash.progress_label.value


def started_progress() -> RunProgress:
    progress = RunProgress(W.IntProgress(), W.Label(), lambda: None)
    progress.on_train_begin({"batches": 10, "first_epoch": 1, "epochs": 2})
    progress.on_batch_end(1, {"size": 8, "epoch": 1})
    return progress


def test_the_batch_ending_after_a_pause_is_where_the_label_says_the_run_holds():
    progress = started_progress()
    progress.pause()  # clicked while batch 2 was running
    assert progress.label.value == "paused at epoch 1/2 · batch 1/10"
    progress.on_batch_end(2, {"size": 8, "epoch": 1})  # within the label's throttle
    assert progress.label.value == "paused at epoch 1/2 · batch 2/10"


def test_a_pause_clicked_while_a_batch_label_is_written_is_not_overwritten():
    progress = started_progress()
    writing, clicked = threading.Event(), threading.Event()

    def slow_elapsed() -> float:  # the training thread, inside its label: Pause comes now
        writing.set()
        clicked.wait(5)
        threading.Event().wait(0.2)  # a pause that does not wait would write its label here
        return 1.0

    progress.elapsed = slow_elapsed
    batch = threading.Thread(target=progress.show, args=(1, 2))
    batch.start()
    assert writing.wait(5)
    clicked.set()
    progress.pause()
    batch.join(5)
    assert progress.label.value.startswith("paused at epoch 1/2"), progress.label.value


def test_freezing_shows_in_the_toggle_and_the_status(dash):
    dash.freeze_toggles["hidden"].value = True
    assert dash.freeze_toggles["hidden"].button_style == "info"
    assert "frozen: hidden" in dash.status.value
    dash.freeze_toggles["hidden"].value = False
    assert dash.freeze_toggles["hidden"].button_style == ""
    assert "frozen" not in dash.status.value


def test_slider_rounding_does_not_change_the_learning_rate(mlp, digits):
    (x, y), _ = digits
    d = TrainingDashboard(mlp(learning_rate=2e-4), (x, y), epochs=1)
    d.learning_rate.value = 10 ** -3.7  # what the browser sends back for 2e-4
    assert d.model.learning_rate == 2e-4
    d.learning_rate.value = 10 ** -3.6
    assert d.model.learning_rate == pytest.approx(10 ** -3.6)


def test_controls_are_served_on_the_front_ends_subshell(dash):
    from exburn_nb.widgets.frontend.comms import serve_on_subshell

    class FakeComm:  # ipykernel 7's Comm routes replies to the shell that last sent on it
        def _reply_subshell_for(self, data, default):
            return None

    class Holder:
        comm = FakeComm()

    serve_on_subshell(Holder)
    assert Holder.comm._reply_subshell_for({}, "subshell-1") == "subshell-1"
    assert dash.stop_button in dash.controls() and dash.learning_rate in dash.controls()


def test_save_and_export(dash, tmp_path):
    dash.start(epochs=1)
    assert dash.wait(30)
    dash.save_path.value = str(tmp_path / "m.exburn")
    dash.save_button.click()
    assert str((tmp_path / "m.exburn").resolve()) in dash.status.value  # where it went
    dash.csv_path.value = str(tmp_path / "h.csv")
    dash.csv_button.click()
    again = xb.load(tmp_path / "m.exburn")
    assert again.history["loss"].tolist() == dash.history["loss"].tolist()
    csv = pd.read_csv(tmp_path / "h.csv")
    assert csv["epoch"].tolist() == [1]
    assert str((tmp_path / "h.csv").resolve()) in dash.status.value


def test_device_selector_offers_what_exists(dash):
    assert list(dash.device.options) == xb.available_devices()
    assert dash.device.value == "cpu"


def forward_hooks(model):
    return sum(len(m._forward_hooks) for m in model.module.modules())


def test_lr_finder_button_in_the_controls_sets_the_slider(dash, digits):
    (x, y), _ = digits
    assert dash.lr_finder in dash.children and "xb-lr-find" in dash.lr_finder.button._dom_classes
    assert dash.lr_finder.button in dash.controls()
    dash.lr_finder.options = {"num_iter": 40}
    before = {k: v.clone() for k, v in dash.model.module.state_dict().items()}
    dash.lr_finder.button.click()
    lr = xb.lr_find(dash.model, (x, y), num_iter=40)[1]
    assert dash.lr_finder.suggestion == lr
    assert dash.learning_rate.value == pytest.approx(lr, rel=1e-6)
    assert dash.model.learning_rate == pytest.approx(lr, rel=1e-6)  # the slider feeds the optimizer
    assert all(torch.equal(before[k], v) for k, v in dash.model.module.state_dict().items())
    assert dash.model.history.empty


def test_network_panels_hook_only_while_open(mlp, digits):
    (x, y), _ = digits
    d = TrainingDashboard(mlp(), (x[:256], y[:256]), epochs=2, batch_size=32)
    panels = d.panels
    assert d.children[-1] is panels and not panels.toggle.value
    assert panels.box.layout.display == "none" and forward_hooks(d.model) == 0
    assert d.start() and d.wait(60)  # steps 1-16
    assert panels.norms.empty and forward_hooks(d.model) == 0  # closed: nothing recorded
    panels.toggle.value = True  # the person opens the section
    assert forward_hooks(d.model) > 0 and panels.box.layout.display is None
    assert d.start() and d.wait(60)  # steps 17-32, sampled
    norms = panels.norms
    assert not norms.empty and norms["step"].min() > 16 and norms["step"].max() == 32 and set(norms["layer"]) == {"hidden", "output"}
    assert len(panels.norm_figure.data[0].y) == len(norms[norms["layer"] == "hidden"])
    assert len(panels.hist_figure.data[0].y) == panels.bins
    panels.toggle.value = False
    assert forward_hooks(d.model) == 0 and panels.box.layout.display == "none"


def test_a_fit_config_seeds_the_controls_and_start_runs_it(mlp, digits):
    (x, y), _ = digits
    model = mlp()
    lr = model.learning_rate
    cfg = xb.FitConfig(epochs=2, batch_size=50, clip_norm=2.0, weight_decay=1e-3,
                       accumulate_gradients=2, lr_schedule=("cosine", lr, lr / 100),
                       accuracy=True, seed=3)
    d = TrainingDashboard(model, (x[:300], y[:300]), config=cfg, batch_size=60)  # keyword wins
    assert (d.epochs.value, d.batch_size.value, d.accumulate.value) == (2, 60, 2)
    assert (d.clip_norm.value, d.weight_decay.value, d.schedule.value) == (2.0, 1e-3, "cosine")
    assert d.config == cfg.replace(batch_size=60)
    d.clip_norm.value = 0.5  # a control changed before Start
    assert d.start() and d.wait(60)
    ran = d.runner.trainer.config
    assert ran == cfg.replace(batch_size=60, clip_norm=0.5,
                              lr_schedule=("cosine", lr, lr / 100))
    assert ran.accuracy and ran.seed == 3  # not on the controls: straight from the config
    assert d.model.runs.iloc[-1]["batch_size"] == 60 and len(d.history) == 2
    assert "accuracy" in d.history.columns


def test_a_config_schedule_without_a_name_runs_as_configured(mlp, digits):
    (x, y), _ = digits
    cfg = xb.FitConfig(epochs=1, lr_schedule=("step", 0.01, 1, 0.3))
    d = TrainingDashboard(mlp(), (x[:64], y[:64]), config=cfg)
    assert d.schedule.value == "as configured" and "as configured" in d.schedule.options
    assert d.start() and d.wait(60)
    assert d.runner.trainer.config.lr_schedule == ("step", 0.01, 1, 0.3)
    assert d.history["lr"].iloc[-1] == pytest.approx(0.01)
    d.schedule.value = "none"
    assert d.fit_overrides()["lr_schedule"] is None
    plain = TrainingDashboard(mlp(), (x[:64], y[:64]))
    assert "as configured" not in plain.schedule.options and plain.schedule.value == "none"


def test_a_config_that_is_not_a_fit_config_is_refused(mlp, digits):
    (x, y), _ = digits
    with pytest.raises(ValueError, match="config must be an xb.FitConfig"):
        TrainingDashboard(mlp(), (x, y), config={"epochs": 3})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        TrainingDashboard(mlp(), (x, y), config=xb.FitConfig(), batch_size=0)


# ---------------------------------------------------------------- issue 20: #3, #11, #12, #18
class StopAfter(xb.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            self.trainer.stop()


def test_resume_from_resumes_once_and_its_config_seeds_the_controls(mlp, digits, tmp_path):
    (x, y), _ = digits
    data = (x[:256], y[:256])
    options = dict(epochs=8, batch_size=64, weight_decay=1e-3, accumulate_gradients=2,
                   lr_schedule=("exponential", 1e-3, 0.9), accuracy=True, seed=0,
                   verbose=False)
    reference = xb.fit(mlp(), data, **options)
    xb.fit(mlp(), data, **options,
           callbacks=[xb.callbacks.checkpoint(1, tmp_path, keep=2), StopAfter(5)])
    d = TrainingDashboard(mlp(), data, resume_from=tmp_path)
    assert d.resumes_from == tmp_path / "epoch_0005.exburn" and "epoch_0005" in d.status.value
    assert (d.epochs.value, d.batch_size.value, d.accumulate.value, d.weight_decay.value) == (
        8, 64, 2, 1e-3)  # the checkpoint's config, not FitConfig's defaults
    assert d.learning_rate.value == pytest.approx(1e-3 * 0.9 ** 4)  # the rate it goes on at
    assert d.step_button.disabled and not d.step()  # Start resumes first
    assert d.lr_finder.button.disabled and d.lr_finder.run() is None
    assert d.optimizer.disabled
    d.optimizer.value = "sgd"  # the checkpoint's optimizer stays
    assert d.optimizer.value == d.model.optimizer == "adam" and "resumes it" in d.status.value
    assert d.start() and d.wait(60)
    timing = ["seconds", "samples_per_s"]
    pd.testing.assert_frame_equal(d.history.drop(columns=timing),
                                  reference.history.drop(columns=timing))  # exactly resumed
    assert d.resumes_from is None and not d.step_button.disabled
    first = d.history.drop(columns=timing)
    assert d.start() and d.wait(60)  # goes on from the model: no second resume
    assert d.history["epoch"].tolist() == list(range(1, 17))
    pd.testing.assert_frame_equal(d.history.drop(columns=timing).head(8), first)
    assert d.model.runs["epochs"].tolist() == [8, 8] and d.history["accuracy"].notna().all()


def test_a_slider_moved_before_resuming_applies_after_the_resume(mlp, digits, tmp_path):
    (x, y), _ = digits
    data = (x[:128], y[:128])
    xb.fit(mlp(), data, epochs=4, batch_size=64, verbose=False,
           callbacks=[xb.callbacks.checkpoint(1, tmp_path), StopAfter(2)])
    d = TrainingDashboard(mlp(learning_rate=0.05), data, resume_from=tmp_path)
    assert d.learning_rate.value == pytest.approx(1e-3)  # the checkpoint's, not the model's
    d.learning_rate.value = 0.02
    assert d.model.learning_rate == 0.05  # the fresh model is replaced by the checkpoint
    assert d.start() and d.wait(60)
    assert d.history["lr"].tolist() == pytest.approx([1e-3, 1e-3, 0.02, 0.02])


def test_a_bad_checkpoint_fails_at_construction(mlp, digits, tmp_path):
    (x, y), _ = digits
    with pytest.raises(FileNotFoundError, match="resume_from: no file"):
        TrainingDashboard(mlp(), (x, y), resume_from=tmp_path / "missing.exburn")
    xb.fit(mlp(), (x[:64], y[:64]), epochs=1, verbose=False,
           callbacks=[xb.callbacks.checkpoint(1, tmp_path)])
    with pytest.raises(ValueError, match="compile it with optimizer='adam'"):
        TrainingDashboard(mlp(optimizer="sgd"), (x, y), resume_from=tmp_path)


def test_controls_show_and_train_the_configured_values_exactly(mlp, digits):
    (x, y), _ = digits
    d = TrainingDashboard(mlp(learning_rate=1e-6), (x[:64], y[:64]), epochs=1,
                          weight_decay=2.0, accumulate_gradients=2000)
    assert d.learning_rate.value == 1e-6 and d.learning_rate.min <= -6
    assert (d.weight_decay.value, d.accumulate.value) == (2.0, 2000)
    assert d.start() and d.wait(60)
    run = d.model.runs.iloc[-1]
    assert (run["weight_decay"], run["accumulate_gradients"]) == (2.0, 2000)
    assert d.history["lr"].tolist() == [1e-6]
    d.optimizer.value = "sgd"  # a new optimizer at the model's rate, not the slider's grid
    assert d.model.learning_rate == 1e-6
    assert TrainingDashboard(mlp(), (x, y), epochs=0).epochs.value == 0  # 0 trains nothing


def test_controls_refuse_a_bad_value_with_a_message(dash):
    dash.accumulate.value = 0
    assert not dash.start() and not dash.running
    assert "accumulate_gradients must be an integer &gt;= 1; got 0" in dash.error_box.value
    assert dash.model.history.empty


@pytest.mark.parametrize("lr", [1e-9, 3e-7, 2e-4, 0.5, 7.0, 1e6])
def test_the_learning_rate_slider_holds_any_rate(mlp, digits, lr):
    (x, y), _ = digits
    d = TrainingDashboard(mlp(learning_rate=lr), (x, y), epochs=1)
    assert d.learning_rate.value == lr and d.model.learning_rate == lr
    assert d.fit_overrides()["lr_schedule"] is None
    d.schedule.value = "cosine"
    assert d.fit_overrides()["lr_schedule"][1] == lr


def test_the_optimizer_changed_during_a_run_reverts_once(dash):
    paused = threading.Event()

    class PauseAt(xb.Callback):
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (1, 2):
                dash.pause()
                paused.set()

    dash.runner.add_callback(PauseAt())
    dash.start()
    assert paused.wait(30)
    dash.optimizer.value = "sgd"  # no RecursionError
    assert dash.optimizer.value == dash.model.optimizer == "adam"
    assert "stop the run" in dash.status.value
    dash.resume()
    assert dash.wait(60)
    dash.optimizer.value = "sgd"
    assert dash.optimizer.value == dash.model.optimizer == "sgd"


def test_error_text_is_shown_never_run(mlp, digits):
    (x, y), _ = digits
    attack = "<img src=x onerror=alert(1)>"

    def broken(metrics):
        raise RuntimeError(attack)

    d = TrainingDashboard(mlp(), (x[:64], y[:64]), epochs=1, callbacks=[broken])
    d.lr_finder.options = {"num_iter": attack}
    assert d.lr_finder.run() is None
    assert "&lt;img src=x onerror=alert(1)&gt;" in d.lr_finder.label.value
    assert "<img" not in d.lr_finder.label.value
    d.start()
    assert d.wait(30)
    assert "&lt;img" in d.error_box.value and "<img" not in d.error_box.value


@given(st.floats(min_value=1e-12, max_value=1e12))
def test_a_rate_set_on_the_slider_is_kept_exactly(lr):
    slider = learning_rate_slider(1e-3)
    show_rate(slider, lr)
    assert slider.value == lr and slider.min <= math.log10(lr) <= slider.max


def test_the_device_changed_during_a_run_reverts_once(dash):
    dash.device.options = ["cpu", "gpu"]  # as on a machine with a GPU

    class SwitchAt(xb.Callback):
        def on_batch_end(self, batch, logs):
            if (logs["epoch"], batch) == (1, 2):
                dash.device.value = "gpu"  # no RecursionError

    dash.runner.add_callback(SwitchAt())
    assert dash.start() and dash.wait(60)
    assert dash.runner.state == "finished" and dash.device.value == dash.model.device == "cpu"


def test_freeze_toggles_show_the_checkpoints_and_apply_after_the_resume(mlp, digits, tmp_path):
    (x, y), _ = digits
    data = (x[:128], y[:128])
    xb.fit(mlp().freeze(["hidden"]), data, epochs=4, batch_size=64, verbose=False,
           callbacks=[xb.callbacks.checkpoint(1, tmp_path), StopAfter(2)])
    d = TrainingDashboard(mlp(), data, resume_from=tmp_path)
    assert d.freeze_toggles["hidden"].value and not d.freeze_toggles["output"].value
    d.freeze_toggles["output"].value = True  # chosen before Start: applied after the resume
    d.freeze_toggles["hidden"].value = False
    assert d.start() and d.wait(60)
    assert d.model.frozen_layers == {"output"} and "frozen: output" in d.status.value


def test_the_status_says_compiling_until_the_captured_step_is_built(mlp, digits):
    (x, y), _ = digits
    d = TrainingDashboard(mlp(), (x, y), epochs=1, batch_size=64, compile=True)
    seen = {}

    class Watch(xb.Callback):
        def on_batch_begin(self, batch, logs):
            seen.setdefault(("begin", batch), d.status.value)

        def on_batch_end(self, batch, logs):
            seen.setdefault(("end", batch), d.status.value)

    d.runner.add_callback(Watch())
    d.start()
    assert d.wait(300)
    assert seen[("begin", 1)] == "compiling…"
    assert seen[("end", 1)] == seen[("begin", 2)] == "training…"
    assert d.model.recorder.runs[-1]["compile_seconds"] > 0
    assert "finished" in d.status.value
