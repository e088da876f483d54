"""``RunComparison``: the runs of an :class:`~exburn_nb.experiment.Experiment` side by side.

Curves of every run overlaid (loss, and the metric or accuracy), coloured by a chosen
hyperparameter, pruned and failed runs drawn distinctly; a sortable runs table; a
parallel-coordinates plot of the params against the metric; Optuna's parameter
importances; Start / Stop; and **Train best**, which opens a
:class:`~exburn_nb.widgets.TrainingDashboard` on the best configuration.

Each figure is built with every trace it will ever hold (a fixed pool: one trace per
colour group, series and panel, runs separated by gaps), so Voilà and a reloaded page show
the same thing. Updates come from the experiment's events and, for a study in shared
storage, from polling; a :class:`~exburn_nb.widgets.frontend.throttle.DrawingThread` does
the work (the training thread only asks), at most :data:`MAX_UPDATES_PER_S` times a second
for the curves and once
every :data:`FULL_REFRESH_S` for the table and the other figures while a run trains; curves
are decimated to :data:`MAX_POINTS_PER_RUN` points each.

Example:
    >>> exp = xb.Experiment(spec, (x, y), validation_data=(vx, vy),
    ...                     params={"learning_rate": [1e-3, 1e-2]}, epochs=5)  # doctest: +SKIP
    >>> view = xb.widgets.RunComparison(exp); view  # doctest: +SKIP
    >>> view.start()  # or click Start  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import html
import math
import threading
from dataclasses import fields
from typing import Any

import anywidget
import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from traitlets import Int, List, Unicode

from ..base.vocabulary import Event, RunState
from ..core.config import FitConfig
from ..experiment import Experiment, ExperimentResults
from ..experiment.space import Range
from .controls import show_rate
from .frontend.figure import FigureWidget
from .frontend.throttle import DrawingThread, Throttle

MAX_UPDATES_PER_S = 2  # curves while a run trains (each redraw costs the run ~5-10 ms)
MAX_POINTS_PER_RUN = 200
FULL_REFRESH_S = 1.0  # while training, the table and parallel coordinates redraw this often
GROUPS = 10  # colour groups (categorical values, or bins of a numeric param)
SPECIAL = (RunState.PRUNED, RunState.FAILED)  # drawn in their own style, whatever their colour
SERIES = ("train", "val")
PANELS = 2  # loss, metric
SPECIAL_STYLE = {RunState.PRUNED: dict(color="#9e9e9e", dash="dot"),
                 RunState.FAILED: dict(color="#d62728", dash="dashdot")}
TABLE_STYLE = ("<style>.xb-runs-table th, .xb-runs-table td "
               "{padding: 1px 10px; text-align: right}"
               ".xb-runs-table tbody tr {cursor: pointer}"
               ".xb-runs-table tbody tr:hover {background: #eef4fb}"
               ".xb-runs-table tbody tr.xb-highlighted {background: #ffe9a8}</style>")
EMPTY_CELL = "–"  # a value a run does not have (yet)
# Nothing sticks out of the output area: the table scrolls sideways when it alone is wider
# than the cell; the highlight list wraps below it when both do not fit side by side; the
# figures fill the width they get (plotly's autosize).
COMPARISON_STYLE = ("<style>.xb-run-comparison {max-width: 100%; min-width: 0}"
                    ".xb-run-comparison .js-plotly-plot {width: 100%; min-width: 0}"
                    ".xb-run-comparison .xb-compare-row {flex-wrap: wrap; gap: 2px 12px;"
                    " max-width: 100%}"
                    ".xb-run-comparison .xb-compare-table {flex: 1 1 auto; min-width: 0;"
                    " max-width: 100%; overflow-x: auto}</style>")
# The runs table's front end: the HTML, and a click on a row sends that row's run.
ROWS_JS = """
function render({ model, el }) {
  const draw = () => {
    el.innerHTML = model.get("value");
    const marked = new Set(model.get("highlighted"));
    for (const row of el.querySelectorAll("tbody tr")) {
      const run = Number(row.cells[0]?.textContent);
      row.classList.toggle("xb-highlighted", marked.has(run));
      row.title = "click: highlight this run's curves";
      row.addEventListener("click", () => model.send({ type: "row", run }));
    }
  };
  draw();
  model.on("change:value", draw);
  model.on("change:highlighted", draw);
  return () => {
    model.off("change:value", draw);
    model.off("change:highlighted", draw);
  };
}
export default { render };
"""


def _slot(group: int, panel: int, series: int) -> int:
    """Index of a trace in the curves figure: groups, then the special states, then the
    highlight; 4 traces each (panel x series)."""
    return group * PANELS * len(SERIES) + panel * len(SERIES) + series


HIGHLIGHT = GROUPS + len(SPECIAL)
N_TRACES = (HIGHLIGHT + 1) * PANELS * len(SERIES)


def _decimate(values: list, limit: int = MAX_POINTS_PER_RUN) -> list:
    """Every k-th value (and the last) so at most about ``limit`` remain."""
    if len(values) <= limit:
        return values
    step = math.ceil(len(values) / limit)
    kept = values[::step]
    return kept if kept[-1] is values[-1] else [*kept, values[-1]]


def _cell(value: Any) -> Any:
    """A table cell as shown: numbers to 4 significant digits, a dash where there is none."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return EMPTY_CELL
    return f"{value:.4g}" if isinstance(value, float) else value


