"""``live_plot`` for a blocking fit, and the figure's throttling."""

import pytest

import exburn_nb as xb
from exburn_nb.widgets import plot


def test_live_plot_draws_the_history_under_a_blocking_fit(mlp, digits, capsys):
    (x, y), (tx, ty) = digits
    cb = xb.widgets.live_plot()
    model = xb.fit(mlp(), (x, y), epochs=3, batch_size=64, validation_data=(tx, ty),
                   accuracy=True, verbose=False, callbacks=[cb])
    fig = cb.figure
    assert list(fig.data[0].y) == pytest.approx(model.history["loss"].tolist())
    assert list(fig.data[1].y) == pytest.approx(model.history["val_loss"].tolist())
    assert "FigureWidget" in capsys.readouterr().out  # displayed (plain repr outside Jupyter)


def test_updates_are_throttled(mlp, digits, monkeypatch):
    (x, y), _ = digits
    cb = xb.widgets.live_plot()
    pushed = []
    monkeypatch.setattr(cb.figure, "batch_update", _counting_batch_update(cb.figure, pushed))
    model = xb.fit(mlp(), (x, y), epochs=2, batch_size=8, verbose=False, callbacks=[cb])
    batches = 2 * 180
    assert len(pushed) < batches / 4  # far fewer pushes than batches
    assert list(cb.figure.data[0].x) == [1, 2]  # the run's end always draws the last state
    assert list(cb.figure.data[0].y) == pytest.approx(model.history["loss"].tolist())


def test_long_runs_are_decimated(monkeypatch, mlp, digits):
    (x, y), _ = digits
    monkeypatch.setattr(plot, "MAX_BATCH_POINTS", 50)
    monkeypatch.setattr(plot, "POINT_BUDGET", 25)
    cb = xb.widgets.live_plot()
    xb.fit(mlp(), (x, y), epochs=2, batch_size=4, verbose=False, callbacks=[cb])
    assert 12 <= len(cb.figure.data[2].x) <= 25
    xs = list(cb.figure.data[2].x)
    assert xs == sorted(xs) and xs[-1] > 1.5  # spans the whole run


def test_every_curve_keeps_to_the_point_budget():
    """A 1,000-epoch history (as the figure reads it) is drawn within the budget."""
    from types import SimpleNamespace

    from exburn_nb.core.history import History

    rows = [{"epoch": e, "loss": 1 / e, "val_loss": 1.1 / e, "accuracy": 1 - 1 / e,
             "val_accuracy": 1 - 1.1 / e} for e in range(1, 1001)]
    history = History()
    for row in rows:
        history.record_epoch(row)
    cb = plot.LivePlot(display=False)
    cb.model = SimpleNamespace(recorder=history)
    cb.draw(force=True)
    for i in (0, 1, 3, 4):
        assert 0 < len(cb.figure.data[i].x) <= plot.POINT_BUDGET
        assert cb.figure.data[i].x[0] == 1 and cb.figure.data[i].x[-1] == 1000


def test_decimate_keeps_the_ends_and_the_budget():
    xs = list(range(1001))
    dx, dy = plot.decimate(xs, xs, 100)
    assert len(dx) <= 100 and dx[0] == 0 and dx[-1] == 1000 and dx == dy
    assert plot.decimate([1, 2], [3, 4], 100) == ([1, 2], [3, 4])


def test_points_are_in_the_synced_widget_state(mlp, digits):
    """Voila and a reloaded page render from the widget's state: it holds every point."""
    (x, y), _ = digits
    cb = xb.widgets.live_plot()
    sent = []
    original = cb.figure.send_state

    def send_state(key=None):
        sent.append(key)
        original(key)

    cb.figure.send_state = send_state
    model = xb.fit(mlp(), (x, y), epochs=3, batch_size=64, verbose=False, callbacks=[cb])
    state = cb.figure.get_state()["_widget_data"]
    assert [d["x"] for d in state[:1]] == [[1, 2, 3]]
    assert state[0]["y"] == pytest.approx(model.history["loss"].tolist())
    assert ["_widget_data", "_widget_layout", "_xb_synced"] in sent  # the run's end sends it


def test_layout_fills_its_container_and_reads_well():
    fig = plot.make_figure()
    assert fig.layout.autosize and fig.layout.width is None
    assert tuple(fig.layout.yaxis2.range) == (0, 1) and fig.layout.yaxis2.tickformat == ".0%"
    assert fig.layout.legend.y > 1 and fig.layout.legend.yanchor == "bottom"  # above the data
    assert fig.data[plot.LR_MARK].mode == "markers"
    assert fig._config["responsive"]


