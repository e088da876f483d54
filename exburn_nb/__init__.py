"""exburn_nb: the ExBurn training API for PyTorch, with live Jupyter dashboards.

Define a spec, compile it, fit it, evaluate it, save it:

    >>> import exburn_nb as xb
    >>> spec = (xb.input("input", shape=(None, 64))
    ...         .dense(32, activation="relu", name="hidden")
    ...         .dense(10, name="output"))
    >>> model = xb.compile(spec, loss="cross_entropy", optimizer="adam", learning_rate=1e-3)
    >>> model = xb.fit(model, (x, y), epochs=5, accuracy=True)  # doctest: +SKIP

The widgets (``xb.widgets.TrainingDashboard``, ``xb.widgets.live_plot``) are imported on
first use, so the core never loads ipywidgets, plotly or IPython.
"""

from importlib import import_module
from typing import Any

from . import callbacks, datasets, space, sweep
from .callbacks import Callback
from .config import FitConfig
from .model import Model, available_devices, compile, deserialize_params, load
from .spec import Spec, input
from .steps import compute_gradients, evaluate, train_step
from .training import Trainer, fit
from .tuning import lr_find

__version__ = "0.1.0"

__all__ = [
    "Callback", "Experiment", "FitConfig", "Model", "Spec", "Trainer", "available_devices",
    "callbacks", "compile", "compute_gradients", "datasets", "deserialize_params", "evaluate",
    "fit", "input", "load", "lr_find", "space", "sweep",
    "train_step", "widgets", "runner",
]


def __getattr__(name: str) -> Any:
    """Import ``exburn_nb.widgets``, ``exburn_nb.runner`` and ``Experiment`` lazily on first
    access."""
    if name in ("widgets", "runner"):
        return import_module(f".{name}", __name__)
    if name == "Experiment":  # lazy, so ``python -m exburn_nb.experiment`` runs it cleanly
        return import_module(".experiment", __name__).Experiment
    raise AttributeError(f"module 'exburn_nb' has no attribute {name!r}")
