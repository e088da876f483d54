"""Jupyter front ends: the only part of exburn_nb that imports ipywidgets, plotly or IPython.

- :class:`TrainingDashboard`: start/stop/pause/step, live curves, hyperparameter
  controls, freeze toggles, device switch, history table, save and CSV export.
- :func:`live_plot`: the same live figure for a blocking ``xb.fit`` call.
"""

from .dashboard import TrainingDashboard
from .gradcheck import GradCheck
from .inspect import InspectView, inspect
from .lr_finder import LRFinderButton
from .panels import NetworkPanels
from .playground import Playground
from .plot import LivePlot, live_plot, make_figure

__all__ = ["LivePlot", "TrainingDashboard", "live_plot", "make_figure"]
__all__ += ["GradCheck", "InspectView", "LRFinderButton", "NetworkPanels", "Playground", "inspect"]
