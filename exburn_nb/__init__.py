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

from . import sweep
from .core import datasets
from .core.codegen import to_torch_code
from .core.config import CompileConfig, FitConfig
from .core.model import Model, available_devices, compile, deserialize_params, load
from .core.runs import read_run
from .core.spec import Spec, input
from .train import callbacks
from .train.callbacks import Callback
from .train.loop import Trainer, fit
from .train.lr_finder import lr_find
from .train.steps import compute_gradients, evaluate, train_step

__version__ = "0.1.0"

__all__ = [
    "Callback", "CompileConfig", "Experiment", "ExperimentResults", "FitConfig", "Model", "Spec", "Trainer", "available_devices",
    "callbacks", "compile", "compute_gradients", "datasets", "deserialize_params", "evaluate",
    "fit", "input", "load", "lr_find", "read_run", "space", "sweep",
    "to_torch_code", "train_step", "widgets", "runner",
]


def __getattr__(name: str) -> Any:
    """Import ``widgets``, ``runner``, ``space``, ``Experiment`` and ``ExperimentResults``
    lazily on first access."""
    if name == "widgets":
        return import_module(".widgets", __name__)
    if name == "runner":
        return import_module(".train.runner", __name__)
    if name == "space":
        return import_module(".experiment.space", __name__)
    if name in ("Experiment", "ExperimentResults"):  # lazy: ``python -m exburn_nb.experiment``
        return getattr(import_module(".experiment", __name__), name)
    raise AttributeError(f"module 'exburn_nb' has no attribute {name!r}")