class RunsTable(anywidget.AnyWidget):
    """An HTML table (its first column: the run) whose rows can be clicked: a click calls
    every ``on_row`` callback with that row's run. Rows of the runs in ``highlighted`` are
    marked.

    Example:
        >>> table = RunsTable(value="<table><tbody><tr><td>3</td></tr></tbody></table>")
        >>> table.on_row(print); table.click(3)
        3
    """

    _esm = ROWS_JS
    value = Unicode("").tag(sync=True)
    highlighted = List(Int()).tag(sync=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._row_callbacks: list = []
        self.on_msg(self._on_message)

    def on_row(self, callback) -> None:
        """Call ``callback(run)`` when a row is clicked."""
        self._row_callbacks.append(callback)

    def click(self, run: int) -> None:
        """What a click on the row of ``run`` does."""
        for callback in self._row_callbacks:
            callback(run)

    def _on_message(self, _widget: Any, content: dict, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "row" \
                and isinstance(content.get("run"), int):
            self.click(content["run"])


class RunComparison(W.VBox):
    """Compare an experiment's runs: curves, table, parallel coordinates, importances.

    Args:
        experiment: a live :class:`Experiment` (Start/Stop train it) or the
            :class:`ExperimentResults` that :meth:`Experiment.load` reads (viewing only).
        colour_by: the param that colours the curves (the first param by default).
        poll_s: with shared Optuna storage, read the study this often (other processes'
            trials appear); None never polls.
    """

    def __init__(self, experiment: Experiment | ExperimentResults, colour_by: str | None = None,
                 poll_s: float | None = 2.0):
        self._drawer: DrawingThread | None = None  # close() may run before it exists
        if not isinstance(experiment, (Experiment, ExperimentResults)):
            raise ValueError(f"experiment must be an xb.Experiment or its results; got "
                             f"{type(experiment).__name__}")
        self.experiment = exp = experiment
        names = list(exp.params)
        if colour_by is not None and colour_by not in names:
            raise ValueError(f"colour_by must be one of {names}; got {colour_by!r}")
        self.right_columns = self._right_columns()
        self._draw_lock = threading.RLock()  # the drawing thread and the notebook's redraws
        self._full = Throttle(1 / FULL_REFRESH_S)  # the table and the other figures
        self._importance_for = -1  # finished runs when the importances were last computed
        self._sent: dict[int, tuple] = {}  # per curve trace: what it shows now
        self.dashboard = None
        self.runs_frame = pd.DataFrame()
        self.summary_frame = pd.DataFrame()
        self._build(names, colour_by or names[0])
        table_row = W.HBox([self.table, self.highlight])
        table_row.add_class("xb-compare-row")
        super().__init__([W.HTML(COMPARISON_STYLE), self.buttons_row, self.curves, table_row,
                          self.parallel, self.importance_box, self.dashboard_box],
                         layout=W.Layout(width="100%"))
        self.add_class("xb-run-comparison")
        self.refresh()
        self._drawer = DrawingThread(
            self._draw_asked, MAX_UPDATES_PER_S, name="exburn-compare-draw",
            merge=lambda pending, new: pending or new,  # a full redraw asked stays asked
            idle_s=poll_s if self._live and exp.storage is not None else None,
            on_idle=self._poll)
        if self._live:
            exp.add_listener(self._on_event)

    # ---------------------------------------------------------------- layout
    def _right_columns(self) -> tuple[str, str]:
        metric = self.experiment.metric
        if metric in ("loss", "val_loss"):
            return "accuracy", "val_accuracy"
        base = metric[4:] if metric.startswith("val_") else metric
        return base, f"val_{base}"

    def _build(self, names: list[str], colour_by: str) -> None:
        exp = self.experiment
        trainable = self._live

        def button(label: str, style: str, icon: str) -> W.Button:
            return W.Button(description=label, button_style=style, icon=icon,
                            layout=W.Layout(width="auto"))

        self.start_button = button("Start", "success", "play")
        self.stop_button = button("Stop", "danger", "stop")
        self.best_button = button("Train best", "info", "trophy")
        for widget, css in ((self.start_button, "xb-compare-start"),
                            (self.stop_button, "xb-compare-stop"),
                            (self.best_button, "xb-compare-best")):
            widget.add_class(css)
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.best_button.on_click(lambda _: self.train_best())
        self.colour_by = W.Dropdown(options=names, value=colour_by, description="colour by",
                                    layout=W.Layout(width="240px"))
        self.colour_by.observe(lambda _: self.refresh(full=False), "value")
        self.status = W.HTML()
        self.status.add_class("xb-compare-status")
        self.notice = W.HTML()  # what a click could not do, and why
        self.notice.add_class("xb-compare-notice")
        self.buttons_row = W.HBox([self.start_button, self.stop_button, self.best_button,
                                   self.colour_by, self.status, self.notice])
        self.buttons_row.add_class("xb-compare-row")
        self.start_button.disabled = self.stop_button.disabled = not trainable
        self.best_button.disabled = True
        self.curves = FigureWidget(self._curves_figure())
        self.curves.add_class("xb-compare-curves")
        for trace in self.curves.data:
            trace.on_click(self._on_click)
        columns = ["run", *names, f"best_{exp.metric}", "best_epoch", "seconds", "state"]
        self.sort_by = W.Dropdown(options=columns, value="run", description="sort by",
                                  layout=W.Layout(width="240px"))
        self.descending = W.ToggleButton(value=False, description="descending",
                                         layout=W.Layout(width="auto"))
        for control in (self.sort_by, self.descending):
            control.observe(lambda _: self._draw_table(), "value")
        self.table_html = RunsTable()
        self.table_html.on_row(self.highlight_runs)
        self.table = W.VBox([W.HBox([self.sort_by, self.descending]), self.table_html])
        self.table.add_class("xb-compare-table")
        self.highlight = W.SelectMultiple(options=[], description="highlight", rows=8,
                                          layout=W.Layout(width="200px", flex="0 0 auto"))
        self.highlight.observe(self._on_highlight, "value")
        self.parallel = FigureWidget(go.Figure(
            go.Parcoords(dimensions=[], line=dict(color=[], colorscale="Viridis",
                                                  showscale=True)),
            # the title at the top, clear of the axes' labels and top values under it
            layout=dict(height=360, margin=dict(l=60, r=60, t=100, b=30),
                        title=dict(text=f"params against {exp.metric}", yref="container",
                                   y=1, yanchor="top", pad=dict(t=10)))))
        self.importance = FigureWidget(go.Figure(
            go.Bar(x=[], y=[], orientation="h", marker_color="#1f77b4"),
            layout=dict(height=220, margin=dict(l=120, r=20, t=40, b=30),
                        title="parameter importance (Optuna)",
                        xaxis=dict(title="importance"))))
        self.importance_box = W.Box([self.importance], layout=W.Layout(
            display=None if exp.search == "optuna" else "none"))
        self.dashboard_box = W.VBox()

    def _curves_figure(self) -> go.Figure:
        left, right = "loss", self.right_columns[1]
        fig = go.Figure(layout=dict(
            height=380, margin=dict(l=50, r=20, t=40, b=40), template="plotly_white",
            xaxis=dict(title="epoch", domain=[0, 0.47]), yaxis=dict(title=left),
            xaxis2=dict(title="epoch", domain=[0.53, 1]),
            yaxis2=dict(title=right.removeprefix("val_"), anchor="x2"),
            legend=dict(orientation="h", y=1.15), uirevision="keep"))
        for slot in range(N_TRACES):
            group, rest = divmod(slot, PANELS * len(SERIES))
            panel, series = divmod(rest, len(SERIES))
            if group == HIGHLIGHT:
                line, name = dict(color="black", width=3), "highlighted"
            elif group >= GROUPS:
                state = SPECIAL[group - GROUPS]
                line, name = dict(width=1.5, **SPECIAL_STYLE[state]), str(state)
            else:
                line, name = dict(width=1.5), f"group {group}"
            if SERIES[series] == "train" and group < GROUPS:
                line = {**line, "dash": "dot"}
            fig.add_scatter(x=[], y=[], mode="lines", name=name, line=line, customdata=[],
                            opacity=0.85, legendgroup=name, xaxis=f"x{panel + 1}",
                            yaxis=f"y{panel + 1}", hovertemplate="run %{customdata}<br>"
                            "epoch %{x}<br>%{y:.4g}<extra></extra>",
                            showlegend=panel == 0 and SERIES[series] == "val")
        return fig

    # ---------------------------------------------------------------- controls
    @property
    def _live(self) -> bool:
        """Whether the view can train (an :class:`Experiment`, not loaded results)."""
        return isinstance(self.experiment, Experiment)

    def start(self) -> bool:
        """Start the experiment in the background; False, saying why under the buttons,
        when it runs already or every run it adds is finished."""
        exp = self.experiment
        if not self._live:
            return False
        if not exp.running and exp.total is not None and exp.added >= exp.total:
            self.notice.value = html.escape(
                f"every run is finished ({exp.added} of {exp.total}): nothing to start. "
                "To train more, make a new Experiment (or one with more n_trials).")
            return False
        self.notice.value = ""
        started = exp.start()
        self._sync_buttons()
        return started

    def stop(self) -> None:
        """Stop the experiment after the batch in progress."""
        self.experiment.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the experiment; True when nothing trains afterwards."""
        return self.experiment.wait(timeout)

    def train_best(self) -> Any:
        """Open a :class:`TrainingDashboard` on the best run's params and seed (fresh
        weights) below the comparison, and return it."""
        from .dashboard import TrainingDashboard

        exp = self.experiment
        model, config = exp.prepare_run()
        options = {f.name: getattr(config, f.name) for f in fields(FitConfig)}
        self.dashboard = TrainingDashboard(model, exp.data, validation_data=exp.validation_data,
                                           **options)
        show_rate(self.dashboard.learning_rate, model.learning_rate)  # exactly the rate used
        self.dashboard_box.children = [W.HTML(f"<b>Best run {exp.best_run}</b>: "
                                              f"{html.escape(str(exp.best))}"), self.dashboard]
        return self.dashboard

    def close(self) -> None:
        """Stop drawing, polling and listening, then close the widgets."""
        if self._drawer is not None:
            self._drawer.close()
        with contextlib.suppress(ValueError, AttributeError):  # closed twice, or half-built
            if self._live:
                self.experiment.remove_listener(self._on_event)
        super().close()

    def _on_event(self, event: str, exp: Experiment) -> None:
        # In the training thread: only ask for a redraw, which the drawing thread does
        # (the table and the rest too, unless only an epoch ended).
        if event in (Event.START, Event.END):
            self._sync_buttons()
        self._drawer.request(event != Event.EPOCH)

    def _poll(self) -> bool | None:
        """Nothing asked for a while: read a shared study, unless this process trains."""
        return None if self._live and self.experiment.running else True

    def _draw_asked(self, full: bool) -> None:
        """In the drawing thread: the curves, and the rest at most once every
        :data:`FULL_REFRESH_S` while a run trains (asked again for a later turn)."""
        if full and self._live and self.experiment.running and not self._full.ready():
            self._drawer.request(True)
            full = False
        self.refresh(full=full)

    def wait_drawn(self, timeout: float = 30.0) -> bool:
        """Wait until the redraws asked for so far are on screen; True if they are."""
        return self._drawer.wait_drawn(timeout)

    def _sync_buttons(self) -> None:
        running = self._live and self.experiment.running
        trainable = self._live
        self.start_button.disabled = running or not trainable
        self.stop_button.disabled = not running
        self.best_button.disabled = not trainable or self.experiment.best_run is None

    def _on_click(self, trace: Any, points: Any, state: Any) -> None:
        self.highlight_runs(*(trace.customdata[i] for i in points.point_inds
                              if trace.customdata[i] is not None))

    def highlight_runs(self, *runs: int) -> None:
        """Highlight the curves (and table rows) of ``runs``, as a click on a curve or a
        row of the table does.

        Example:
            >>> view.highlight_runs(2)  # doctest: +SKIP
        """
        runs = tuple(sorted({int(r) for r in runs if int(r) in self.highlight.options}))
        if runs:
            self.highlight.value = runs

    def _on_highlight(self, _change: Any = None) -> None:
        self.table_html.highlighted = list(self.highlight.value)
        self.refresh(full=False)

    # ---------------------------------------------------------------- drawing
    def refresh(self, full: bool = True) -> None:
        """Redraw from the experiment now: the curves, and with ``full`` the table, the
        parallel coordinates, the importances and the status too."""
        with self._draw_lock:
            exp = self.experiment
            self.runs_frame = exp.runs
            if full:
                self.summary_frame = exp.summary
                run_ids = tuple(int(r) for r in self.summary_frame.get("run", []))
                if tuple(self.highlight.options) != run_ids:
                    kept = tuple(r for r in self.highlight.value if r in run_ids)
                    self.highlight.options = run_ids
                    self.highlight.value = kept
            self._draw_curves()
            if full:
                self._draw_table()
                self._draw_parallel()
                if exp.search == "optuna" and self._live:  # importances need the study
                    self._draw_importance()
                self._status()
        if full:
            self._sync_buttons()

    def groups(self) -> dict[int, int]:
        """Run -> colour group under the current ``colour_by`` (group 0 for a run without
        a value yet: another machine's trial that has not drawn its params)."""
        name = self.colour_by.value
        if self.runs_frame.empty:
            return {}
        summary = self.runs_frame.drop_duplicates("run")
        values = summary[name].tolist()
        candidates = self.experiment.params[name]
        if isinstance(candidates, Range):
            numbers = pd.to_numeric(summary[name], errors="coerce").to_numpy(dtype=float)
            if candidates.log:
                numbers = np.log(numbers)
            known = numbers[np.isfinite(numbers)]
            low, high = (float(known.min()), float(known.max())) if known.size else (0.0, 0.0)
            index = (np.zeros(len(numbers), dtype=int) if high == low else
                     np.minimum(np.nan_to_num((numbers - low) / (high - low) * GROUPS)
                                .astype(int), GROUPS - 1))
        else:
            labels = [repr(c) for c in candidates]
            index = [labels.index(repr(v)) % GROUPS if repr(v) in labels else 0 for v in values]
        return dict(zip(summary.run.astype(int), (int(i) for i in index), strict=True))

    def _group_names(self) -> list[str]:
        name, candidates = self.colour_by.value, self.experiment.params[self.colour_by.value]
        if isinstance(candidates, Range):
            low, high = candidates.low, candidates.high
            if candidates.log:
                edges = np.exp(np.linspace(math.log(low), math.log(high), GROUPS + 1))
            else:
                edges = np.linspace(low, high, GROUPS + 1)
            return [f"{name} {edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(GROUPS)]
        labels = [f"{name}={c!r}" for c in candidates[:GROUPS]]
        return labels + [f"{name} (more)"] * (GROUPS - len(labels))

    def _colours(self) -> list[str]:
        if isinstance(self.experiment.params[self.colour_by.value], Range):
            return sample_colorscale("Viridis", [i / (GROUPS - 1) for i in range(GROUPS)])
        return list(qualitative.D3[:GROUPS])

    def _draw_curves(self) -> None:
        frame, groups = self.runs_frame, self.groups()
        points: dict[int, tuple[list, list, list]] = {i: ([], [], []) for i in range(N_TRACES)}
        highlighted = set(self.highlight.value)
        columns = ("loss", "val_loss"), self.right_columns
        if not frame.empty:
            frame = frame[frame.epoch.notna()]
            for run, rows in frame.groupby("run", sort=True):
                state = rows.state.iat[0]
                group = GROUPS + SPECIAL.index(state) if state in SPECIAL else groups.get(run, 0)
                targets = [group] + ([HIGHLIGHT] if run in highlighted else [])
                epochs = rows.epoch.astype(float).tolist()
                for panel, pair in enumerate(columns):
                    for series, column in enumerate(pair):
                        if column not in rows:
                            continue
                        keep = [(e, v) for e, v in zip(epochs, rows[column].tolist(),
                                                       strict=True) if pd.notna(v)]
                        keep = _decimate(keep)
                        if not keep:
                            continue
                        for target in targets:
                            xs, ys, ids = points[_slot(target, panel, series)]
                            xs.extend([e for e, _ in keep] + [None])
                            ys.extend([v for _, v in keep] + [None])
                            ids.extend([int(run)] * len(keep) + [None])
        names, colours = self._group_names(), self._colours()
        fig = self.curves
        with fig.batch_update():
            for slot, (xs, ys, ids) in points.items():
                group = slot // (PANELS * len(SERIES))
                style = (names[group], colours[group]) if group < GROUPS else None
                sent = (xs, ys, ids, style)
                if self._sent.get(slot) == sent:  # only what changed goes to the browser
                    continue
                self._sent[slot] = sent
                trace = fig.data[slot]
                trace.x, trace.y, trace.customdata = xs, ys, ids
                if style is not None:
                    trace.name, trace.line.color = style
                    trace.visible = True if xs else "legendonly"

    def table_rows(self) -> pd.DataFrame:
        """The runs table as shown: summary columns, sorted by the chosen column."""
        summary = self.summary_frame
        if summary.empty:
            return summary
        columns = [c for c in self.sort_by.options if c in summary]
        return summary[columns].sort_values(self.sort_by.value,
                                            ascending=not self.descending.value,
                                            kind="stable", na_position="last")

    def _draw_table(self) -> None:
        rows = self.table_rows()
        if rows.empty:
            self.table_html.value = "<i>no runs yet</i>"
            return
        shown = rows.astype(object).map(_cell)
        if "state" in shown and "epochs" in self.summary_frame:
            epochs = self.summary_frame.loc[rows.index, "epochs"]
            running = rows.state == RunState.RUNNING
            shown.loc[running, "state"] = [f"running · {n} epoch{'s' if n != 1 else ''}"
                                           for n in epochs[running]]
        self.table_html.value = TABLE_STYLE + shown.to_html(
            index=False, classes="xb-runs-table", border=0)

    def _draw_parallel(self) -> None:
        exp, summary = self.experiment, self.summary_frame
        metric = f"best_{exp.metric}"
        done = summary[summary.state.isin([RunState.FINISHED, RunState.PRUNED])] \
            if not summary.empty \
            else summary
        dimensions = []
        if not done.empty:
            for name, candidates in exp.params.items():
                values = done[name].tolist()
                if isinstance(candidates, Range):
                    numbers = np.array([float(v) for v in values])
                    if candidates.log:  # parcoords has no log axis: log10 values, real ticks
                        ticks = np.arange(math.floor(math.log10(candidates.low)),
                                          math.ceil(math.log10(candidates.high)) + 1)
                        dimensions.append(dict(label=f"{name} (log)", values=np.log10(numbers),
                                               tickvals=ticks.tolist(),
                                               ticktext=[f"{10.0 ** t:g}" for t in ticks]))
                    else:
                        dimensions.append(dict(label=name, values=numbers))
                else:
                    labels = [repr(c) for c in candidates]
                    dimensions.append(dict(
                        label=name, values=[labels.index(repr(v)) if repr(v) in labels else 0
                                            for v in values],
                        tickvals=list(range(len(labels))),
                        ticktext=[str(c) for c in candidates]))
            dimensions.append(dict(label=metric, values=done[metric].astype(float)))
        trace = self.parallel.data[0]
        with self.parallel.batch_update():
            trace.dimensions = dimensions
            trace.line.color = done[metric].astype(float).tolist() if not done.empty else []

    def _draw_importance(self) -> None:
        finished = int((self.summary_frame.get("state") == RunState.FINISHED).sum()) \
            if not self.summary_frame.empty else 0
        if finished == self._importance_for:  # Optuna's estimate is slow: once per new trial
            return
        self._importance_for = finished
        scores = self.experiment.importances()
        names = sorted(scores, key=scores.get)
        with self.importance.batch_update():
            self.importance.data[0].x = [scores[n] for n in names]
            self.importance.data[0].y = names

    def _status(self) -> None:
        summary = self.summary_frame
        counts = summary.state.value_counts().to_dict() if not summary.empty else {}
        parts = [f"{n} {s}" for s, n in counts.items()]
        best = self.experiment.best_run
        text = f"{len(summary)} run{'s' if len(summary) != 1 else ''}" + (
            f" ({', '.join(parts)})" if parts else "")
        if best is not None:
            text += f" · best: run {best}"
        self.status.value = html.escape(text)
        # which runs trained stacked together (parallel="vmap"), on hover
        self.status.tooltip = "\n\n".join(self.experiment.parallel_report) or None
