"""``Playground``: TensorFlow Playground's lessons in the notebook, for exburn_nb models.

A 2-D data set (generated, or your own ``(x, y)``: two features, or the first two
principal components of more), optional feature transforms, a dense network, and a
:class:`~exburn_nb.widgets.TrainingDashboard` (``playground.dashboard``) to train it, with
its LR-finder button (``playground.lr_finder``) and inside-the-network panels
(``playground.panels``, closed by default).
The decision boundary is drawn as TensorFlow Playground draws it: each point of the plane
takes the colour of its predicted class, blended toward white as the network is less
sure (``show="probability"``; ``"class"``: flat class colours), computed in the kernel
and sent as a small PNG, interpolated so it is not blocky. Train points are circles, test points
triangles, both in their class's colour. Start trains until Stop by default (``epochs=0``),
at most one epoch every ``epoch_s`` seconds, so a class watches the boundary form; it is
redrawn while training runs (one batched forward pass over a grid), a frame at a time:
the next only once the page says it drew the last (see
:meth:`~exburn_nb.widgets.frontend.figure.FigureWidget.wait_frame`).

Choosing a data set, features or a network applies at once (new data and a fresh
network); the advanced settings sit in a closed "advanced" section, with the setup's
JSON to export and import. Beside the boundary, the network picture
(``playground.network``, a :class:`~exburn_nb.widgets.NetworkPicture`) is redrawn with it,
in the same frame.

Feature transforms (x², y², xy, sin) are applied on the data side: the model's input is
the transformed features, and the boundary grid goes through the same transform.

Example:
    >>> pg = xb.widgets.Playground(dataset="spirals", hidden=(16, 16))  # doctest: +SKIP
    >>> pg  # the cell's last expression shows it; press Start  # doctest: +SKIP
    >>> text = pg.to_json()  # hand the setup to a class  # doctest: +SKIP
    >>> xb.widgets.Playground.from_json(text)  # the same data, network and run  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import functools
import json
import struct
import threading
import time
import zlib
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from ..base.checks import check_int, check_seed
from ..base.vocabulary import OPTIMIZERS
from ..core import datasets
from ..core.model import Model, compile
from ..core.spec import input as spec_input
from ..io.persist import parse_json
from ..train.callbacks import Callback
from .controls import error_html, moved_off
from .dashboard import TrainingDashboard
from .frontend.figure import FigureWidget
from .frontend.throttle import DrawingThread, Throttle
from .network import Frame, NetworkPicture
from .panels import COLORS

# Boundary redraws per second at most; each waits until the page has drawn the one before
# (the figure's frame acknowledgement), so a slow page gets fewer, never a queue of them.
MAX_UPDATES_PER_S = 5
# the plane's colours at most this far from white (show="class": exactly), so the points,
# in their full class colours, stand out on a confident region
CLASS_INTENSITY = 0.6
GRID = 60  # boundary resolution: GRID x GRID points, one forward pass
# plotly draws layout images pixelated: the probabilities are interpolated (bilinear) to
# this many times the grid's resolution before colouring, so the boundary is not blocky
SMOOTH = 3
MAX_GRID = 200  # 40,000 points a pass: 1.4 s for the largest network (10 x 256), measured
MARGIN = 0.15  # the plane extends this share of the data's range beyond it
FEATURES = {
    "x": lambda p: p[:, 0], "y": lambda p: p[:, 1], "x²": lambda p: p[:, 0] ** 2,
    "y²": lambda p: p[:, 1] ** 2, "xy": lambda p: p[:, 0] * p[:, 1],
    "sin(x)": lambda p: torch.sin(p[:, 0]), "sin(y)": lambda p: torch.sin(p[:, 1]),
}
ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
# Each data option's range: its control takes it, and check_config (JSON setups included)
# refuses a value outside it, so no control ever changes a value it is given.
LIMITS: dict[str, tuple[float, float]] = {
    "n": (8, 20_000), "classes": (2, 10), "noise": (0.0, 2.0), "test_fraction": (0.05, 0.9),
    "epoch_s": (0.0, 2.0)}
MAX_HIDDEN_LAYERS = 10  # hidden layers ...
MAX_HIDDEN_UNITS = 256  # ... of at most this many units: under 600,000 parameters
SHOW = ("probability", "class")
DEFAULTS: dict[str, Any] = {
    "dataset": "circles", "n": 400, "classes": 2, "noise": 0.1, "test_fraction": 0.3,
    "data_seed": 0, "features": ["x", "y"], "hidden": [8], "activation": "tanh",
    "optimizer": "adam", "learning_rate": 0.03, "weight_decay": 0.0, "epochs": 0,
    "batch_size": 16, "seed": 0, "epoch_s": 0.02,
}
# epochs 0: train until Stop; epoch_s: the shortest time an epoch takes (a pace to watch)
PRESETS: dict[str, dict[str, Any]] = {
    "linear model on circles (fails)": {"dataset": "circles", "features": ["x", "y"], "hidden": []},
    "circles with x², y² (linear works)": {"dataset": "circles", "features": ["x", "y", "x²", "y²"],
                                           "hidden": []},
    "circles with a hidden layer": {"dataset": "circles", "features": ["x", "y"], "hidden": [4]},
    "xor with xy": {"dataset": "xor", "features": ["x", "y", "xy"], "hidden": []},
    "spirals, deep": {"dataset": "spirals", "classes": 3, "n": 600, "features": ["x", "y"],
                      "hidden": [32, 32, 32], "activation": "relu", "learning_rate": 0.01},
    "learning rate too high": {"dataset": "moons", "hidden": [8, 8], "learning_rate": 1.0},
    # 30 noisy training points, 170 test points (test accuracy in steps of 0.6 %); over
    # data seeds 0-4 (and weight seeds 1, 2 on data seed 0), weight decay 0.03 raised the
    # test accuracy by 6-18 points and shrank the weight norm from about 30 to about 2.5
    "few points, overfitting": {"dataset": "moons", "n": 200, "test_fraction": 0.85,
                                "noise": 0.5, "hidden": [64, 64], "activation": "relu",
                                "epochs": 300, "weight_decay": 0.0},
    "few points, regularised": {"dataset": "moons", "n": 200, "test_fraction": 0.85,
                                "noise": 0.5, "hidden": [64, 64], "activation": "relu",
                                "epochs": 300, "weight_decay": 0.03},
}


def transform(points: torch.Tensor, features: list[str] | tuple[str, ...]) -> torch.Tensor:
    """The model's input for 2-D ``points``: one column per feature name in ``features``
    (see :data:`FEATURES`), in that order.

    Example:
        >>> transform(torch.tensor([[2.0, 3.0]]), ["x", "xy", "y²"]).tolist()
        [[2.0, 6.0, 9.0]]
    """
    return torch.stack([FEATURES[f](points) for f in features], dim=1).float()


def project_2d(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets on the training set's first two principal components (2 features as is)."""
    if train_x.shape[1] == 2:
        return train_x.float(), test_x.float()
    mean = train_x.float().mean(dim=0)
    _, _, v = torch.linalg.svd(train_x.float() - mean, full_matrices=False)
    basis = v[:2].T
    return (train_x.float() - mean) @ basis, (test_x.float() - mean) @ basis


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """The defaults updated with ``config``; unknown keys and bad values raise ValueError."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown playground option(s) {', '.join(unknown)}; expected some of "
                         f"{', '.join(DEFAULTS)}")
    cfg = {**DEFAULTS, **config}
    if cfg["dataset"] not in (*datasets.TOY_SETS, "custom"):
        raise ValueError(f"dataset must be one of {', '.join(datasets.TOY_SETS)} (or your own "
                         f"data=...); got {cfg['dataset']!r}")
    for key, (low, high) in LIMITS.items():
        value = cfg[key]
        if isinstance(low, int):
            check_int(key, value, low, high)
        elif (isinstance(value, bool) or not isinstance(value, (int, float))
              or not low <= value <= high):
            raise ValueError(f"{key} must be a number in [{low:g}, {high:g}]; got {value!r}")
    features, hidden = cfg["features"], cfg["hidden"]
    if (not isinstance(features, (list, tuple)) or not features
            or any(not isinstance(f, str) or f not in FEATURES for f in features)):
        raise ValueError(f"features must be a non-empty list of {', '.join(FEATURES)}; got "
                         f"{features!r}")
    if (not isinstance(hidden, (list, tuple)) or len(hidden) > MAX_HIDDEN_LAYERS or any(
            isinstance(u, bool) or not isinstance(u, int) or not 1 <= u <= MAX_HIDDEN_UNITS
            for u in hidden)):
        raise ValueError(f"hidden must be a list of at most {MAX_HIDDEN_LAYERS} layer sizes, "
                         f"each in [1, {MAX_HIDDEN_UNITS}]; got {hidden!r:.200}")
    cfg["features"], cfg["hidden"] = list(features), list(hidden)
    if cfg["activation"] not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got "
                         f"{cfg['activation']!r}")
    if cfg["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got "
                         f"{cfg['optimizer']!r}")
    check_seed(cfg["data_seed"], "data_seed")
    check_seed(cfg["seed"])
    return cfg


def png_data_uri(rgb: np.ndarray) -> str:
    """An ``(height, width, 3)`` uint8 image as a PNG ``data:`` URI (first row on top): the
    boundary's compact form (a 60 x 60 frame is a few kilobytes).

    Example:
        >>> png_data_uri(np.zeros((1, 1, 3), np.uint8))[:22]
        'data:image/png;base64,'
    """
    height, width, _ = rgb.shape
    rows = b"".join(b"\x00" + bytes(row) for row in np.ascontiguousarray(rgb, np.uint8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def class_rgb(index: int) -> np.ndarray:
    """Class ``index``'s colour (:data:`~exburn_nb.widgets.panels.COLORS`) as 3 floats."""
    color = COLORS[index % len(COLORS)]
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)


