"""``NetworkPicture``: the network drawn as TensorFlow Playground draws it, for any dense
exburn_nb model.

One column per layer: the input features first (x, y, x², ... over the plane), then each
hidden layer, the output last. Each neuron is a small heatmap of its own output over the
plane (:data:`TILE` x :data:`TILE` points, all from ONE batched forward pass that keeps
every layer's output; each on its own scale, orange negative, blue positive); the links between neurons are coloured by the sign of their
weight (orange negative, blue positive, as TensorFlow Playground) and as thick as its
size. A layer with more than ``max_shown`` neurons shows its first ``max_shown`` and
"+N more". Click a neuron to see its heatmap large in the side panel.

It is one plotly figure (:class:`~exburn_nb.widgets.frontend.figure.FigureWidget`): one
heatmap per column (tiles stacked, integer values, gaps as nulls), the links as a few
line traces (one per sign and width step, NaN-separated, sent as binary arrays) and the
large view. :meth:`update` recomputes from the current weights; a training loop computes
with :meth:`compute` (at a batch boundary) and draws with :meth:`show` (in a drawing
thread), as the :class:`~exburn_nb.widgets.Playground` does.

Example:
    >>> spec = xb.input("input", shape=(None, 2)).dense(6, activation="tanh").dense(2)  # doctest: +SKIP
    >>> pic = xb.widgets.NetworkPicture(xb.compile(spec), x_range=(-1, 1), y_range=(-1, 1))  # doctest: +SKIP
    >>> pic  # the cell's last expression shows it  # doctest: +SKIP
    >>> xb.fit(model, (x, y), epochs=5); pic.update()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from ..base.checks import check_int
from ..core.model import Model
from .frontend.figure import FigureWidget

TILE = 24  # each neuron's heatmap: TILE x TILE points of the plane
MAX_TILE = 64
MAX_SHOWN = 8  # neurons drawn per layer; the rest are counted ("+N more")
LEVELS = 50  # tile values are sent as integers in [-LEVELS, LEVELS] (about 3 bytes each)
GAP = 0.25  # space between two tiles of a column, in tiles
COLUMN_GAP = 1.1  # space between two columns (where the links run), in tiles
WIDTH_STEPS = 5  # link widths are drawn in this many steps ...
MAX_WIDTH = 4.0  # ... up to this many pixels (the largest weight of its layer)
NEGATIVE, POSITIVE = "#f59322", "#0877bd"  # TensorFlow Playground's orange and blue
COLORSCALE = [[0.0, NEGATIVE], [0.5, "#e8eaeb"], [1.0, POSITIVE]]
PANEL = (0.64, 1.0)  # the large view's share of the figure's width


@dataclass(frozen=True)
class Link:
    """One drawn link: from ``source`` (a neuron of column ``layer``) to ``target`` (a neuron
    of column ``layer + 1``), its weight, colour and width in pixels."""

    layer: int
    source: int
    target: int
    weight: float
    color: str
    width: float


def link_style(weight: float, scale: float) -> tuple[str, float]:
    """The colour (by sign) and width (by size, in :data:`WIDTH_STEPS` steps up to
    :data:`MAX_WIDTH` px at ``scale``, the largest weight of its layer) of a link.

    Example:
        >>> link_style(-0.5, 1.0), link_style(1.0, 1.0)
        (('#f59322', 2.4), ('#0877bd', 4.0))
    """
    step = min(WIDTH_STEPS, max(1, math.ceil(abs(weight) / scale * WIDTH_STEPS))) if scale else 1
    return (NEGATIVE if weight < 0 else POSITIVE), step * MAX_WIDTH / WIDTH_STEPS


def dense_layers(model: Model) -> list[torch.nn.Module]:
    """The model's layers, checked to be a stack of dense layers (ValueError naming the
    first other layer)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a compiled exburn_nb Model; got {type(model).__name__}")
    if model.spec is None:
        raise ValueError("model must be compiled from a Spec of dense layers (xb.input(...)"
                         ".dense(...)); this one was compiled from a torch module")
    for layer in model.spec.layers:
        if layer.kind != "dense":
            raise ValueError(f"NetworkPicture draws dense networks only: layer {layer.name!r} "
                             f"is {layer.kind!r}")
    if not model.spec.layers:
        raise ValueError("model has no layers to draw")
    return list(model.layers.values())


