"""``inspect(model, data)``: what a trained model gets right and wrong.

Classifiers: a confusion matrix (rows the true class, as scikit-learn lays it out),
per-class precision and recall, and the most confidently wrong examples (drawn as
images when the input is an image or 64 features, the 8x8 digits). Regression: predicted
against true values, and the residuals. The numbers come from
:mod:`exburn_nb.train.inspection` and are attributes of the view.

Example:
    >>> view = xb.widgets.inspect(model, (test_x, test_y))  # doctest: +SKIP
    >>> view.confusion[3, 5]  # threes taken for fives  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..core.inputs import prepare_pair
from ..core.model import Model
from ..train import inspection
from .frontend.figure import FigureWidget


def _images(x: np.ndarray) -> np.ndarray | None:
    """``(N, H, W)`` images for image-like inputs (``(N, 1|3, H, W)``, ``(N, H, W)`` or 64
    features as 8x8), else None."""
    if x.ndim == 4:
        return x.mean(axis=1)
    if x.ndim == 3:
        return x
    if x.ndim == 2 and x.shape[1] == 64:
        return x.reshape(-1, 8, 8)
    return None


class InspectView(W.VBox):
    """The figures and tables of :func:`inspect`; the numbers are attributes.

    Attributes:
        confusion: ``(classes, classes)`` counts, ``[true, predicted]`` (classifiers).
        scores: per-class precision, recall and support (classifiers).
        wrong: the most confidently wrong samples (classifiers).
        predictions, targets, residuals: flat arrays (regression).
        figures: the plotly figures shown.
    """

    def __init__(self, model: Model, data: Any, k: int = 8):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}")
        x, y = prepare_pair(model, data)
        x, y = x.cpu(), y.cpu()
        self.confusion = self.scores = self.wrong = None
        self.predictions = self.targets = self.residuals = None
        if model.loss.is_classification:
            children = self._classifier(model, x, y, k)
        else:
            children = self._regression(model, x, y)
        super().__init__(children)
        self.add_class("xb-inspect")

    def _classifier(self, model: Model, x: Any, y: Any, k: int) -> list[W.Widget]:
        probs = inspection.class_probabilities(model, x)
        labels = y if y.ndim == 1 else (y.argmax(dim=1) if y.shape[1] > 1 else y[:, 0].long())
        classes = probs.shape[1]
        self.confusion = inspection.confusion_matrix(labels, probs.argmax(dim=1), classes)
        self.scores = inspection.per_class_scores(self.confusion)
        self.wrong = inspection.most_confidently_wrong(probs, labels, k)
        names = [str(c) for c in range(classes)]
        heat = go.Figure(go.Heatmap(z=self.confusion, x=names, y=names, colorscale="Blues",
                                    text=self.confusion, texttemplate="%{text}",
                                    hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"),
                         layout=dict(height=360, width=420, margin=dict(l=60, r=10, t=40, b=50),
                                     title="confusion (rows: true class)",
                                     xaxis=dict(title="predicted", type="category"),
                                     yaxis=dict(title="true", type="category", autorange="reversed")))
        self.figures = [FigureWidget(heat)]
        table = W.HTML(self.scores.to_html(index=False, float_format="{:.3f}".format))
        children: list[W.Widget] = [W.HBox([self.figures[0], table])]
        images = _images(x.numpy())
        if images is not None and len(self.wrong):
            children.append(self._wrong_images(images))
        else:
            children.append(W.HTML("<b>most confidently wrong</b>" + self.wrong.to_html(
                index=False, float_format="{:.3f}".format)))
        return children

    def _wrong_images(self, images: np.ndarray) -> W.Widget:
        rows = list(self.wrong.itertuples(index=False))
        cols = min(len(rows), 8)
        fig = make_subplots(rows=math.ceil(len(rows) / cols), cols=cols, subplot_titles=[
            f"{r.true} → {r.predicted} ({r.confidence:.2f})" for r in rows])
        for i, r in enumerate(rows):
            fig.add_heatmap(z=images[r.index], colorscale="gray_r", showscale=False,
                            row=i // cols + 1, col=i % cols + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False)
        fig.update_xaxes(showticklabels=False)
        fig.update_layout(height=150 * math.ceil(len(rows) / cols) + 40,
                          margin=dict(l=10, r=10, t=50, b=10),
                          title="most confidently wrong (true → predicted, confidence)")
        self.figures.append(FigureWidget(fig))
        return self.figures[-1]

    def _regression(self, model: Model, x: Any, y: Any) -> list[W.Widget]:
        self.predictions = model.predict(x).float().numpy().ravel()
        self.targets = y.float().numpy().ravel()
        self.residuals = self.targets - self.predictions
        lo, hi = float(min(self.targets.min(), self.predictions.min())), float(
            max(self.targets.max(), self.predictions.max()))
        scatter = go.Figure(layout=dict(height=360, width=420, title="predicted vs true",
                                        xaxis=dict(title="true"), yaxis=dict(title="predicted"),
                                        margin=dict(l=60, r=10, t=40, b=50), showlegend=False))
        scatter.add_scatter(x=self.targets, y=self.predictions, mode="markers", opacity=0.6)
        scatter.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dash"))
        resid = go.Figure(layout=dict(height=360, width=420, title="residuals (true − predicted)",
                                      xaxis=dict(title="predicted"), yaxis=dict(title="residual"),
                                      margin=dict(l=60, r=10, t=40, b=50), showlegend=False))
        resid.add_scatter(x=self.predictions, y=self.residuals, mode="markers", opacity=0.6)
        resid.add_scatter(x=[lo, hi], y=[0, 0], mode="lines", line=dict(dash="dash"))
        self.figures = [FigureWidget(scatter), FigureWidget(resid)]
        return [W.HBox(self.figures)]


def inspect(model: Model, data: Any, k: int = 8) -> InspectView:
    """A view of a trained model on ``data``: confusion matrix, per-class scores and the
    ``k`` most confidently wrong examples for classifiers; predicted-vs-true and residuals
    for regression.

    Example:
        >>> view = xb.widgets.inspect(model, (test_x, test_y))  # doctest: +SKIP
        >>> view.scores  # precision and recall per class  # doctest: +SKIP
    """
    return InspectView(model, data, k)
