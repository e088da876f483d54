"""Jupyter front ends: the only part of exburn_nb that imports ipywidgets, plotly or IPython.

- :class:`TrainingDashboard`: start/stop/pause/step, live curves, hyperparameter
  controls, freeze toggles, device switch, history table, save and CSV export.
- :class:`RunComparison`: an experiment's runs side by side (curves, table, parallel
  coordinates, Optuna importances), Start/Stop and Train best.
- :func:`live_plot`: the same live figure for a blocking ``xb.fit`` call.
"""

from .compare import RunComparison
from .dashboard import TrainingDashboard
from .plot import LivePlot, live_plot, make_figure

__all__ = ["LivePlot", "RunComparison", "TrainingDashboard", "live_plot", "make_figure"]