def _counting_batch_update(fig, pushed):
    original = fig.batch_update

    def batch_update():
        pushed.append(1)
        return original()

    return batch_update


def test_live_plot_controls_stop_pause_and_lr_in_a_blocking_fit(mlp, digits):
    """The buttons' handlers run on another thread (a kernel subshell) while fit blocks."""
    import threading
    import warnings

    (x, y), _ = digits
    cb = xb.widgets.live_plot()
    ui = cb.controls
    resumed = []

    class Steer(xb.Callback):
        def on_batch_end(self, batch, logs):
            step = (logs["epoch"], batch)
            if step == (1, 3):
                ui.learning_rate.value = 1e-2
            elif step == (1, 5):
                ui.pause_button.click()
                assert ui.status.value == "paused" and ui.pause_button.description == "Resume"
                threading.Timer(0.2, lambda: (resumed.append(1), ui.pause_button.click())).start()
            elif step == (2, 4):
                ui.stop_button.click()

    model = mlp()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xb.fit(model, (x, y), epochs=5, batch_size=64, verbose=False, callbacks=[Steer(), cb])
    assert resumed  # the pause held the loop until the click from another thread
    assert model.epochs_trained == 2 and len(model.batch_history) == 23 + 4  # stopped mid-epoch
    lrs = model.batch_history["lr"].tolist()
    assert lrs[2] == pytest.approx(1e-3) and lrs[3] == pytest.approx(1e-2)  # at the next batch
    assert ui.status.value == "stopped · 2 epochs trained" and ui.stop_button.disabled
    assert not caught  # a Stop is a clean stop (trainer.stop()), not an interrupt
    assert "xb-stop" in ui.stop_button._dom_classes


@pytest.fixture
def static_renderer():
    from exburn_nb.widgets.frontend import render

    xb.widgets.set_renderer("static")
    yield
    render.set_renderer("auto")


def test_renderer_is_chosen_from_hints_and_by_option(monkeypatch):
    from exburn_nb.widgets.frontend import render

    for hint in render.STATIC_HINTS:
        monkeypatch.delenv(hint, raising=False)
    assert render.renderer() == "widget"
    monkeypatch.setenv("VSCODE_PID", "1234")
    assert render.renderer() == "static"
    render.set_renderer("widget")
    assert render.renderer() == "widget"
    render.set_renderer("auto")
    with pytest.raises(ValueError, match="renderer must be one of widget, static, auto"):
        render.set_renderer("svg")


def test_static_dashboard_shows_a_plain_plotly_figure(static_renderer, mlp, digits):
    import plotly.graph_objects as go

    (x, y), _ = digits
    dash = xb.widgets.TrainingDashboard(mlp(), (x, y), epochs=2, batch_size=64)
    assert type(dash.plot.figure) is go.Figure and dash.plot.view in dash.children
    dash.start()
    assert dash.wait(60)
    shown = dash.plot.view.outputs[-1]["data"]["application/vnd.plotly.v1+json"]
    assert shown["data"][0]["x"] == [1, 2]


def test_static_live_plot_updates_one_display(static_renderer, mlp, digits, monkeypatch):
    import IPython.display

    (x, y), _ = digits
    updates = []

    class Handle:
        def update(self, bundle, raw=False):
            assert raw
            updates.append(bundle["application/vnd.plotly.v1+json"]["data"][0]["x"])

    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, raw=False, display_id=False: Handle() if display_id else None)
    xb.fit(mlp(), (x, y), epochs=3, batch_size=64, verbose=False,
           callbacks=[xb.widgets.live_plot()])
    assert updates[-1] == [1, 2, 3] and len(updates) < 3 * 23 / 4  # throttled; the end drawn


def _assert_every_x_within_the_epochs(fig, epochs):
    for trace in fig.data:
        xs = [x for x in trace.x if x is not None]
        assert xs, f"trace {trace.name!r} has no points"
        assert all(0 <= x <= epochs for x in xs), \
            f"trace {trace.name!r} runs from {min(xs)} to {max(xs)}, not within [0, {epochs}]"


