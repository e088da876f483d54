"""``NetworkPanels``: inside the network while it trains — per-layer weight and gradient
norms over time, the share of dead ReLUs, and activation histograms.

The panels are a view of a :class:`~exburn_nb.train.inspection.NetworkInspector`, the
callback that samples those numbers (pass ``panels.inspector`` to
``xb.fit(callbacks=[...])`` or a dashboard's runner). They are off by default and then cost
one attribute check per batch: the inspector's hooks are attached only while the panels
are shown (the toggle, or ``panels.enabled = True``). The training dashboard embeds them
as its last section (``dash.panels``).

Example:
    >>> panels = xb.widgets.NetworkPanels(model, enabled=True)  # doctest: +SKIP
    >>> xb.fit(model, (x, y), callbacks=[panels.inspector]); panels  # doctest: +SKIP
"""

from __future__ import annotations

import functools

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from ..core.model import Model
from ..train.inspection import ActivationProbe, NetworkInspector
from .frontend.figure import FigureWidget
from .frontend.throttle import Throttle

MAX_UPDATES_PER_S = 5
BINS = 30
# Side by side when they fit, one under the other when not; each fills the width it gets.
PANELS_STYLE = ("<style>.xb-network-panels {max-width: 100%; min-width: 0}"
                ".xb-network-panels .xb-panels-row {flex-wrap: wrap; max-width: 100%}"
                ".xb-network-panels .xb-panels-row > * {flex: 1 1 380px; min-width: 0}"
                ".xb-network-panels .js-plotly-plot {width: 100%; min-width: 0}</style>")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")


