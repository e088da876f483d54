"""The live training figure: a plotly ``FigureWidget`` fed by a callback.

One persistent figure, updated in place inside ``batch_update()``, at most
:data:`MAX_UPDATES_PER_S` times a second; points arriving in between are coalesced.
Every curve is decimated to at most :data:`POINT_BUDGET` points, so the cost of a draw
stays flat however long the run.

The points also live in the widget's synced state, so a figure shows everything that
exists whenever it is (re)rendered: in Voilà, after a page reload, in a saved notebook.

Example (blocking fit, the figure appears under the cell):
    >>> xb.fit(model, (x, y), callbacks=[xb.widgets.live_plot()])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
import uuid

import ipywidgets as W
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs_version

from ..base.vocabulary import RunState
from ..core.history import SMOOTHING, History, smooth
from ..core.model import Model
from ..train.callbacks import Callback, for_every_run
from ..train.loop import Trainer
from .controls import learning_rate_slider, moved_off, show_rate
from .frontend.borrowed import set_figure_config
from .frontend.comms import serve_on_subshell
from .frontend.figure import FigureWidget
from .frontend.render import STATIC_UPDATES_PER_S, renderer
from .frontend.throttle import Throttle

MAX_UPDATES_PER_S = 5
EXPORT_ONLY = "xb-export-only"  # figure.js hides this class where live figures run
POINT_BUDGET = 400  # points per drawn curve, at most
MAX_BATCH_POINTS = 2 * POINT_BUDGET  # raw batch points kept before halving them
LR_MARK = 5  # trace index of the learning-rate marks
# the log-scale loss axis's ticks: plotly's own crowd near the top (2.5, 2, 1.5 over a decade)
LOG_TICKS = [float(f"{m}e{e}") for e in range(-6, 7) for m in (1, 2, 5)]
COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "lr": "#9467bd"}


def make_figure(height: int = 380, widget: bool | None = None) -> go.FigureWidget | go.Figure:
    """The empty figure: epoch losses, smoothed batch loss, accuracies, lr-change marks.

    It fills the width of its container (``autosize``) and has a fixed height; the legend
    sits above the axes, in a top margin with room for two rows, the accuracy axis runs
    from 0 to 100 %. A live ``FigureWidget``,
    or a plain ``Figure`` where :func:`~exburn_nb.widgets.frontend.render.renderer` says
    ``"static"`` (or ``widget=False``).
    """
    # Built as a plain Figure, then wrapped: a FigureWidget only syncs the traces it was
    # constructed with as widget state (add_scatter on a widget just sends messages).
    fig = go.Figure(layout=dict(
        height=height, autosize=True, margin=dict(l=55, r=55, t=76, b=40),
        template="plotly_white", showlegend=True, uirevision=0,
        xaxis=dict(title="epoch", rangemode="tozero"),
        yaxis=dict(title="loss", rangemode="tozero"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1],
                    tickformat=".0%", dtick=0.2, showgrid=False, zeroline=False),
        legend=dict(orientation="h", x=0, xanchor="left", y=1.12, yanchor="bottom"),
        hovermode="closest"))
    fig.add_scatter(name="train loss", mode="lines+markers", line=dict(color=COLORS["train"]),
                    marker=dict(size=4))
    fig.add_scatter(name="val loss", mode="lines+markers", line=dict(color=COLORS["val"]),
                    marker=dict(size=4))
    fig.add_scatter(name="batch loss (smoothed)", mode="lines", opacity=0.45,
                    line=dict(color=COLORS["train"], width=1))
    fig.add_scatter(name="train accuracy", mode="lines", yaxis="y2",
                    line=dict(color=COLORS["train"], dash="dot"))
    fig.add_scatter(name="val accuracy", mode="lines", yaxis="y2",
                    line=dict(color=COLORS["val"], dash="dot"))
    fig.add_scatter(name="lr change", mode="markers", hoverinfo="text",
                    marker=dict(symbol="triangle-down", size=10, color=COLORS["lr"]))
    for trace in fig.data:
        trace.x, trace.y = [], []
    if not (renderer() == "widget" if widget is None else widget):
        return fig
    widget = FigureWidget(fig)
    set_figure_config(widget, {"responsive": True, "displaylogo": False})
    widget.add_class("xb-figure")
    return widget


def decimate(xs: list, ys: list, budget: int | None = None, *extra: list) -> tuple:
    """At most ``budget`` (default :data:`POINT_BUDGET`) evenly strided points of a curve,
    always keeping the first and last. ``extra`` lists (hover texts) are thinned alongside.

    Example:
        >>> decimate(list(range(10)), list(range(10)), 4)[0]
        [0, 3, 6, 9]
    """
    n, budget = len(xs), budget or POINT_BUDGET
    if n <= budget:
        return (xs, ys, *extra)
    stride = math.ceil((n - 1) / (budget - 1))
    keep = list(range(0, n - 1, stride)) + [n - 1]
    return tuple([seq[i] for i in keep] for seq in (xs, ys, *extra))


def batches_per_epoch(runs: list[int], batches: list[int]) -> dict[int, int]:
    """Each run's batches per epoch, read from its batch rows (``run`` and ``batch``
    columns): the highest batch number recorded in the run, so a ragged last batch counts
    and a run stopped in a later epoch keeps the count of its full ones.

    Example:
        >>> batches_per_epoch([1, 1, 1, 1, 2, 2], [1, 2, 1, 2, 1, 1])
        {1: 2, 2: 1}
    """
    per_run: dict[int, int] = {}
    for run, batch in zip(runs, batches, strict=True):
        per_run[run] = max(per_run.get(run, 1), batch)
    return per_run


class LivePlot(Callback):
    """A callback that draws training into a :func:`make_figure` figure, throttled.

    Args:
        figure: the figure to draw into (a new one by default).
        display: show the figure under the running cell when training begins (for a
            blocking ``fit``); the dashboard passes False and places it itself.
        controls: add Stop, Pause and a learning-rate slider above the figure, which act
            at the next batch even while the ``fit`` cell blocks (see
            :mod:`exburn_nb.widgets.frontend.comms`). Stop ends the run as an interrupt does: the
            model and history keep every completed batch.
    """

    def __init__(self, figure: FigureWidget | go.Figure | None = None, display: bool = True,
                 controls: bool = False):
        self.figure = figure if figure is not None else make_figure()
        self.display = display
        self.static = not isinstance(self.figure, go.FigureWidget)
        # what a layout shows: the live figure, or an Output holding the static one
        self.view = W.Output(layout=W.Layout(width="100%")) if self.static else self.figure
        if self.static:
            self.view.add_class("xb-figure-static")
        self._handle = None  # a display handle, for a static figure under a blocking fit
        self._snapshots: list = []  # display handles of the export-only copies
        self._lock = threading.Lock()
        self.throttle = Throttle(STATIC_UPDATES_PER_S if self.static else MAX_UPDATES_PER_S)
        self.model: Model | None = None
        self._source: History | None = None  # a history drawn instead of the model's
        self._reset_batches()
        self.controls = _Controls() if controls else None

    def _reset_batches(self) -> None:
        self._bx: list[float] = []
        self._by: list[float] = []
        self._stride, self._seen, self._ema = 1, 0, None
        self._marks: tuple[list, list, list] = ([], [], [])
        self._last_lr: float | None = None
        self.throttle.restart()
        # the model's history is the one source of batch points: rows before _read are drawn
        self._read = self.recorder.batch_count if self.recorder is not None else 0
        # run -> batches per epoch: the running one's from its trainer, others' from the history
        self._per_epoch: dict[int, int] = {}

    @property
    def recorder(self) -> History | None:
        """The history drawn: the one :meth:`follow` gave, else the model's."""
        if self._source is not None:
            return self._source
        return self.model.recorder if self.model is not None else None

    def follow(self, history: History, batches_per_epoch: dict[int, int] | None = None
               ) -> None:
        """Draw ``history`` from its first row on instead of a model's: a run trained
        elsewhere (``xb.widgets.watch``). ``batches_per_epoch`` (run -> batches) places
        the batch points of an epoch still in progress.

        Example:
            >>> plot = LivePlot(make_figure(widget=False), display=False)
            >>> plot.follow(History(), {1: 10}); plot.recorder.batch_count
            0
        """
        with self._lock:
            self._source = history
            self._reset_batches()
            self._read = 0
            self._per_epoch.update(batches_per_epoch or {})

    def reset(self) -> None:
        """Forget the drawn batch points and marks (after a weight reset), rescale the axes
        to the data again, and redraw."""
        with self._lock:
            self._reset_batches()
        self.figure.layout.uirevision = (self.figure.layout.uirevision or 0) + 1  # drop zoom
        self.draw(force=True)

    def __enter__(self) -> LivePlot:
        """``with xb.widgets.live_plot(): ...``: every ``xb.fit`` in the block (in this
        thread) draws into this figure, as if it were passed in ``callbacks``."""
        self._block = for_every_run(self)
        self._block.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._block.__exit__(*exc_info)

    # ---------------------------------------------------------------- hooks
    def on_train_begin(self, logs: dict) -> None:
        if logs["model"] is not self.model:
            self.model = logs["model"]
            self._read = self.model.recorder.batch_count  # draw this plot's runs only
        self._per_epoch[self.trainer.run_id if self.trainer else 0] = logs["batches"] or 1
        if self.controls is not None:
            self.controls.begin(self.model)
        if self.display:
            from IPython.display import display

            if self.static:  # the cell's own output: kept in exports, shown everywhere
                if self.controls is not None:
                    display(self.controls.row)
                # a raw bundle: Figure's own _ipython_display_ would drop the display id
                self._handle = display(_static_bundle(self.figure, final=False), raw=True,
                                       display_id=True)
            else:
                display(self.figure if self.controls is None else
                        W.VBox([self.controls.row, self.figure], layout=W.Layout(width="100%")))
                self.display_snapshot()
            self.display = False  # once: later runs keep drawing into the same figure

    def on_batch_end(self, batch: int, logs: dict) -> None:
        if self.controls is not None:
            self.controls.at_batch_end(self.trainer)
        self.draw()

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        # Throttled too: with short epochs, forced draws here flooded the browser (about
        # 10 full-figure updates/s) until it lagged seconds behind and Stop answered late.
        # The next batch's draw or on_train_end's forced one shows this epoch.
        self.draw()

    def on_train_end(self, logs: dict) -> None:
        self.finish()
        if self.controls is not None:
            self.controls.end(logs["model"])

    def finish(self) -> None:
        """A run ended: draw its final state, into the export-only copies too."""
        self.draw(force=True)
        for handle in self._snapshots:
            handle.update(export_snapshot(self.figure), raw=True)

    def _read_batches(self) -> None:
        """Take the batch rows recorded since the last draw from the model's history:
        smoothed loss points (decimated to a fixed budget) and learning-rate marks."""
        if self.recorder is None:
            return
        rows = self.recorder.batch_rows_since(self._read)
        self._read += len(rows["loss"])
        if not self._per_epoch.keys() >= set(rows["run"]):  # runs this plot did not see begin
            every = self.recorder.batch_rows_since(0)
            self._per_epoch = {**batches_per_epoch(every["run"], every["batch"]),
                               **self._per_epoch}
        xs = [e - 1 + b / self._per_epoch[r]
              for e, b, r in zip(rows["epoch"], rows["batch"], rows["run"], strict=True)]
        smoothed = smooth(rows["loss"], SMOOTHING, self._ema)
        for x, y, lr in zip(xs, smoothed, rows["lr"], strict=True):
            if self._last_lr is not None and lr != self._last_lr:
                self._marks[0].append(x)
                self._marks[1].append(y)
                self._marks[2].append(f"lr {self._last_lr:.2g} → {lr:.2g} at epoch {x:.2f}")
            self._last_lr = lr
            self._seen += 1
            if self._seen % self._stride == 0:
                self._bx.append(x)
                self._by.append(y)
                if len(self._bx) > MAX_BATCH_POINTS:  # keep every other point
                    self._bx, self._by, self._stride = self._bx[::2], self._by[::2], self._stride * 2
        if smoothed:
            self._ema = smoothed[-1]

    # ---------------------------------------------------------------- drawing
    def curves(self) -> list[tuple[list, list]]:
        """The (x, y) of every trace, decimated, as :meth:`draw` sends them."""
        rows = self.recorder.epoch_rows if self.recorder is not None else []
        with self._lock:
            self._read_batches()
            batch = (list(self._bx), list(self._by))
            marks = tuple(list(m) for m in self._marks)

        def column(key: str) -> tuple[list, list]:
            pairs = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            return decimate([p[0] for p in pairs], [p[1] for p in pairs])

        return [column("loss"), column("val_loss"), decimate(*batch), column("accuracy"),
                column("val_accuracy"), decimate(marks[0], marks[1], POINT_BUDGET, marks[2])]

    def draw(self, force: bool = False) -> None:
        """Push the model's history and the batch points into the figure (one message).

        Throttled unless ``force``. The data also goes into the widget's synced state:
        silently on throttled draws (a re-render asks the kernel for it), sent on forced
        ones (a run's end, a reset) so a saved notebook holds the final curves.
        """
        live = isinstance(self.figure, FigureWidget)
        if not force and live and not self.figure.frame_drawn:
            return  # the page has not drawn the last frame yet: it would queue up
        if not self.throttle.ready(force=force):
            return
        curves = self.curves()
        empty = not any(c[0] for c in curves)
        if empty:
            # plotly leaves traces without points out of the legend: with nothing drawn yet
            # (a new figure, a weight reset) one null point each keeps the legend whole
            curves = [([None], [None]) for _ in curves]
        fig = self.figure
        with fig.batch_update():
            # empty: fixed small ranges (autorange would keep the last run's); else autorange
            fig.layout.xaxis.range = fig.layout.yaxis.range = [0, 1] if empty else None
            fig.layout.xaxis.autorange = fig.layout.yaxis.autorange = not empty
            for trace, (xs, ys, *text) in zip(fig.data, curves, strict=True):
                trace.x, trace.y = xs, ys
                if text:
                    trace.hovertext = text[0]
        if live:
            fig.mark_frame()
        self._publish(send=force)

    def _publish(self, send: bool) -> None:
        """Make the drawn state what a (re-)render shows."""
        fig = self.figure
        if self.static:
            bundle = _static_bundle(fig, final=send)
            if self._handle is not None:
                self._handle.update(bundle, raw=True)
            else:  # from any thread: a trait change, never a print or display
                self.view.outputs = ({"output_type": "display_data", "metadata": {},
                                      "data": bundle},)
            return
        fig.save_state(send)

    def display_snapshot(self) -> None:
        """Show an export-only copy of the live figure here, brought up to date at the end of
        every run: exports (nbconvert, nbviewer) cannot draw the live figure and show this
        copy instead; live front ends hide it (see :func:`export_snapshot`)."""
        if self.static:
            return  # the static figure is itself in the cell's output
        from IPython.display import display

        handle = display(export_snapshot(self.figure), raw=True, display_id=True)
        if handle is not None:  # None outside IPython, where it was printed
            self._snapshots.append(handle)

    def set_log_scale(self, on: bool) -> None:
        """Loss axis on a log scale (True, ticks at 1, 2 and 5 times powers of ten) or
        linear (False)."""
        self.figure.layout.yaxis.update(type="log" if on else "linear",
                                        tickmode="array" if on else "auto",
                                        tickvals=LOG_TICKS if on else None)
        self._publish(send=self.static)


