"""``NetworkPanels``: inside the network while it trains — per-layer weight and gradient
norms over time, the share of dead ReLUs, and activation histograms.

The panels are a callback (pass them to ``xb.fit(callbacks=[...])`` or a dashboard's
runner: ``dash.runner.add_callback(panels)``) and a widget. They are off by default and
then cost one attribute check per batch: the hooks that feed them
(:class:`~exburn_nb.train.inspection.ActivationProbe`) are attached only while the panels are
shown (the toggle, or ``panels.enabled = True``). The training dashboard embeds them as
its last section (``dash.panels``).

Example:
    >>> panels = xb.widgets.NetworkPanels(model, enabled=True)  # doctest: +SKIP
    >>> dash.runner.add_callback(panels); panels  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import threading
import time

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go
from torch import nn

from ..core.model import Model
from ..train import inspection
from ..train.callbacks import Callback
from .frontend.figure import FigureWidget

MAX_UPDATES_PER_S = 5
BINS = 30
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")


class NetworkPanels(W.VBox, Callback):
    """Weight/gradient norms per layer over training steps (log scale), dead-ReLU shares
    over steps, and the last sampled batch's activation histograms, one trace per layer.

    A sample (norms, shares, histograms of the latest batch) is taken at most
    ``max_updates_per_s`` times a second while training and at its end, then drawn.

    Args:
        model: the model whose layers are watched.
        enabled: show the panels and attach the hooks now.
        bins: histogram bins.
        max_updates_per_s: sampling and drawing rate limit.

    Attributes:
        norms: a DataFrame (step, layer, weight_norm, grad_norm) of the samples so far.
        dead: a DataFrame (step, layer, dead_share).
        probe: the :class:`~exburn_nb.train.inspection.ActivationProbe` behind them.
    """

    def __init__(self, model: Model, enabled: bool = False, bins: int = BINS,
                 max_updates_per_s: float = MAX_UPDATES_PER_S):
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1; got {bins!r}")
        if not isinstance(max_updates_per_s, (int, float)) or max_updates_per_s <= 0:
            raise ValueError(f"max_updates_per_s must be a number > 0; got {max_updates_per_s!r}")
        self.model, self.bins, self._interval = model, bins, 1 / max_updates_per_s
        self.probe = inspection.ActivationProbe(model)
        self.layers = [n for n, _ in model.module.named_children()]
        self.param_layers = list(dict.fromkeys(
            n.rsplit(".", 1)[0] for n, _ in model.module.named_parameters()))
        self.relu_layers = list(dict.fromkeys(
            n.split(".", 1)[0] for n, m in model.module.named_modules()
            if isinstance(m, nn.ReLU) and n))
        self._rows: list[dict] = []
        self._dead_rows: list[dict] = []
        self._lock = threading.Lock()
        self._last, self._step, self._sampled = 0.0, 0, None
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

    @functools.cached_property
    def norm_figure(self) -> go.FigureWidget:
        """Weight and gradient norms per layer over steps (built on first use)."""
        return FigureWidget(self._figure(
            "weight (solid) and gradient (dotted) norms", "norm", "log",
            [dict(name=f"{n} weights", line=dict(color=COLORS[i % 10]))
             for i, n in enumerate(self.param_layers)] +
            [dict(name=f"{n} grads", line=dict(color=COLORS[i % 10], dash="dot"))
             for i, n in enumerate(self.param_layers)]))

    @functools.cached_property
    def dead_figure(self) -> go.FigureWidget:
        """The share of dead ReLUs per layer over steps (built on first use)."""
        fig = FigureWidget(self._figure(
            "dead ReLUs (share of units 0 for the whole batch)", "share", "linear",
            [dict(name=n, line=dict(color=COLORS[i % 10])) for i, n in enumerate(self.relu_layers)]))
        fig.layout.yaxis.range = [0, 1.02]
        return fig

    @functools.cached_property
    def hist_figure(self) -> go.FigureWidget:
        """Activation histograms of the last sample, per layer (built on first use)."""
        hist = go.Figure(layout=dict(height=280, margin=dict(l=50, r=10, t=30, b=40),
                                     template="plotly_white", title="activations (last sample)",
                                     barmode="overlay", xaxis=dict(title="value"),
                                     yaxis=dict(title="count")))
        for i, n in enumerate(self.layers):
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
        return self.probe.attached

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.toggle.value = bool(value)  # the observer attaches or detaches
        self._set_enabled(bool(value))

    def _set_enabled(self, on: bool) -> None:
        if on and not self.probe.attached:
            self.probe.attach()
        elif not on and self.probe.attached:
            self.probe.detach()
        if on and not self.box.children:
            self.box.children = [W.HBox([self.norm_figure, self.dead_figure]), self.hist_figure]
        self.box.layout.display = None if on else "none"

    # ---------------------------------------------------------------- callback
    def on_batch_end(self, batch: int, logs: dict) -> None:
        self._step = logs["step"]
        if not self.probe.attached:
            return
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self.sample(logs["step"])
            self.draw()

    def on_train_end(self, logs: dict) -> None:
        if self.probe.attached and self.probe.outputs and self._sampled != self._step:
            self.sample(self._step)
            self.draw()

    # ---------------------------------------------------------------- numbers
    def sample(self, step: int) -> None:
        """Record the norms and dead-ReLU shares of the latest batch seen by the probe."""
        norms = inspection.layer_norms(self.model, self.probe.gradients)
        dead = self.probe.dead_relu_share()
        self._sampled = step
        with self._lock:
            self._rows += [{"step": step, **row} for row in norms.to_dict("records")]
            self._dead_rows += [{"step": step, "layer": k, "dead_share": v} for k, v in dead.items()]

    @property
    def norms(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self._rows, columns=["step", "layer", "weight_norm", "grad_norm"])

    @property
    def dead(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self._dead_rows, columns=["step", "layer", "dead_share"])

    def draw(self) -> None:
        """Push the samples and the latest histograms into the figures."""
        norms, dead = self.norms, self.dead
        hists = self.probe.histograms(self.bins)
        k = len(self.param_layers)
        with self.norm_figure.batch_update():
            for i, layer in enumerate(self.param_layers):
                rows = norms[norms["layer"] == layer]
                self.norm_figure.data[i].x = rows["step"].to_numpy()
                self.norm_figure.data[i].y = rows["weight_norm"].to_numpy()
                self.norm_figure.data[k + i].x = rows["step"].to_numpy()
                self.norm_figure.data[k + i].y = rows["grad_norm"].to_numpy()
        with self.dead_figure.batch_update():
            for trace, layer in zip(self.dead_figure.data, self.relu_layers, strict=True):
                rows = dead[dead["layer"] == layer]
                trace.x, trace.y = rows["step"].to_numpy(), rows["dead_share"].to_numpy()
        with self.hist_figure.batch_update():
            for trace, layer in zip(self.hist_figure.data, self.layers, strict=True):
                if layer in hists:
                    counts, edges = hists[layer]
                    trace.x, trace.y = (edges[:-1] + edges[1:]) / 2, counts
                    trace.width = float(edges[1] - edges[0])
