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
    cb = xb.widgets.live_plot()
    xb.fit(mlp(), (x, y), epochs=2, batch_size=4, verbose=False, callbacks=[cb])
    assert 25 <= len(cb.figure.data[2].x) <= 51
    xs = list(cb.figure.data[2].x)
    assert xs == sorted(xs) and xs[-1] > 1.5  # spans the whole run


def _counting_batch_update(fig, pushed):
    original = fig.batch_update

    def batch_update():
        pushed.append(1)
        return original()

    return batch_update