def export_snapshot(fig: go.Figure) -> dict:
    """The figure as static HTML in a ``div.xb-export-only``: what an export of the notebook
    shows in place of the live figure. The live figure's loader hides every such div (and
    its output row) on pages where it runs.

    Its script loads plotly.js from its CDN only where no Jupyter front end runs (an
    nbconvert export, nbviewer): JupyterLab, Notebook and Voilà pages, which draw the live
    figure, fetch nothing, so they work offline.
    """
    div = f"xb-export-{uuid.uuid4().hex}"
    figure = fig.to_json().replace("</", "<\\/")  # no "</script>" inside the script
    cdn = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    html = (f'<div class="{EXPORT_ONLY}"><div id="{div}" style="width:100%; '
            f'height:{fig.layout.height or 380}px"></div><script>(() => {{\n'
            f'  if (document.getElementById("jupyter-config-data")) return;  // a live page\n'
            f'  const fig = {figure};\n'
            f'  const draw = () => window.Plotly && Plotly.newPlot("{div}", fig.data, fig.layout,'
            f' {{displaylogo: false, responsive: true}});\n'
            f'  if (window.Plotly) return draw();\n'
            f'  const script = document.head.appendChild(document.createElement("script"));\n'
            f'  script.onload = draw;\n'
            f'  script.src = "{cdn}";\n'
            f'}})();</script></div>')
    return {"text/html": html,
            "text/plain": "training curves (an export-only copy of the live figure)"}


