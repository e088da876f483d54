"""Jupyter front ends: the only part of exburn_nb that imports ipywidgets, plotly or IPython.

- :class:`TrainingDashboard`: start/stop/pause/step, live curves, hyperparameter
  controls, freeze toggles, device switch, history table, save and CSV export.
- :class:`RunComparison`: an experiment's runs side by side (curves, table, parallel
  coordinates, Optuna importances), Start/Stop and Train best.
- :func:`live_plot`: the same live figure for a blocking ``xb.fit`` call, with Stop,
  Pause and a learning-rate slider.
- :class:`NetworkPicture`: a dense network drawn as TensorFlow Playground draws it,
  each neuron a heatmap over the plane, updated live.
- :func:`watch`: a run trained elsewhere (``fit(..., run_dir=...)``, e.g. under
  ``torchrun`` on a server), live from its run directory, with a Stop that works.
- :func:`set_renderer`: the live figure widget, or a static plotly figure where the front
  end cannot run the widget (chosen automatically in VS Code and Colab).
"""

from .builder import ModelBuilder
from .compare import RunComparison
from .dashboard import TrainingDashboard
from .frontend.render import renderer, set_renderer
from .gradcheck import GradCheck
from .inspect import InspectView, inspect
from .lr_finder import LRFinderButton
from .network import NetworkPicture
from .panels import NetworkPanels
from .playground import Playground
from .plot import LivePlot, live_plot, make_figure
from .watch import RunWatch, watch

__all__ = ["GradCheck", "InspectView", "LRFinderButton", "LivePlot", "ModelBuilder",
           "NetworkPanels", "NetworkPicture", "Playground", "RunComparison", "RunWatch",
           "TrainingDashboard", "inspect", "live_plot", "make_figure", "renderer",
           "set_renderer", "watch"]