def test_runs_trained_before_the_dashboard_plot_where_they_belong(mlp, digits):
    """Batch points sit at epoch - 1 + batch / batches-per-epoch for every run in the
    history, whoever trained it: here runs of 23 (64 a batch, ragged), 3 (500, ragged) and
    15 batches (100, ragged) an epoch, two made before the dashboard existed."""
    (x, y), (tx, ty) = digits
    model = mlp()
    xb.fit(model, (x, y), epochs=2, batch_size=64, accuracy=True, validation_data=(tx, ty),
           verbose=False)
    model.set_learning_rate(1e-2)  # an lr change: a mark on the curve
    xb.fit(model, (x, y), epochs=2, batch_size=500, accuracy=True, validation_data=(tx, ty),
           verbose=False)
    dash = xb.widgets.TrainingDashboard(model, (x, y), validation_data=(tx, ty), epochs=1,
                                        batch_size=100, accuracy=True)
    _assert_every_x_within_the_epochs(dash.plot.figure, 4)
    batch_x = list(dash.plot.figure.data[2].x)
    assert batch_x == sorted(batch_x) and batch_x[-1] == pytest.approx(4)
    assert dash.start()
    assert dash.wait(60)
    _assert_every_x_within_the_epochs(dash.plot.figure, 5)
    assert max(dash.plot.figure.data[2].x) == pytest.approx(5)


def test_batches_per_epoch_is_each_runs_highest_batch_number():
    assert plot.batches_per_epoch([1, 1, 1, 1, 1, 2, 2], [1, 2, 3, 1, 2, 1, 1]) == {1: 3, 2: 1}
    assert plot.batches_per_epoch([], []) == {}


def test_live_plot_as_a_with_block_draws_every_fit_inside(mlp, digits):
    """``with xb.widgets.live_plot():`` (a newcomer's TypeError) plots each fit in the block
    into one figure, and none after it."""
    (x, y), _ = digits
    model, run = mlp(), xb.Trainer.run
    with xb.widgets.live_plot(controls=False) as cb:
        xb.fit(model, (x, y), epochs=1, batch_size=128, verbose=False)
        xb.fit(model, (x, y), epochs=1, batch_size=256, verbose=False)
    assert list(cb.figure.data[0].x) == [1, 2]
    xb.fit(model, (x, y), epochs=1, batch_size=256, verbose=False)
    assert list(cb.figure.data[0].x) == [1, 2]  # the block is closed: not drawn
    assert xb.Trainer.run is run  # put back as it was


def test_the_export_only_copy_fetches_nothing_on_a_live_page():
    """Every run's end used to make live front ends request plotly.js from its CDN (a
    ``<script src>`` in the hidden copy): offline classrooms logged errors. The copy's
    script now returns on a Jupyter page before it asks for anything."""
    fig = plot.make_figure(widget=False)
    fig.data[0].x, fig.data[0].y = [1, 2], [0.5, 0.25]
    fig.layout.title = "</script><b>"  # text that would end the script early
    html = plot.export_snapshot(fig)["text/html"]
    assert "src=" not in html.replace("script.src", "")  # no resource in the markup itself
    assert html.count("</script>") == 1
    guard = html.index('if (document.getElementById("jupyter-config-data")) return;')
    assert guard < html.index("cdn.plot.ly") and guard < html.index("Plotly.newPlot")
    assert html.startswith(f'<div class="{plot.EXPORT_ONLY}">')


def test_log_scale_ticks_at_one_two_five():
    """plotly's own log ticks crowded the top of a decade (2.5, 2, 1.5)."""
    cb = plot.LivePlot(display=False)
    cb.set_log_scale(True)
    axis = cb.figure.layout.yaxis
    assert axis.type == "log" and {0.2, 0.5, 1.0, 2.0} <= set(axis.tickvals)
    assert all(f"{v:.0e}"[0] in "125" for v in axis.tickvals)
    cb.set_log_scale(False)
    assert axis.type == "linear" and axis.tickvals is None and axis.tickmode == "auto"
def test_live_plot_slider_holds_a_rate_outside_its_range(mlp, digits):
    (x, y), _ = digits
    cb = xb.widgets.live_plot()
    model = xb.fit(mlp(learning_rate=1e-6), (x[:64], y[:64]), epochs=2, verbose=False,
                   callbacks=[cb])
    assert model.history["lr"].tolist() == [1e-6, 1e-6]  # not clamped to the slider's 1e-5
    assert cb.controls.learning_rate.value == 1e-6