class _Boundary(Callback):
    """Redraws the playground's boundary while training, and keeps the run's pace.

    The training thread computes the grid's values (one forward pass, at a batch boundary,
    so the weights are whole) at most :data:`MAX_UPDATES_PER_S` times a second, and only
    when the :class:`~exburn_nb.widgets.frontend.throttle.DrawingThread` is free: it sends
    them, then waits until the page says it has drawn them. The last values are drawn
    before the run ends. Each epoch lasts at least the config's ``epoch_s``.
    """

    def __init__(self, playground: Playground):
        self.playground = playground
        self.throttle = Throttle(MAX_UPDATES_PER_S)
        self._drawer: DrawingThread | None = None
        self._epoch_started = 0.0

    def on_train_begin(self, logs: dict) -> None:
        self.throttle.restart(ready_now=False)
        self._drawer = DrawingThread(self.playground.show_frame, MAX_UPDATES_PER_S,
                                     name="exburn-boundary-draw",
                                     settle=self.playground.wait_frame)

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self._epoch_started = time.monotonic()

    def on_batch_end(self, batch: int, logs: dict) -> None:
        if self._drawer.idle and self.throttle.ready():
            self._drawer.request(self.playground.frame())

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        trainer = self.playground.dashboard.runner.trainer
        until = self._epoch_started + self.playground.config["epoch_s"]
        while time.monotonic() < until and not trainer.control.stopping:
            time.sleep(min(0.02, max(0.0, until - time.monotonic())))

    def on_train_end(self, logs: dict) -> None:
        if self._drawer is not None:  # not joined: it may be waiting for the page's ack,
            self._drawer.close(timeout=0)  # and Stop must not wait for that
        self.playground.draw()