@dataclass
class Frame:
    """One redraw's values: each column's tiles ``(shown, resolution, resolution)`` as
    integers in [-LEVELS, LEVELS] (each neuron's largest size is LEVELS) and the link
    traces' coordinates (one ``(x, y)`` per sign and width step, NaN between links)."""

    tiles: list[np.ndarray]
    links: list[tuple[np.ndarray, np.ndarray]]


class NetworkPicture(W.VBox):
    """A dense exburn_nb network drawn live: neurons as heatmaps over the plane, links by
    the sign and size of their weights; a click shows a neuron large.

    Args:
        model: a compiled :class:`~exburn_nb.Model` of dense layers (others: ValueError).
        x_range, y_range: the plane, ``(low, high)`` for each axis.
        transform: ``points (N, 2) -> the model's inputs (N, features)`` (default: the
            points themselves, for a model of two inputs).
        features: the input columns' names (default x, y or x1, x2, ...).
        max_shown: neurons drawn per layer; the others are counted ("+N more").
        resolution: each tile's points per side.

    Example:
        >>> pic = NetworkPicture(model, (-2, 2), (-2, 2), max_shown=6)  # doctest: +SKIP
        >>> pic.select(1, 0)  # the first hidden neuron, large  # doctest: +SKIP
    """

    def __init__(self, model: Model, x_range: Sequence[float] = (-1.0, 1.0),
                 y_range: Sequence[float] = (-1.0, 1.0),
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 features: Sequence[str] | None = None, max_shown: int = MAX_SHOWN,
                 resolution: int = TILE):
        self.max_shown = check_int("max_shown", max_shown, 1, 64)
        self.resolution = check_int("resolution", resolution, 2, MAX_TILE)
        self._lock = threading.Lock()  # the drawing thread and the notebook's draws
        self.figure = FigureWidget()
        self.figure.add_class("xb-network")
        super().__init__([self.figure])
        self.add_class("xb-network-picture")
        self.set_network(model, x_range, y_range, transform, features)

    # ---------------------------------------------------------------- set-up
    def set_network(self, model: Model, x_range: Sequence[float], y_range: Sequence[float],
                    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    features: Sequence[str] | None = None) -> None:
        """Draw another network (or plane): the figure is laid out again and drawn."""
        layers = dense_layers(model)
        (x0, x1), (y0, y1) = _axis_range("x_range", x_range), _axis_range("y_range", y_range)
        n = self.resolution
        self.gap = round(GAP * n) / n  # whole rows of nulls between two tiles
        self.grid_x, self.grid_y = torch.linspace(x0, x1, n), torch.linspace(y0, y1, n)
        gy, gx = torch.meshgrid(self.grid_y, self.grid_x, indexing="ij")
        self.points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
        inputs = (transform(self.points) if transform is not None else self.points).float()
        width = model.input_shape[-1] if model.input_shape else None
        if inputs.ndim != 2 or inputs.shape[0] != n * n or inputs.shape[1] != width:
            raise ValueError(f"transform must give the model's inputs, ({n * n}, {width}) for "
                             f"the plane's points; got {tuple(inputs.shape)}")
        names = list(features) if features is not None else (
            ["x", "y"] if width == 2 else [f"x{i + 1}" for i in range(width)])
        if len(names) != width:
            raise ValueError(f"features must name the model's {width} inputs; got {names!r}")
        self.model, self.inputs, self.layers = model, inputs, layers
        self.units = [width] + [layer.out_features for layer in layers]
        self.names = (["input"] + [la.name for la in model.spec.layers[:-1]] + ["output"])
        self.labels = [names] + [[f"{i}" for i in range(u)] for u in self.units[1:]]
        self.shown = [min(u, self.max_shown) for u in self.units]
        self.selected = (len(self.units) - 1, self.shown[-1] - 1)
        self._tiles: list[np.ndarray] = []
        with self._lock, self.figure.batch_update():
            self.figure.data = ()
            self.figure.layout = self._layout(model)
            for c in range(len(self.units)):
                self.figure.add_heatmap(
                    name=self.names[c], x0=self._left(c) + 0.5 / n, dx=1 / n,
                    y0=self._bottom(c) + 0.5 / n, dy=1 / n, zmin=-LEVELS, zmax=LEVELS, colorscale=COLORSCALE,
                    showscale=False, hoverinfo="none")
            for sign in (NEGATIVE, POSITIVE):
                for step in range(1, WIDTH_STEPS + 1):
                    self.figure.add_scatter(mode="lines", hoverinfo="skip", showlegend=False,
                                            line=dict(color=sign, width=step * MAX_WIDTH
                                                      / WIDTH_STEPS), opacity=0.6)
            self.figure.add_heatmap(name="selected", x=self.grid_x.numpy(),
                                    y=self.grid_y.numpy(), xaxis="x2", yaxis="y2",
                                    zmin=-LEVELS, zmax=LEVELS, colorscale=COLORSCALE,
                                    zsmooth="best", showscale=False, hoverinfo="skip")
        for trace in self.figure.data[:len(self.units)]:
            trace.on_click(self._on_click)
        self.update()

    def _left(self, column: int) -> float:
        return column * (1 + COLUMN_GAP)

    def _bottom(self, column: int) -> float:
        """The column's lowest tile's bottom edge: columns are centred on the tallest."""
        return (max(self.shown) - self.shown[column]) * (1 + self.gap) / 2

    def center(self, column: int, unit: int) -> tuple[float, float]:
        """Where neuron ``unit`` of ``column`` is drawn (the first at the top)."""
        return (self._left(column) + 0.5,
                self._bottom(column) + (self.shown[column] - 1 - unit) * (1 + self.gap) + 0.5)

    def _layout(self, model: Model) -> go.Layout:
        columns, rows = len(self.units), max(self.shown)
        width_units, height_units = self._left(columns - 1) + 1, rows * (1 + self.gap) - self.gap
        notes = []
        for c, name in enumerate(self.names):
            act = None if c in (0, columns - 1) else model.spec.layers[c - 1].options["activation"]
            notes.append(dict(x=self._left(c) + 0.5, y=height_units + 0.15, yanchor="bottom",
                              text=f"<b>{name}</b><br>{self.units[c]}" + (f" {act}" if act else ""),
                              showarrow=False, font=dict(size=10)))
            if self.units[c] > self.shown[c]:
                notes.append(dict(x=self._left(c) + 0.5, y=self._bottom(c) - 0.1, yanchor="top",
                                  text=f"+{self.units[c] - self.shown[c]} more", showarrow=False,
                                  font=dict(size=10, color="#555")))
        for u, label in enumerate(self.labels[0][:self.shown[0]]):
            notes.append(dict(x=-0.08, y=self.center(0, u)[1], xanchor="right", text=label,
                              showarrow=False, font=dict(size=11)))
        notes.append(dict(xref="x2 domain", yref="y2 domain", x=0.5, y=1.02, yanchor="bottom",
                          showarrow=False, name="selected", text=""))
        hidden = dict(visible=False, showgrid=False, zeroline=False, fixedrange=True)
        return go.Layout(
            height=480, width=680, margin=dict(l=30, r=10, t=50, b=30),
            template="plotly_white", uirevision="keep", title=dict(
                text="the network (click a neuron)", font=dict(size=13)),
            xaxis=dict(domain=[0, PANEL[0] - 0.04], range=[-0.6, width_units + 0.1], **hidden),
            yaxis=dict(range=[-0.5, height_units + 0.8], scaleanchor="x", **hidden),
            xaxis2=dict(domain=list(PANEL), showticklabels=False, fixedrange=True,
                        showgrid=False, zeroline=False),
            yaxis2=dict(domain=[0.15, 0.85], anchor="x2", scaleanchor="x2",
                        showticklabels=False, fixedrange=True, showgrid=False, zeroline=False),
            annotations=notes, showlegend=False, dragmode=False, hovermode="closest")

    # ---------------------------------------------------------------- computing
    def outputs(self) -> list[torch.Tensor]:
        """Every column's values over the plane, ``(resolution**2, units)`` each: the
        inputs, then each layer's output, from one batched forward pass (rows of the
        plane first: point ``i * resolution + j`` is ``(grid_x[j], grid_y[i])``)."""
        model, x = self.model, self.inputs.to(self.model.torch_device)
        columns = [self.inputs]
        with model.lock, model.eval_mode():
            for layer in self.layers:
                x = layer(x)
                columns.append(x.float().cpu())
        return columns

    def links(self) -> list[Link]:
        """The drawn links (between drawn neurons), styled by :func:`link_style` with each
        layer's largest weight as its scale."""
        out = []
        with self.model.lock:
            weights = [layer.weight.detach().float().cpu() for layer in self.layers]
        for c, w in enumerate(weights):
            shown = w[:self.shown[c + 1], :self.shown[c]]
            scale = float(w.abs().max())
            for target in range(shown.shape[0]):
                for source in range(shown.shape[1]):
                    weight = float(shown[target, source])
                    out.append(Link(c, source, target, weight, *link_style(weight, scale)))
        return out

    def compute(self) -> Frame:
        """One redraw's values from the current weights (the training thread computes it at
        a batch boundary; :meth:`show` draws it)."""
        n, tiles = self.resolution, []
        for c, values in enumerate(self.outputs()):
            shown = values[:, :self.shown[c]]
            scale = shown.abs().amax(dim=0).clamp_min(1e-12)  # each neuron its own
            levels = (shown / scale * LEVELS).round().to(torch.int16).T.reshape(-1, n, n)
            tiles.append(levels.numpy())
        segments: dict[tuple[str, float], list[float]] = {}
        for link in self.links():
            (x0, y0), (x1, y1) = self.center(link.layer, link.source), self.center(
                link.layer + 1, link.target)
            xy = segments.setdefault((link.color, link.width), [])
            xy += [x0 + 0.5, y0, x1 - 0.5, y1, math.nan, math.nan]
        traces = []
        for sign in (NEGATIVE, POSITIVE):
            for step in range(1, WIDTH_STEPS + 1):
                xy = np.asarray(segments.get((sign, step * MAX_WIDTH / WIDTH_STEPS), []),
                                dtype=np.float32).reshape(-1, 2)
                traces.append((xy[:, 0].copy(), xy[:, 1].copy()))
        return Frame(tiles, traces)

    def _column_z(self, tiles: np.ndarray) -> list[list[int | None]]:
        """A column's tiles stacked (the first on top), with null rows between them."""
        n, gap = self.resolution, round(self.gap * self.resolution)
        rows: list[list[int | None]] = []
        for k in range(len(tiles) - 1, -1, -1):
            rows += tiles[k].tolist()
            if k:
                rows += [[None] * n] * gap
        return rows

    # ---------------------------------------------------------------- drawing
    def show(self, frame: Frame) -> None:
        """Draw :meth:`compute`'s values (one message: plotly sends only what changed)."""
        columns = len(self.units)
        with self._lock, self.figure.batch_update():
            self._tiles = frame.tiles
            for trace, tiles in zip(self.figure.data[:columns], frame.tiles, strict=True):
                trace.z = self._column_z(tiles)
            for trace, (x, y) in zip(self.figure.data[columns:-1], frame.links, strict=True):
                trace.x, trace.y = x, y
            self._show_selected()

    def update(self) -> None:
        """Recompute from the model's current weights and draw."""
        self.show(self.compute())

    def select(self, column: int, unit: int) -> None:
        """Show neuron ``unit`` of ``column`` (0: the inputs) large in the side panel."""
        check_int("column", column, 0, len(self.units) - 1)
        check_int("unit", unit, 0, self.shown[column] - 1)
        with self._lock, self.figure.batch_update():
            self.selected = (column, unit)
            self._show_selected()

    def _show_selected(self) -> None:
        c, u = self.selected
        if not self._tiles:
            return
        self.figure.data[-1].z = self._tiles[c][u]
        name = self.labels[c][u] if c == 0 else f"{self.names[c]} #{u}"
        self.figure.layout.annotations[-1].text = f"<b>{name}</b>"

    def _on_click(self, trace: Any, points: Any, _state: Any) -> None:
        if not points.ys:
            return
        column = next(i for i, t in enumerate(self.figure.data) if t is trace)
        place = (float(points.ys[0]) - self._bottom(column)) / (1 + self.gap)
        unit = self.shown[column] - 1 - math.floor(place)
        if 0 <= unit < self.shown[column] and place - math.floor(place) <= 1 / (1 + self.gap):
            self.select(column, unit)


def _axis_range(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be (low, high); got {value!r}")
    low, high = value
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value) \
            or not -math.inf < low < high < math.inf:
        raise ValueError(f"{name} must be (low, high) with low < high; got {value!r}")
    return float(low), float(high)
