"""The live training figure: a plotly ``FigureWidget`` fed by a callback.

One persistent figure, updated in place inside ``batch_update()``, at most
:data:`MAX_UPDATES_PER_S` times a second; points arriving in between are coalesced.
Per-batch points are decimated so long runs stay light in the browser.

Example (blocking fit, the figure appears under the cell):
    >>> xb.fit(model, (x, y), callbacks=[xb.widgets.live_plot()])  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time

import plotly.graph_objects as go

from ..callbacks import Callback
from ..model import Model

MAX_UPDATES_PER_S = 5
MAX_BATCH_POINTS = 1500
SMOOTHING = 0.9


def make_figure(height: int = 360) -> go.FigureWidget:
    """The empty figure: epoch losses, smoothed batch loss, accuracies, lr-change marks."""
    # Built as a plain Figure, then wrapped: a FigureWidget only syncs the traces it was
    # constructed with as widget state (add_scatter on a widget just sends messages), and
    # front ends that load the state later (Voila, a reloaded page) would show no traces.
    fig = go.Figure(layout=dict(
        height=height, margin=dict(l=50, r=50, t=30, b=40), template="plotly_white",
        xaxis=dict(title="epoch"), yaxis=dict(title="loss"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1.02],
                    showgrid=False),
        legend=dict(orientation="h", y=1.12), uirevision="keep"))
    fig.add_scatter(name="train loss", mode="lines+markers", line=dict(color="#1f77b4"))
    fig.add_scatter(name="val loss", mode="lines+markers", line=dict(color="#ff7f0e"))
    fig.add_scatter(name="batch loss (smoothed)", mode="lines", opacity=0.45,
                    line=dict(color="#1f77b4", width=1))
    fig.add_scatter(name="train accuracy", mode="lines+markers", yaxis="y2",
                    line=dict(color="#2ca02c", dash="dot"))
    fig.add_scatter(name="val accuracy", mode="lines+markers", yaxis="y2",
                    line=dict(color="#d62728", dash="dot"))
    fig.add_scatter(name="lr change", mode="markers+text", textposition="top center",
                    marker=dict(symbol="triangle-down", size=11, color="#9467bd"))
    for trace in fig.data:
        trace.x, trace.y = [], []
    return go.FigureWidget(fig)


class LivePlot(Callback):
    """A callback that draws training into a :func:`make_figure` figure, throttled.

    Args:
        figure: the figure to draw into (a new one by default).
        display: show the figure under the running cell when training begins (for a
            blocking ``fit``); the dashboard passes False and places it itself.
    """

    def __init__(self, figure: go.FigureWidget | None = None, display: bool = True):
        self.figure = figure if figure is not None else make_figure()
        self.display = display
        self._lock = threading.Lock()
        self.model: Model | None = None
        self._reset_batches()

    def _reset_batches(self) -> None:
        self._bx: list[float] = []
        self._by: list[float] = []
        self._stride, self._seen, self._ema = 1, 0, None
        self._marks_x: list[float] = []
        self._marks_y: list[float] = []
        self._marks_text: list[str] = []
        self._last_lr: float | None = None
        self._last_draw = 0.0

    def reset(self) -> None:
        """Forget the drawn batch points and marks (after a weight reset) and redraw."""
        with self._lock:
            self._reset_batches()
        self.draw()

    # ---------------------------------------------------------------- hooks
    def on_train_begin(self, logs: dict) -> None:
        self.model = logs["model"]
        if self.display:
            from IPython.display import display

            display(self.figure)
            self.display = False  # once: later runs keep drawing into the same figure

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self._lr_seen(logs["lr"], epoch - 1)

    def on_batch_end(self, batch: int, logs: dict) -> None:
        x = logs["epoch"] - 1 + batch / logs["batches"]
        loss = logs["loss"]
        with self._lock:
            self._lr_seen(logs["lr"], x)
            if loss is not None:
                self._ema = loss if self._ema is None else SMOOTHING * self._ema + (1 - SMOOTHING) * loss
                self._seen += 1
                if self._seen % self._stride == 0:
                    self._bx.append(x)
                    self._by.append(self._ema)
                    if len(self._bx) > MAX_BATCH_POINTS:  # decimate: keep every other point
                        self._bx, self._by, self._stride = self._bx[::2], self._by[::2], self._stride * 2
        if time.monotonic() - self._last_draw >= 1 / MAX_UPDATES_PER_S:
            self.draw()

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        # Throttled too: with short epochs, forced draws here flooded the browser (about
        # 10 full-figure updates/s) until it lagged seconds behind and Stop answered late.
        # The next batch's draw or on_train_end's forced one shows this epoch.
        self.draw()

    def on_train_end(self, logs: dict) -> None:
        self.draw(force=True)

    def _lr_seen(self, lr: float, x: float) -> None:
        if self._last_lr is not None and lr != self._last_lr:
            self._marks_x.append(x)
            self._marks_y.append(self._ema if self._ema is not None else 0.0)
            self._marks_text.append(f"lr {lr:.2g}")
        self._last_lr = lr

    # ---------------------------------------------------------------- drawing
    def draw(self, force: bool = False) -> None:
        """Push the model's history and the batch points into the figure (one message)."""
        now = time.monotonic()
        if not force and now - self._last_draw < 1 / MAX_UPDATES_PER_S:
            return
        self._last_draw = now
        rows = self.model._history.epoch_rows if self.model is not None else []
        with self._lock:
            batch = (list(self._bx), list(self._by))
            marks = (list(self._marks_x), list(self._marks_y), list(self._marks_text))
        epochs = [r["epoch"] for r in rows]

        def column(key: str) -> tuple[list, list]:
            pairs = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            return [p[0] for p in pairs], [p[1] for p in pairs]

        fig = self.figure
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y = epochs, [r["loss"] for r in rows]
            fig.data[1].x, fig.data[1].y = column("val_loss")
            fig.data[2].x, fig.data[2].y = batch
            fig.data[3].x, fig.data[3].y = column("accuracy")
            fig.data[4].x, fig.data[4].y = column("val_accuracy")
            fig.data[5].x, fig.data[5].y, fig.data[5].text = marks

    def set_log_scale(self, on: bool) -> None:
        """Loss axis on a log scale (True) or linear (False)."""
        self.figure.layout.yaxis.type = "log" if on else "linear"


def live_plot(height: int = 360) -> LivePlot:
    """A callback that draws the live figure under the cell of a blocking ``xb.fit``.

    Example:
        >>> xb.fit(model, (x, y), epochs=20, callbacks=[xb.widgets.live_plot()])  # doctest: +SKIP
    """
    return LivePlot(make_figure(height), display=True)