class Playground(W.VBox):
    """Data set and network pickers, the decision boundary and a training dashboard.

    Args:
        data: your own ``((x, y), (test_x, test_y))`` with integer class labels (more than
            two features are projected on their first two principal components);
            ``dataset`` is then ``"custom"``.
        preset: a name from :data:`PRESETS`, applied over ``config``.
        show: ``"probability"`` (each point in its predicted class's colour, blended toward
            white as the network is less sure, as in TensorFlow Playground) or ``"class"``
            (flat class colours).
        grid: the boundary's resolution (grid x grid points, at most :data:`MAX_GRID`).
        **config: any of :data:`DEFAULTS`: dataset, n, classes, noise, test_fraction,
            data_seed (the data), features, hidden, activation (the network), optimizer,
            learning_rate, weight_decay, epochs, batch_size, seed (weights and run).

    Example:
        >>> pg = Playground(preset="spirals, deep")  # doctest: +SKIP
        >>> pg.dashboard.start(); pg.dashboard.wait()  # doctest: +SKIP
    """

    def __init__(self, data: Any = None, preset: str | None = None, show: str = "probability",
                 grid: int = GRID, **config: Any):
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}; got {preset!r}")
        if show not in SHOW:
            raise ValueError(f"show must be one of {', '.join(SHOW)}; got {show!r}")
        check_int("grid", grid, 2, MAX_GRID)
        if data is not None:
            config["dataset"] = "custom"
        self.config = check_config({**(PRESETS[preset] if preset else {}), **config})
        self.custom = data
        self.show, self.grid = show, grid
        self._boundary = _Boundary(self)
        self._draw_lock = threading.Lock()  # the drawing thread and the notebook's draws
        self._build_controls()
        self.figure = FigureWidget(self._empty_figure())
        self.figure.add_class("xb-boundary")
        self.dashboard: TrainingDashboard
        super().__init__([])
        self.add_class("xb-playground")
        self.build()

    # ---------------------------------------------------------------- set-up
    def _build_controls(self) -> None:
        c, style = self.config, {"description_width": "initial"}
        self.preset = W.Dropdown(options=["(custom)", *PRESETS], value="(custom)",
                                 description="preset", style=style)
        names = list(datasets.TOY_SETS) + (["custom"] if self.custom is not None else [])
        self.dataset = W.Dropdown(options=names, value=c["dataset"], description="data",
                                  style=style)
        self.dataset.add_class("xb-dataset")
        lim = LIMITS
        self.n = W.BoundedIntText(value=c["n"], min=lim["n"][0], max=lim["n"][1],
                                  description="points", style=style)
        self.classes = W.BoundedIntText(value=c["classes"], min=lim["classes"][0],
                                        max=lim["classes"][1], description="classes", style=style)
        self.noise = W.BoundedFloatText(value=c["noise"], min=lim["noise"][0],
                                        max=lim["noise"][1], step=0.05, description="noise",
                                        style=style)
        self.test_fraction = W.BoundedFloatText(
            value=c["test_fraction"], min=lim["test_fraction"][0], max=lim["test_fraction"][1],
            step=0.05, description="test share", style=style)
        self.feature_boxes = {f: W.Checkbox(value=f in c["features"], description=f,
                                            indent=False, layout=W.Layout(width="70px"))
                              for f in FEATURES}
        self.hidden = W.Text(value=", ".join(map(str, c["hidden"])), description="hidden units",
                             placeholder=f"e.g. 8, 8 (up to {MAX_HIDDEN_LAYERS} layers of 1-"
                                         f"{MAX_HIDDEN_UNITS}; empty: linear)", style=style,
                             continuous_update=False)
        self.activation = W.Dropdown(options=ACTIVATIONS, value=c["activation"],
                                     description="activation", style=style)
        self.optimizer = W.Dropdown(options=OPTIMIZERS, value=c["optimizer"],
                                    description="optimizer", style=style)
        self.epoch_s = W.FloatSlider(value=c["epoch_s"], min=lim["epoch_s"][0],
                                     max=lim["epoch_s"][1], step=0.01, readout_format=".2f",
                                     description="seconds per epoch (pace)", style=style)
        self.epoch_s.add_class("xb-pace")
        self.show_picker = W.ToggleButtons(options=SHOW, value=self.show)
        self.build_button = W.Button(description="New weights", icon="refresh",
                                     tooltip="new data and a fresh network from these settings")
        self.build_button.add_class("xb-build")
        self.message = W.HTML()
        self.message.add_class("xb-playground-message")
        self.setup_text = W.Textarea(placeholder="a setup's JSON: Export fills it in; paste one "
                                                 "and press Import", description="setup",
                                     style=style, layout=W.Layout(width="95%", height="120px"))
        self.setup_text.add_class("xb-setup")
        self.export_button = W.Button(description="Export", icon="upload",
                                      tooltip="this setup as JSON text, to copy")
        self.import_button = W.Button(description="Import", icon="download",
                                      tooltip="apply the setup pasted above")
        self.export_button.add_class("xb-export")
        self.import_button.add_class("xb-import")
        self.export_button.on_click(lambda _: self.export_setup())
        self.import_button.on_click(lambda _: self.import_setup(self.setup_text.value))
        self.preset.observe(self._on_preset, names="value")
        self.show_picker.observe(self._on_show, names="value")
        self.epoch_s.observe(self._on_pace, names="value")
        self.build_button.on_click(lambda _: self.build_from_controls())
        self._syncing = False  # True while the controls are set from a config
        for w in (self.dataset, self.n, self.classes, self.noise, self.test_fraction,
                  *self.feature_boxes.values(), self.hidden, self.activation, self.optimizer):
            w.observe(self._on_setting, names="value")
        self.controls = W.VBox([
            W.HBox([self.preset, self.show_picker, self.build_button]),
            W.HBox([self.dataset, self.classes, self.noise]),
            W.HBox([W.Label("features:"), *self.feature_boxes.values()]),
            W.HBox([self.hidden, self.activation]), self.message])
        self.advanced_box = W.VBox()
        self.advanced = W.Accordion(children=[self.advanced_box], titles=("advanced",),
                                    selected_index=None)
        self.advanced.add_class("xb-advanced")

    def _on_setting(self, change: dict) -> None:
        if not self._syncing:  # a person's choice: applied at once
            self.build_from_controls()

    def _on_pace(self, change: dict) -> None:
        self.config["epoch_s"] = change["new"]

    def _controls_config(self) -> dict[str, Any]:
        text = self.hidden.value.replace(" ", "")
        try:
            hidden = [int(u) for u in text.split(",") if u]
        except ValueError:
            raise ValueError(f"hidden units must be comma-separated integers like '8, 8'; got "
                             f"{self.hidden.value!r}") from None
        two_only = self.dataset.value in ("moons", "xor")
        return {"dataset": self.dataset.value, "n": self.n.value,
                "classes": 2 if two_only else self.classes.value,
                "noise": self.noise.value, "test_fraction": self.test_fraction.value,
                "features": [f for f, box in self.feature_boxes.items() if box.value],
                "hidden": hidden, "activation": self.activation.value,
                "optimizer": self.optimizer.value}

    def _set_controls(self, cfg: dict[str, Any]) -> None:
        self._syncing = True
        try:
            self.dataset.value, self.n.value = cfg["dataset"], cfg["n"]
            self.classes.value = cfg["classes"]
            self.noise.value, self.test_fraction.value = cfg["noise"], cfg["test_fraction"]
            for f, box in self.feature_boxes.items():
                box.value = f in cfg["features"]
            self.hidden.value = ", ".join(map(str, cfg["hidden"]))
            self.activation.value, self.optimizer.value = cfg["activation"], cfg["optimizer"]
            self.epoch_s.value = cfg["epoch_s"]
        finally:
            self._syncing = False

    def _on_preset(self, change: dict) -> None:
        if change["new"] in PRESETS:
            self.apply({**DEFAULTS, "data_seed": self.config["data_seed"],
                        "seed": self.config["seed"], **PRESETS[change["new"]]})

    def _on_show(self, change: dict) -> None:
        self.show = change["new"]
        self.draw()

    def build_from_controls(self) -> None:
        """Rebuild from the pickers (any choice of data or network, and the "New weights"
        button); a bad setting shows its message and changes nothing."""
        try:
            self.apply({**self.config, **self._controls_config()})
        except (ValueError, TypeError) as exc:
            self.message.value = error_html(exc)

    def apply(self, config: dict[str, Any]) -> None:
        """Replace the configuration (validated) and rebuild data, network and dashboard;
        a bad configuration raises before anything changes."""
        config = check_config(config)
        parts = self._prepare(config)
        self.config = config
        self._set_controls(config)
        self._install(parts)

    def build(self) -> None:
        """Data, network and dashboard from :attr:`config`; the boundary drawn untrained."""
        self._install(self._prepare(self.config))

    def _prepare(self, c: dict[str, Any]) -> dict[str, Any]:
        """Data, network and dashboard for the checked config ``c``, nothing installed yet."""
        points, test_points = self._make_points(c)
        inputs = transform(points[0], c["features"])
        test_inputs = transform(test_points[0], c["features"])
        num_classes = int(torch.cat([points[1], test_points[1]]).max()) + 1
        model = self._network(c, num_classes)
        dashboard = TrainingDashboard(
            model, (inputs, points[1]), validation_data=(test_inputs, test_points[1]),
            until_stop=True, epochs=c["epochs"], batch_size=c["batch_size"],
            weight_decay=c["weight_decay"], accuracy=True, seed=c["seed"])
        return {"points": points, "test_points": test_points, "inputs": inputs,
                "test_inputs": test_inputs, "num_classes": num_classes, "model": model,
                "dashboard": dashboard}

    def _install(self, parts: dict[str, Any]) -> None:
        old = getattr(self, "dashboard", None)
        if old is not None:
            old.stop()
            old.wait(30)
        for name, value in parts.items():
            setattr(self, name, value)
        self.dashboard.runner.add_callback(self._boundary)
        for key in ("epochs", "batch_size", "weight_decay", "optimizer"):
            getattr(self.dashboard, key).observe(functools.partial(self._on_option, key),
                                                 names="value")
        self.dashboard.learning_rate.observe(self._on_learning_rate, names="value")
        self.lr_finder, self.panels = self.dashboard.lr_finder, self.dashboard.panels
        self._place_advanced()
        self._plane()
        self._install_network()
        with self.figure.batch_update():
            self._draw_points()
        self.draw()
        self.message.value = ""
        self.children = [self.controls, self.pictures, self.dashboard, self.advanced]

    # ---------------------------------------------------------------- the network picture
    def _install_network(self) -> None:
        """The network picture (:attr:`network`) for the new model, on the same plane."""
        ranges = ((float(self.grid_x[0]), float(self.grid_x[-1])),
                  (float(self.grid_y[0]), float(self.grid_y[-1])))
        features = self.config["features"]
        inputs = functools.partial(transform, features=features)
        if getattr(self, "network", None) is None:
            self.network = NetworkPicture(self.model, *ranges, inputs, features)
            self.pictures = W.HBox([self.figure, self.network],
                                   layout=W.Layout(flex_flow="row wrap"))
        else:
            self.network.set_network(self.model, *ranges, inputs, features)

    def frame(self) -> tuple[torch.Tensor, Frame]:
        """One redraw's values from the current weights: :meth:`boundary`'s and the network
        picture's (computed by the training thread at a batch boundary)."""
        return self.boundary(), self.network.compute()

    def show_frame(self, frame: tuple[torch.Tensor, Frame]) -> None:
        """Draw :meth:`frame`'s values: the boundary, then the network picture."""
        self.show_boundary(frame[0])
        self.network.show(frame[1])

    def wait_frame(self) -> None:
        """Wait (each at most its timeout) until the page has drawn the last frame of the
        boundary and of the network picture: the drawing thread's pace."""
        self.figure.wait_frame()
        self.network.figure.wait_frame()

    def _place_advanced(self) -> None:
        """The dashboard keeps Start/Stop, the curves, learning rate and epochs in sight; its
        other settings and rows go to the closed "advanced" section, with the data's size,
        test share, optimizer, pace and the setup's export and import."""
        dash = self.dashboard
        in_sight = (dash.learning_rate, dash.epochs)
        # the playground's optimizer picker stands for the dashboard's (it rebuilds)
        others = [w for w in dash.controls_box.children if w not in (*in_sight, dash.optimizer)]
        dash.controls_box.children = in_sight
        rows = (dash.freeze_box, dash.io_row)
        dash.children = [w for w in dash.children if w not in rows]
        others_box = W.HBox(others)
        others_box.add_class("xb-row")
        self.advanced_box.children = [
            W.HBox([self.n, self.test_fraction, self.optimizer, self.epoch_s]), others_box,
            *rows, self.setup_text, W.HBox([self.export_button, self.import_button])]

    def _on_option(self, key: str, change: dict) -> None:
        self.config[key] = change["new"]  # a person's change on the dashboard

    def _on_learning_rate(self, change: dict) -> None:
        # a browser snaps the slider to its grid (0.03 comes back as 10**-1.5): that is no
        # person's choice, and the config keeps its exact rate
        if moved_off(self.dashboard.learning_rate, self.config["learning_rate"]):
            self.config["learning_rate"] = change["new"]

    def _make_points(self, c: dict[str, Any]) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                       tuple[torch.Tensor, torch.Tensor]]:
        if c["dataset"] == "custom":
            if self.custom is None:
                raise ValueError("dataset 'custom' needs your data: Playground(data=((x, y), "
                                 "(test_x, test_y)))")
            (x, y), (tx, ty) = self.custom
            x, tx = project_2d(torch.as_tensor(x), torch.as_tensor(tx))
            return (x, torch.as_tensor(y).long()), (tx, torch.as_tensor(ty).long())
        options = {k: c[k] for k in ("n", "classes", "noise", "test_fraction")}
        return datasets.toy(c["dataset"], seed=c["data_seed"], **options)

    def make_model(self) -> Model:
        """A fresh network from :attr:`config` (the same seed gives the same weights)."""
        return self._network(self.config, self.num_classes)

    @staticmethod
    def _network(c: dict[str, Any], num_classes: int) -> Model:
        spec = spec_input("input", shape=(None, len(c["features"])))
        act = None if c["activation"] == "linear" else c["activation"]
        for i, units in enumerate(c["hidden"]):
            spec = spec.dense(units, activation=act, name=f"hidden{i + 1}")
        spec = spec.dense(num_classes, name="output")
        return compile(spec, loss="cross_entropy", optimizer=c["optimizer"],
                       learning_rate=c["learning_rate"], weight_decay=c["weight_decay"],
                       seed=c["seed"])

    def _plane(self) -> None:
        both = torch.cat([self.points[0], self.test_points[0]])
        lo, hi = both.min(dim=0).values, both.max(dim=0).values
        pad = (hi - lo) * MARGIN
        lo, hi = lo - pad, hi + pad
        self.grid_x = torch.linspace(float(lo[0]), float(hi[0]), self.grid)
        self.grid_y = torch.linspace(float(lo[1]), float(hi[1]), self.grid)
        gy, gx = torch.meshgrid(self.grid_y, self.grid_x, indexing="ij")
        self.grid_points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)

    # ---------------------------------------------------------------- drawing
    @staticmethod
    def _empty_figure() -> go.Figure:
        fig = go.Figure(layout=dict(height=440, width=520, margin=dict(l=40, r=10, t=30, b=40),
                                    template="plotly_white", uirevision="keep",
                                    title="decision boundary", legend=dict(orientation="h"),
                                    xaxis=dict(showgrid=False, zeroline=False),
                                    yaxis=dict(showgrid=False, zeroline=False)))
        fig.add_layout_image(name="boundary", xref="x", yref="y", sizing="stretch",
                             layer="below", source=png_data_uri(np.full((1, 1, 3), 255)))
        fig.add_scatter(name="train", mode="markers", showlegend=False, hoverinfo="skip",
                        marker=dict(size=7, symbol="circle", line=dict(width=1, color="white")))
        fig.add_scatter(name="test", mode="markers", showlegend=False, hoverinfo="skip",
                        marker=dict(size=9, symbol="triangle-up",
                                    line=dict(width=1, color="#333")))
        for name, trace in (("train", fig.data[0]), ("test", fig.data[1])):  # neutral legend
            fig.add_scatter(name=name, x=[None], y=[None], mode="markers",
                            marker=dict(size=trace.marker.size, symbol=trace.marker.symbol,
                                        color="#999", line=trace.marker.line))
        return fig

    def boundary(self) -> torch.Tensor:
        """The class probabilities over the grid, ``(grid, grid, classes)`` (rows: y,
        columns: x), from one batched forward pass of the transformed grid points."""
        out = self.model.predict(transform(self.grid_points, self.config["features"]),
                                 batch_size=len(self.grid_points))
        return out.float().softmax(dim=1).reshape(self.grid, self.grid, -1)

    def colors(self, probs: torch.Tensor) -> np.ndarray:
        """:meth:`boundary`'s probabilities as RGB, ``(grid, grid, 3)`` uint8: each point in
        its predicted class's colour, blended toward white by how unsure the network is
        (``show="probability"``: white at a coin toss, :data:`CLASS_INTENSITY` when sure) or
        a flat tint (``"class"``).

        Example:
            >>> pg.colors(pg.boundary()).shape  # doctest: +SKIP
            (60, 60, 3)
        """
        k = probs.shape[-1]
        top, winner = probs.max(dim=-1)
        if self.show == "class":
            sure = np.full(tuple(top.shape), CLASS_INTENSITY)
        else:  # 1/k (a toss) -> 0, 1 -> 1
            sure = ((top.double().numpy() - 1 / k) / (1 - 1 / k)).clip(0.0, 1.0) * CLASS_INTENSITY
        palette = np.stack([class_rgb(c) for c in range(k)])
        rgb = 255.0 + (palette[winner.numpy()] - 255.0) * sure[..., None]
        return rgb.round().clip(0, 255).astype(np.uint8)

    @staticmethod
    def smooth(probs: torch.Tensor) -> torch.Tensor:
        """:meth:`boundary`'s ``(grid, grid, k)`` probabilities interpolated (bilinear) to
        ``((grid - 1) * SMOOTH + 1)`` points a side, the grid's points among them."""
        size = (probs.shape[0] - 1) * SMOOTH + 1
        fine = torch.nn.functional.interpolate(probs.permute(2, 0, 1)[None], size=(size, size),
                                               mode="bilinear", align_corners=True)
        return fine[0].permute(1, 2, 0)

    def _plane_axes(self) -> None:
        x, y = self.grid_x, self.grid_y
        x_range, y_range = (float(x[0]), float(x[-1])), (float(y[0]), float(y[-1]))
        self.figure.layout.xaxis.range, self.figure.layout.yaxis.range = x_range, y_range
        image = self.figure.layout.images[0]
        image.x, image.y = x_range[0], y_range[1]
        image.sizex, image.sizey = x_range[1] - x_range[0], y_range[1] - y_range[0]

    def _draw_points(self) -> None:
        fig = self.figure
        self._plane_axes()
        for trace, (x, y) in zip(fig.data[:2], (self.points, self.test_points), strict=True):
            trace.x, trace.y = x[:, 0].numpy(), x[:, 1].numpy()
            trace.marker.color = [COLORS[int(c) % len(COLORS)] for c in y]

    def draw(self) -> None:
        """Redraw the boundary and the network picture from the model's current weights: the
        one redraw path (one forward pass over the plane for each, one frame sent)."""
        self.show_frame(self.frame())

    def show_boundary(self, probs: torch.Tensor) -> None:
        """Send :meth:`boundary`'s probabilities ``probs`` as one frame: the plane's colours
        (:meth:`colors` of :meth:`smooth`) as a PNG of a few kilobytes."""
        source = png_data_uri(self.colors(self.smooth(probs))[::-1])  # first row: the top
        with self._draw_lock, self.figure.batch_update():
            self.figure.layout.images[0].source = source

    # ---------------------------------------------------------------- shareable setups
    def to_json(self) -> str:
        """The whole setup (data set and its options, features, network, compile and fit
        options, seeds) as JSON, exactly as :attr:`config` holds it (the dashboard's
        training controls write their changes there); :meth:`from_json` rebuilds it and
        the same run.

        Example:
            >>> Playground.from_json(pg.to_json()).config == pg.config  # doctest: +SKIP
            True
        """
        return json.dumps({"playground": 1, **self.config}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes, data: Any = None, **kwargs: Any) -> Playground:
        """A playground from :meth:`to_json`'s text (``data`` for a ``"custom"`` data set):
        shared text, so nesting is bounded and every value is checked against the limits
        of the control that shows it before anything is made."""
        config = parse_setup(text)
        if config.get("dataset") == "custom" and data is None:
            raise ValueError("this setup uses your own data set: pass it as data=((x, y), "
                             "(test_x, test_y))")
        return cls(data=data, **kwargs, **config)

    def export_setup(self) -> str:
        """The Export button: :meth:`to_json`'s text, shown in the setup field to copy."""
        self.setup_text.value = text = self.to_json()
        # sent even when unchanged here: the page may hold an edit (a cleared field) whose
        # message this click overtook, and the person must see what Export gave
        self.setup_text.send_state("value")
        return text

    def import_setup(self, text: str) -> bool:
        """The Import button: apply a setup's JSON text (from Export, or a class handout);
        a bad one shows why in the message and changes nothing. True if applied.

        Example:
            >>> pg.import_setup(other.to_json())  # doctest: +SKIP
            True
        """
        try:
            config = parse_setup(text)
            if config.get("dataset") == "custom" and self.custom is None:
                raise ValueError("this setup uses its own data set, which this playground "
                                 "does not have: make it with Playground.from_json(text, "
                                 "data=...)")
            self.apply(config)
        except (ValueError, TypeError) as exc:
            self.message.value = error_html(exc)
            return False
        self.preset.value = "(custom)"
        return True


def parse_setup(text: Any) -> dict[str, Any]:
    """The checked options of a setup's JSON text (:meth:`Playground.to_json`): shared text,
    so nesting is bounded and every value is checked against the limits of the control
    that shows it before anything is made.

    Example:
        >>> parse_setup('{"playground": 1, "dataset": "xor"}')
        {'dataset': 'xor'}
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(f"text must be a playground setup's JSON text (str or bytes); "
                        f"got {type(text).__name__}")
    config = parse_json(text, "playground setup")
    if not isinstance(config, dict) or config.pop("playground", None) != 1:
        raise ValueError("text is not a playground setup (made by Playground.to_json)")
    check_config(config)  # only setup options: grid, show, preset are the caller's
    return config
