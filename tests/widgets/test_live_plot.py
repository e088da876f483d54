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


def test_every_curve_keeps_to_the_point_budget(mlp, digits):
    (x, y), (tx, ty) = digits
    model = xb.fit(mlp(), (x[:64], y[:64]), epochs=1000, batch_size=64, verbose=False,
                   validation_data=(tx[:64], ty[:64]), accuracy=True)
    cb = plot.LivePlot(display=False)
    cb.model = model
    cb.draw(force=True)
    for trace in cb.figure.data[:5:2]:  # train loss, batch loss, train accuracy
        assert len(trace.x) <= plot.POINT_BUDGET
    xs = list(cb.figure.data[0].x)
    assert xs[0] == 1 and xs[-1] == 1000  # first to last epoch
    assert len(cb.figure.data[1].x) <= plot.POINT_BUDGET


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
    assert ["_widget_data", "_widget_layout"] in sent  # the run's end sends it


def test_layout_fills_its_container_and_reads_well():
    fig = plot.make_figure()
    assert fig.layout.autosize and fig.layout.width is None
    assert tuple(fig.layout.yaxis2.range) == (0, 1) and fig.layout.yaxis2.tickformat == ".0%"
    assert fig.layout.legend.y < 0  # under the axes, not over the data
    assert fig.data[plot.LR_MARK].mode == "markers"
    assert fig._config["responsive"]


def _counting_batch_update(fig, pushed):
    original = fig.batch_update

    def batch_update():
        pushed.append(1)
        return original()

    return batch_update