def _static_bundle(fig: go.Figure, final: bool) -> dict:
    """What a front end shows for a static figure: plotly's renderers for this front end
    (VS Code, Colab, Jupyter), plotly's own mime type and a plain-text line; a run's
    ``final`` state also as HTML (plotly.js from its CDN), which nbconvert, nbviewer
    and other exports show."""
    bundle = dict(fig._repr_mimebundle_() or {})
    bundle.setdefault("application/vnd.plotly.v1+json", fig.to_plotly_json())
    bundle.setdefault("text/plain", "training curves (a plotly figure)")
    if final:
        bundle.setdefault("text/html", fig.to_html(full_html=False, include_plotlyjs="cdn"))
    return bundle


class _Controls:
    """Stop, Pause/Resume and a learning-rate slider for a blocking ``fit``.

    Clicks arrive on a kernel subshell thread while the fit runs in the main thread; they
    only set flags, which the training thread reads at the next batch end.
    """

    def __init__(self) -> None:
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    layout=W.Layout(width="auto"))
        self.pause_button = W.Button(description="Pause", icon="pause",
                                     button_style="warning", layout=W.Layout(width="auto"))
        self.learning_rate = learning_rate_slider(1e-3, style={"description_width": "initial"})
        self.status = W.HTML("")
        for w, css in [(self.stop_button, "xb-stop"), (self.pause_button, "xb-pause"),
                       (self.learning_rate, "xb-lr"), (self.status, "xb-status")]:
            w.add_class(css)
        self.row = W.HBox([self.stop_button, self.pause_button, self.learning_rate,
                           self.status], layout=W.Layout(flex_flow="row wrap"))
        self.stop_button.on_click(lambda _: self._stop.set())
        self.pause_button.on_click(lambda _: self._toggle_pause())
        self.learning_rate.observe(self._on_lr, names="value")
        self._stop, self._running = threading.Event(), threading.Event()
        self._new_lr: float | None = None
        self._model_lr = 1e-3
        serve_on_subshell(self.stop_button, self.pause_button, self.learning_rate)

    def begin(self, model: Model) -> None:
        self._stop.clear()
        self._running.set()
        self._new_lr, self._model_lr = None, model.learning_rate
        show_rate(self.learning_rate, model.learning_rate)  # never clamped to the slider
        self.stop_button.disabled = self.pause_button.disabled = False
        self._show_pause(False)
        self.status.value = "training…"

    def _toggle_pause(self) -> None:
        if self._running.is_set():
            self._running.clear()
            self.status.value = "paused"
        else:
            self._running.set()
            self.status.value = "training…"
        self._show_pause(not self._running.is_set())

    def _show_pause(self, paused: bool) -> None:
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play" if paused else "pause"

    def _on_lr(self, change: dict) -> None:
        if moved_off(self.learning_rate, self._model_lr):  # not just the browser's rounding
            self._new_lr = change["new"]

    def at_batch_end(self, trainer: Trainer) -> None:
        """In the training thread: ask for a new rate (from the next batch, recorded),
        hold while paused, stop when asked (after this batch, as the dashboard does)."""
        lr, self._new_lr = self._new_lr, None
        if lr is not None and trainer.set_learning_rate(lr):
            self._model_lr = lr
        while not self._running.wait(0.1) and not self._stop.is_set():
            pass
        if self._stop.is_set():
            self.status.value = "stopping…"
            trainer.stop()

    def end(self, model: Model) -> None:
        self.stop_button.disabled = self.pause_button.disabled = True
        self._show_pause(False)
        epochs = model.epochs_trained
        state = RunState.STOPPED if self._stop.is_set() else RunState.FINISHED
        self.status.value = (f"{state} · "
                             f"{epochs} epoch{'s' if epochs != 1 else ''} trained")


def live_plot(height: int = 380, controls: bool = True) -> LivePlot:
    """A callback that draws the live figure under the cell of a blocking ``xb.fit``, with
    Stop, Pause and a learning-rate slider above it (``controls=False`` for the figure
    alone).

    Pass it as a callback, or open a ``with`` block: every ``xb.fit`` inside it draws into
    the same figure (shown under the cell once, when the first run begins).

    Example:
        >>> xb.fit(model, (x, y), epochs=20, callbacks=[xb.widgets.live_plot()])  # doctest: +SKIP
        >>> with xb.widgets.live_plot():  # doctest: +SKIP
        ...     xb.fit(model, (x, y), epochs=20)
    """
    return LivePlot(make_figure(height), display=True, controls=controls)

