"""``LRFinderButton``: run :func:`exburn_nb.lr_find` on a dashboard's model and data, show
the curve, and set the dashboard's learning-rate slider to the suggestion.

The training dashboard shows one under its controls (``dash.lr_finder``).

Example:
    >>> dash = xb.widgets.TrainingDashboard(model, (x, y), epochs=5)  # doctest: +SKIP
    >>> dash.lr_finder.run()  # or press its button  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from ..train.lr_finder import lr_find
from .controls import error_html, show_rate
from .frontend.figure import FigureWidget


class LRFinderButton(W.VBox):
    """A "Find learning rate" button for a ``TrainingDashboard`` and the sweep's figure.

    Args:
        dashboard: the dashboard (its ``model``, ``runner.data`` and ``learning_rate``
            slider are used).
        **options: passed to :func:`exburn_nb.lr_find` (num_iter, start_lr, end_lr, ...).

    Attributes:
        frame: the last sweep's frame (lr, loss, smoothed_loss), or None.
        suggestion: the last suggested rate, or None.
    """

    def __init__(self, dashboard: Any, **options: Any):
        self.dashboard, self.options = dashboard, options
        self.frame, self.suggestion = None, None
        self.button = W.Button(description="Find learning rate", icon="search",
                               tooltip="a short lr sweep on a copy of the model; sets the slider",
                               layout=W.Layout(width="auto"))  # the whole label, not "Find le…"
        self.button.add_class("xb-lr-find")
        self.label = W.HTML()
        # the figure is built at the first sweep: a FigureWidget carries ~5 MB of plotly's
        # front-end code into the page and the saved notebook
        self.figure_box = W.Box([], layout=W.Layout(display="none"))
        self.button.on_click(lambda _: self.run())
        super().__init__([W.HBox([self.button, self.label]), self.figure_box])

    @functools.cached_property
    def figure(self) -> go.FigureWidget:
        """The sweep's curve and the suggestion (built on first use)."""
        fig = go.Figure(layout=dict(height=260, width=460, margin=dict(l=50, r=10, t=30, b=40),
                                    template="plotly_white", title="lr finder",
                                    xaxis=dict(title="learning rate", type="log"),
                                    yaxis=dict(title="loss"), showlegend=False))
        fig.add_scatter(name="loss", mode="lines", x=[], y=[], opacity=0.3)
        fig.add_scatter(name="smoothed", mode="lines", x=[], y=[])
        fig.add_scatter(name="suggestion", mode="markers", x=[], y=[],
                        marker=dict(size=11, color="#d62728", symbol="diamond"))
        return FigureWidget(fig)

    def run(self) -> float | None:
        """Sweep, draw, set the dashboard's slider; returns the rate (None while training,
        or before the dashboard's checkpoint is resumed: the sweep needs its weights)."""
        dash = self.dashboard
        if dash.running:
            self.label.value = "stop training first"
            return None
        if dash.resumes_from is not None:
            self.label.value = "Start resumes the checkpoint first: the sweep needs its weights"
            return None
        try:
            self.frame, self.suggestion = lr_find(dash.model, dash.runner.data, **self.options)
        except ValueError as exc:
            self.label.value = error_html(str(exc))
            return None
        show_rate(dash.learning_rate, self.suggestion)  # a rate off the slider's range widens it
        f = self.frame
        near = (f["lr"] - self.suggestion).abs().idxmin()
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = f["lr"].to_numpy(), f["loss"].to_numpy()
            self.figure.data[1].x = f["lr"].to_numpy()
            self.figure.data[1].y = f["smoothed_loss"].to_numpy()
            self.figure.data[2].x = [self.suggestion]
            self.figure.data[2].y = [float(f["smoothed_loss"].iloc[near])]
        self.figure_box.children = [self.figure]
        self.figure_box.layout.display = None
        self.label.value = f"suggested learning rate {self.suggestion:.3g} (slider set)"
        return self.suggestion