class NetworkPanels(W.VBox):
    """Weight/gradient norms per layer over training steps (log scale), dead-ReLU shares
    over steps, and the last sampled batch's activation histograms, one trace per layer.

    Its :attr:`inspector` samples (norms, shares, histograms of the latest batch) at most
    ``max_updates_per_s`` times a second while training and at its end; each sample is
    drawn.

    Args:
        model: the model whose layers are watched.
        enabled: show the panels and attach the hooks now.
        bins: histogram bins.
        max_updates_per_s: sampling and drawing rate limit.

    Attributes:
        inspector: the :class:`~exburn_nb.train.inspection.NetworkInspector` (a training
            callback) behind the panels.

    Example:
        >>> panels = NetworkPanels(model, enabled=True)  # doctest: +SKIP
        >>> dash.runner.add_callback(panels.inspector)  # doctest: +SKIP
    """

    def __init__(self, model: Model, enabled: bool = False, bins: int = BINS,
                 max_updates_per_s: float = MAX_UPDATES_PER_S):
        self.model = model
        self.throttle = Throttle(max_updates_per_s, argname="max_updates_per_s")
        self.inspector = NetworkInspector(model, bins=bins, sample_when=self.throttle.ready)
        self.inspector.add_listener(lambda _step: self.draw())
        self.toggle = W.ToggleButton(value=False, description="Inside the network",
                                     icon="microscope", tooltip="attach hooks and show the panels",
                                     layout=W.Layout(width="auto"))
        self.toggle.add_class("xb-panels-toggle")
        # built when first shown: every FigureWidget carries ~5 MB of plotly's front-end
        # code into the page and the saved notebook, so closed panels cost nothing there
        self.box = W.VBox([], layout=W.Layout(display="none"))
        super().__init__([self.toggle, self.box])
        self.add_class("xb-network-panels")
        self.toggle.observe(lambda change: self._set_enabled(change["new"]), names="value")
        self.enabled = enabled

    @property
    def probe(self) -> ActivationProbe:
        """The inspector's :class:`~exburn_nb.train.inspection.ActivationProbe`."""
        return self.inspector.probe

    @property
    def bins(self) -> int:
        """Histogram bins."""
        return self.inspector.bins

    @property
    def norms(self) -> pd.DataFrame:
        """The inspector's samples: step, layer, weight_norm, grad_norm."""
        return self.inspector.norms

    @property
    def dead(self) -> pd.DataFrame:
        """The inspector's samples: step, layer, dead_share."""
        return self.inspector.dead

    @functools.cached_property
    def norm_figure(self) -> go.FigureWidget:
        """Weight and gradient norms per layer over steps (built on first use)."""
        return FigureWidget(self._figure(
            "weight (solid) and gradient (dotted) norms", "norm", "log",
            [dict(name=f"{n} weights", line=dict(color=COLORS[i % 10]))
             for i, n in enumerate(self.inspector.param_layers)] +
            [dict(name=f"{n} grads", line=dict(color=COLORS[i % 10], dash="dot"))
             for i, n in enumerate(self.inspector.param_layers)]))

    @functools.cached_property
    def dead_figure(self) -> go.FigureWidget:
        """The share of dead ReLUs per layer over steps (built on first use)."""
        fig = FigureWidget(self._figure(
            "dead ReLUs (share of units 0 for the whole batch)", "share", "linear",
            [dict(name=n, line=dict(color=COLORS[i % 10]))
             for i, n in enumerate(self.inspector.relu_layers)]))
        fig.layout.yaxis.range = [0, 1.02]
        return fig

    @functools.cached_property
    def hist_figure(self) -> go.FigureWidget:
        """Activation histograms of the last sample, per layer (built on first use)."""
        hist = go.Figure(layout=dict(height=280, margin=dict(l=50, r=10, t=30, b=40),
                                     template="plotly_white", title="activations (last sample)",
                                     barmode="overlay", xaxis=dict(title="value"),
                                     yaxis=dict(title="count")))
        for i, n in enumerate(self.inspector.layers):
            hist.add_bar(name=n, opacity=0.5, marker=dict(color=COLORS[i % 10]))
        return FigureWidget(hist)

    @staticmethod
    def _figure(title: str, ytitle: str, ytype: str, traces: list[dict]) -> go.Figure:
        fig = go.Figure(layout=dict(height=280, margin=dict(l=50, r=10, t=30, b=40),
                                    template="plotly_white", title=title, uirevision="keep",
                                    xaxis=dict(title="step"), yaxis=dict(title=ytitle, type=ytype)))
        for trace in traces:
            fig.add_scatter(mode="lines+markers", x=[], y=[], **trace)
        return fig

    # ---------------------------------------------------------------- on/off
    @property
    def enabled(self) -> bool:
        """Whether the panels are shown and their hooks attached."""
        return self.inspector.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.toggle.value = bool(value)  # the observer attaches or detaches
        self._set_enabled(bool(value))

    def _set_enabled(self, on: bool) -> None:
        self.inspector.enabled = on
        if on and not self.box.children:
            row = W.HBox([self.norm_figure, self.dead_figure])
            row.add_class("xb-panels-row")
            self.box.children = [W.HTML(PANELS_STYLE), row, self.hist_figure]
        self.box.layout.display = None if on else "none"

    # ---------------------------------------------------------------- drawing
    def draw(self) -> None:
        """Push the inspector's samples and latest histograms into the figures."""
        inspector = self.inspector
        norms, dead, hists = inspector.norms, inspector.dead, inspector.histograms
        k = len(inspector.param_layers)
        with self.norm_figure.batch_update():
            for i, layer in enumerate(inspector.param_layers):
                rows = norms[norms["layer"] == layer]
                self.norm_figure.data[i].x = rows["step"].to_numpy()
                self.norm_figure.data[i].y = rows["weight_norm"].to_numpy()
                self.norm_figure.data[k + i].x = rows["step"].to_numpy()
                self.norm_figure.data[k + i].y = rows["grad_norm"].to_numpy()
        with self.dead_figure.batch_update():
            for trace, layer in zip(self.dead_figure.data, inspector.relu_layers, strict=True):
                rows = dead[dead["layer"] == layer]
                trace.x, trace.y = rows["step"].to_numpy(), rows["dead_share"].to_numpy()
        with self.hist_figure.batch_update():
            for trace, layer in zip(self.hist_figure.data, inspector.layers, strict=True):
                if layer in hists:
                    counts, edges = hists[layer]
                    trace.x, trace.y = (edges[:-1] + edges[1:]) / 2, counts
                    trace.width = float(edges[1] - edges[0])
