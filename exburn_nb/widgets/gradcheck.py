"""``GradCheck``: autograd against numerical gradients, layer by layer, made visible.

The numbers are :func:`exburn_nb.train.inspection.gradient_check`'s (the guide's
``compute_gradients(..., grad_method="numerical")``, central differences in float64):
a table and a bar per layer of the relative error on a log scale, with the usual
thresholds (below 1e-7 excellent in float64; float32 autograd typically gives 1e-6 to
1e-4; above 1e-2 the gradient is wrong).

Example:
    >>> xb.widgets.GradCheck(model, (x[:8], y[:8]))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from ..core.model import Model
from ..train.inspection import gradient_check
from .frontend.figure import FigureWidget

WRONG = 1e-2  # a relative error above this means the layer's gradient is wrong


class GradCheck(W.VBox):
    """A table and bar chart of the per-layer relative errors, and a button to re-run.

    Args:
        model: a small model (the numerical method costs two forward passes per parameter).
        batch: the ``(x, y)`` to differentiate on (a few samples are enough).
        method: ``"numerical"`` or ``"numerical_batch"``.

    Attributes:
        errors: :func:`~exburn_nb.train.inspection.gradient_check`'s frame of the last run.
    """

    def __init__(self, model: Model, batch: Any, method: str = "numerical"):
        self.model, self.batch, self.method = model, batch, method
        self.button = W.Button(description="Check gradients", icon="check")
        self.table = W.HTML()
        fig = go.Figure(layout=dict(height=280, width=460, margin=dict(l=60, r=10, t=30, b=40),
                                    template="plotly_white",
                                    title="relative error |autograd − numerical| per layer",
                                    yaxis=dict(type="log", title="relative error"),
                                    shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=WRONG,
                                                 y1=WRONG, line=dict(dash="dash", color="#c00"))]))
        fig.add_bar(x=[], y=[], name="relative error")
        self.figure = FigureWidget(fig)
        self.button.on_click(lambda _: self.run())
        super().__init__([self.button, W.HBox([self.figure, self.table])])
        self.run()

    def run(self) -> None:
        """Compute the check again (after training steps, say) and redraw."""
        self.errors = gradient_check(self.model, self.batch, self.method)
        e = self.errors
        colors = ["#d62728" if v > WRONG else "#2ca02c" for v in e["relative_error"]]
        with self.figure.batch_update():
            bar = self.figure.data[0]
            bar.x, bar.y = e["layer"].tolist(), e["relative_error"].clip(lower=1e-16).to_numpy()
            bar.marker.color = colors
        self.table.value = e.to_html(index=False, float_format="{:.3g}".format)
