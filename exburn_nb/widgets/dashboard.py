"""``TrainingDashboard``: watch and steer a run from the notebook.

Training runs in a background thread (:class:`~exburn_nb.train.runner.Runner`), so the
notebook stays usable; the thread only sets widget traits and figure data, never prints.
Every button has a Python twin (``start()``, ``stop()``, ...) for scripts and tests.

Example:
    >>> dash = xb.widgets.TrainingDashboard(model, (x, y), validation_data=(vx, vy),
    ...                                     epochs=20, accuracy=True)  # doctest: +SKIP
    >>> dash  # the cell's last expression shows it  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from ..base.vocabulary import OPTIMIZERS, Event, RunState
from ..core.config import FitConfig
from ..core.data import is_loader
from ..core.inputs import check_pair
from ..core.model import Model, available_devices
from ..core.optim import SCHEDULES, default_schedule
from ..train import checkpoints
from ..train.callbacks import Callback
from ..train.loop import check_run_options
from ..train.runner import Runner
from .controls import error_html, learning_rate_slider, moved_off
from .frontend.comms import serve_on_subshell
from .lr_finder import LRFinderButton
from .panels import NetworkPanels
from .plot import LivePlot, make_figure
from .progress import RunProgress

SCHEDULE_CHOICES = ("none", *SCHEDULES)  # the core's names; default_schedule fills them in
# Offered when the config's lr_schedule is none of the named defaults: it is passed as is.
CONFIGURED_SCHEDULE = "as configured"
HISTORY_ROWS = 8
RUN_ARGUMENTS = ("callbacks",)  # what every run takes besides FitConfig's options
# Spaced, right-aligned columns (bare pandas HTML runs the headers together in the browser).
TABLE_STYLE = ("<style>.xb-history-table th, .xb-history-table td "
               "{padding: 1px 10px; text-align: right}</style>")
# The figure fills the dashboard's width; rows of controls wrap instead of overflowing.
DASHBOARD_STYLE = ("<style>.xb-dashboard {max-width: 100%; overflow: hidden}"
                   ".xb-dashboard .xb-figure {width: 100%; min-width: 0}"
                   ".xb-dashboard .xb-row {flex-wrap: wrap; gap: 2px 6px; max-width: 100%}"
                   ".xb-dashboard .xb-row > .widget-inline-hbox {margin: 2px 0}</style>")
CONTROL_WIDTH = "290px"
UNTIL_STOP_EPOCHS = 1_000_000  # what "epochs: 0" runs with a dashboard made with until_stop


def named_schedule(schedule: Any, learning_rate: float, epochs: int) -> str:
    """The schedule picker's choice for a config's ``lr_schedule``: ``"none"``, the name
    whose default (:func:`~exburn_nb.core.optim.default_schedule` at this rate and run length)
    it equals, or :data:`CONFIGURED_SCHEDULE` (a callable or other settings).

    Example:
        >>> named_schedule(("cosine", 0.01, 0.0001), 0.01, 20)
        'cosine'
        >>> named_schedule(("cosine", 0.01, 0.0), 0.01, 20)
        'as configured'
    """
    if schedule is None:
        return "none"
    if not callable(schedule):
        for kind in SCHEDULES:
            named = default_schedule(kind, learning_rate, epochs)
            if (schedule[0] == kind and len(schedule) == len(named)
                    and all(math.isclose(a, b) for a, b in zip(schedule[1:], named[1:], strict=True))):
                return kind
    return CONFIGURED_SCHEDULE


def check_data(model: Model, data: Any, argname: str) -> None:
    """Raise, as ``xb.fit`` would, when in-memory ``data`` cannot train ``model`` (its pair,
    shapes, labels and lengths); nothing is moved to the device. A loader, or None, passes.

    Example:
        >>> check_data(model, (x[:, :10], y), "data")  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: data x has shape (1437, 10), but the input layer expects ...
    """
    if data is not None and not is_loader(data):
        check_pair(model, data, argname)


class TrainingDashboard(W.VBox):
    """Buttons, live curves, hyperparameter controls, an LR finder (``lr_finder``), freeze
    toggles, a device switch and the inside-the-network panels (``panels``: closed by
    default, their hooks attached only while open) around one model; shown as a cell's
    last expression.

    Args:
        model: a compiled model.
        data: ``(x, y)`` training data.
        validation_data: optional ``(x, y)``.
        config: an ``xb.FitConfig``; ``fit_options`` override it. Its epochs, batch_size,
            clip_norm, weight_decay, accumulate_gradients and lr_schedule (when it is one
            of the named defaults; otherwise the schedule picker says "as configured")
            seed the controls, and Start runs it with the controls' values applied.
        resume_from: a checkpoint (file, or directory: its newest) that the first Start
            resumes, exactly as ``xb.fit(resume_from=...)`` does; later Starts go on from
            the model as it is. Without ``config``, the checkpoint's config seeds the
            controls, and the slider shows the rate the checkpoint goes on at.
        until_stop: with True, epochs 0 (in ``fit_options`` or the epochs control) means
            "train until Stop" (the playground's default, as in TensorFlow Playground).
        **fit_options: any ``xb.fit`` option; they seed the controls like ``config`` and
            the rest pass through (accuracy, callbacks, shuffle, clip_value, nesterov, ...).

    The controls show the configured values exactly (a rate outside the slider's range
    widens it) and Start trains with exactly what they show, or refuses with a message.

    Example:
        >>> cfg = xb.FitConfig(epochs=20, batch_size=64, accuracy=True, seed=0)  # doctest: +SKIP
        >>> dash = xb.widgets.TrainingDashboard(model, (x, y), config=cfg)  # doctest: +SKIP
    """

    def __init__(self, model: Model, data: Any, validation_data: Any = None,
                 config: FitConfig | None = None, resume_from: str | Path | None = None,
                 until_stop: bool = False, **fit_options: Any):
        fit_options.pop("verbose", None)
        self.until_stop = until_stop
        endless = until_stop and fit_options.get("epochs") == 0
        if endless:
            fit_options["epochs"] = UNTIL_STOP_EPOCHS
        options = {k: v for k, v in fit_options.items() if k not in RUN_ARGUMENTS}
        # Every option, the checkpoint and the data's shapes are checked now, as xb.fit
        # checks them (a dashboard that could only fail at Start is not built), without
        # copying the data. A checkpoint's config stands in for a missing one, as in xb.fit.
        self._resume = (None if resume_from is None else checkpoints.read(
            resume_from, model, options.get("lr_schedule",
                                            config.lr_schedule if config else None)))
        self.config = FitConfig.from_options(  # an unknown option raises, naming it
            config or (self._resume.config if self._resume else None), **options)
        check_run_options(model, self.config)
        check_data(model, data, "data")
        check_data(model, validation_data, "validation_data")
        self.runner = Runner(model, data, self.config, validation_data=validation_data,
                             verbose=False, **{k: v for k, v in fit_options.items()
                                               if k in RUN_ARGUMENTS})
        self.plot = LivePlot(make_figure(), display=False)
        self.runner.add_callback(self.plot)
        self.runner.add_listener(self._on_event)
        self._build_controls(model, self.config)
        if until_stop:
            self.epochs.description = "epochs (0: until Stop)"
            self.epochs.value = 0 if endless else self.epochs.value
        self.progress_cb = RunProgress(self.progress, self.progress_label, self.refresh_table,
                                       UNTIL_STOP_EPOCHS if until_stop else None)
        self.runner.add_callback(self.progress_cb)
        self.runner.add_callback(_CompileStatus(self))
        # The sweep runs on a copy of the model; it sets the learning-rate slider.
        self.lr_finder = LRFinderButton(self)
        # Inside the network: closed by default, its hooks attached only while open.
        self.panels = NetworkPanels(model)
        self.runner.add_callback(self.panels.inspector)
        super().__init__([W.HTML(DASHBOARD_STYLE), self.buttons_row, self.progress_row,
                          self.plot.view, self.controls_box, self.lr_finder, self.freeze_box,
                          self.io_row, self.table, self.error_box, self.panels],
                         layout=W.Layout(width="100%"))
        self.add_class("xb-dashboard")
        for row in (self.buttons_row, self.progress_row, self.controls_box, self.freeze_box,
                    self.io_row):
            row.add_class("xb-row")
        serve_on_subshell(*self.controls())
        self.plot.model = model
        self.plot.draw(force=True)
        self.refresh_table()
        self._sync_buttons()

    def _ipython_display_(self) -> None:
        """The dashboard, then an export-only copy of its figure (kept up to date at the end
        of every run) for exports, which cannot draw widgets."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self.plot.display_snapshot()

    # ---------------------------------------------------------------- layout
    def _build_controls(self, model: Model, cfg: FitConfig) -> None:
        def button(label: str, style: str, icon: str, css: str) -> W.Button:
            b = W.Button(description=label, button_style=style, icon=icon,
                         layout=W.Layout(width="auto"))
            b.add_class(css)
            return b

        self.start_button = button("Start", "success", "play", "xb-start")
        self.stop_button = button("Stop", "danger", "stop", "xb-stop")
        self.pause_button = button("Pause", "warning", "pause", "xb-pause")
        self.step_button = button("Step", "info", "step-forward", "xb-step")
        self.reset_button = button("Reset weights", "", "refresh", "xb-reset")
        self.status = W.HTML("idle")
        self.status.add_class("xb-status")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.pause_button.on_click(lambda _: self.resume()
                                   if self.runner.state == RunState.PAUSED else self.pause())
        self.step_button.on_click(lambda _: self.step())
        self.reset_button.on_click(lambda _: self.reset_weights())
        self.buttons_row = W.HBox([self.start_button, self.stop_button, self.pause_button,
                                   self.step_button, self.reset_button, self.status])

        self.progress = W.IntProgress(value=0, min=0, max=1,
                                      layout=W.Layout(width="40%", min_width="160px"))
        self.progress.add_class("xb-progress")
        # the label takes the room left and clips a long text, so "log scale" keeps its place
        self.progress_label = W.Label("", layout=W.Layout(flex="1 1 0", min_width="0",
                                                          overflow="hidden"))
        self.progress_label.add_class("xb-progress-label")
        self.log_scale = W.Checkbox(description="log scale", indent=False,
                                    layout=W.Layout(width="auto", flex="0 0 auto"))
        self.log_scale.observe(lambda c: self.plot.set_log_scale(c["new"]), names="value")
        self.progress_row = W.HBox([self.progress, self.progress_label, self.log_scale],
                                   layout=W.Layout(flex_flow="row nowrap"))

        style = {"description_width": "initial"}
        schedule = named_schedule(cfg.lr_schedule, self._base_rate(), cfg.epochs)
        self.optimizer = W.Dropdown(options=OPTIMIZERS, value=model.optimizer,
                                    description="optimizer", style=style)
        self.learning_rate = learning_rate_slider(self._base_rate(), style=style)
        # Unbounded fields: a bound would clamp a configured value silently; FitConfig
        # refuses a bad one at Start, in the error box.
        self.batch_size = W.IntText(value=cfg.batch_size, description="batch size", style=style)
        self.epochs = W.IntText(value=cfg.epochs, description="epochs", style=style)
        choices = SCHEDULE_CHOICES + ((CONFIGURED_SCHEDULE,) if schedule == CONFIGURED_SCHEDULE
                                      else ())
        self.schedule = W.Dropdown(options=choices, value=schedule, description="lr schedule",
                                   style=style)
        self.clip_norm = W.FloatText(value=cfg.clip_norm or 0.0,
                                     description="clip norm (0 = off)", style=style)
        weight_decay = (cfg.weight_decay if cfg.weight_decay is not None
                        else self._resume.saved_setting("weight_decay") if self._resume
                        else model.weight_decay)
        self.weight_decay = W.FloatText(value=weight_decay, step=1e-4,
                                        description="weight decay", style=style)
        self.accumulate = W.IntText(value=cfg.accumulate_gradients, description="accumulate",
                                    style=style)
        self.device = W.Dropdown(options=available_devices(), value=model.device,
                                 description="device", style=style)
        self.optimizer.observe(self._on_optimizer, names="value")
        self.learning_rate.observe(self._on_learning_rate, names="value")
        self.device.observe(self._on_device, names="value")
        for w, css in [(self.optimizer, "xb-optimizer"), (self.learning_rate, "xb-lr"),
                       (self.batch_size, "xb-batch-size"), (self.epochs, "xb-epochs"),
                       (self.device, "xb-device")]:
            w.add_class(css)
        controls = [self.optimizer, self.learning_rate, self.batch_size, self.epochs,
                    self.schedule, self.clip_norm, self.weight_decay, self.accumulate, self.device]
        for w in controls:
            w.layout.width = CONTROL_WIDTH
            w.add_class("xb-control")
        self.controls_box = W.HBox(controls)

        self.freeze_toggles: dict[str, W.ToggleButton] = {}
        frozen = set(self._resume.model_file.frozen) if self._resume else model.frozen_layers
        for name, layer in model.layers.items():
            if any(True for _ in layer.parameters()):
                t = W.ToggleButton(value=name in frozen, description=name,
                                   icon="snowflake-o", tooltip=f"freeze {name}",
                                   layout=W.Layout(width="auto"))
                t.add_class("xb-freeze")
                if t.value:
                    t.button_style = "info"
                t.observe(lambda c, n=name: self._on_freeze(n, c["new"]), names="value")
                self.freeze_toggles[name] = t
        self.freeze_box = W.HBox([W.Label("freeze:"), *self.freeze_toggles.values()])

        self.save_path = W.Text(value="model.exburn", description="file", style=style,
                                layout=W.Layout(width="240px"))
        self.csv_path = W.Text(value="history.csv", description="csv", style=style,
                               layout=W.Layout(width="240px"))
        self.save_button = button("Save model", "", "save", "xb-save")
        self.csv_button = button("Export CSV", "", "download", "xb-csv")
        self.save_button.on_click(lambda _: self.save(self.save_path.value))
        self.csv_button.on_click(lambda _: self.export_csv(self.csv_path.value))
        self.io_row = W.HBox([self.save_path, self.save_button, self.csv_path, self.csv_button])
        self.table = W.HTML()
        self.table.add_class("xb-history")
        self.error_box = W.HTML()
        self.error_box.add_class("xb-error")

    def controls(self) -> list[W.Widget]:
        """Every widget a person operates (buttons, sliders, fields, toggles)."""
        return [self.start_button, self.stop_button, self.pause_button, self.step_button,
                self.reset_button, self.log_scale, *self.controls_box.children,
                *self.freeze_toggles.values(), self.save_path, self.csv_path,
                self.save_button, self.csv_button, self.lr_finder.button, self.panels.toggle]

    # ---------------------------------------------------------------- Python API
    @property
    def model(self) -> Model:
        """The model being trained."""
        return self.runner.model

    @property
    def history(self) -> pd.DataFrame:
        """The model's history (one row per epoch)."""
        return self.model.history

    @property
    def running(self) -> bool:
        """Whether a run is in progress (paused counts)."""
        return self.runner.running

    @property
    def resumes_from(self) -> Path | None:
        """The checkpoint file the next Start resumes (None once a Start has resumed it)."""
        return self._resume.path if self._resume is not None else None

    def fit_overrides(self) -> dict[str, Any]:
        """The fit options the controls currently say (applied over :attr:`config`)."""
        epochs = self.epochs.value
        if self.until_stop and epochs == 0:
            epochs = UNTIL_STOP_EPOCHS
        schedule = (self.config.lr_schedule if self.schedule.value == CONFIGURED_SCHEDULE
                    else default_schedule(self.schedule.value, self._rate(), epochs))
        return {"epochs": epochs, "batch_size": self.batch_size.value,
                "lr_schedule": schedule,
                "clip_norm": self.clip_norm.value or None,
                "weight_decay": self.weight_decay.value,
                "accumulate_gradients": self.accumulate.value}

    def start(self, **overrides: Any) -> bool:
        """Start training with the controls' settings; False if a run is in progress (or
        the settings are refused: the error box says why). The first Start of a dashboard
        built with ``resume_from`` resumes that checkpoint; later ones go on from the model."""
        resume, moved = self._resume, self._slider_moved()
        options = {**self.fit_overrides(), **overrides}
        if resume is not None:
            options["resume_from"] = resume.path
        try:
            started = self.runner.start(**options)
        except Exception as exc:
            self._show_error(exc, None)
            return False
        if started and resume is not None:
            self._resume = None  # resumed once: later Starts go on from the model
            if moved:  # the slider was set before Start: from the first batch on
                self.runner.set_learning_rate(self.learning_rate.value)
            self.runner.at_next_batch(self._freeze_as_toggled)  # as are the toggles
            self._sync_buttons()
        return started

    def step(self) -> bool:
        """Train exactly one epoch (for teaching); refused (False, with a message) while a
        checkpoint waits to be resumed: Start resumes it, then Step goes on from it."""
        if self._resume is not None:
            self.status.value = "Start resumes the checkpoint first; then Step goes on from it"
            return False
        return self.start(epochs=1, lr_schedule=None)

    def stop(self) -> None:
        """Stop after the batch in progress."""
        self.runner.stop()

    def pause(self) -> None:
        """Hold training after the batch in progress."""
        self.runner.pause()

    def resume(self) -> None:
        """Continue a paused run."""
        self.runner.resume()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends; True when nothing is running afterwards."""
        return self.runner.wait(timeout)

    def reset_weights(self) -> None:
        """Fresh weights, optimizer state and history (only when no run is in progress)."""
        if self.running:
            self.status.value = "stop the run before resetting the weights"
            return
        self.model.reset_weights()
        self.plot.reset()
        self.refresh_table()
        self.progress.value = 0
        self.progress_label.value = ""
        self.status.value = "weights reset · 0 epochs trained"

    def save(self, path: str | Path) -> None:
        """Save the model (atomic; safe during a run)."""
        try:
            saved = Path(self.model.save(path)).resolve()
            self.status.value = f"saved {html.escape(str(saved))}"
        except Exception as exc:
            self._show_error(exc, None)

    def export_csv(self, path: str | Path) -> None:
        """Write the history as CSV."""
        try:
            path = Path(path).expanduser().resolve()
            self.history.to_csv(path, index=False)
            self.status.value = f"history written to {html.escape(str(path))}"
        except Exception as exc:
            self._show_error(exc, None)

    # ---------------------------------------------------------------- reactions
    def _on_event(self, event: str, runner: Runner) -> None:
        if event == Event.START:
            self.error_box.value = ""
        elif event == Event.PAUSE:
            self.progress_cb.pause()
        elif event == Event.RESUME:
            self.progress_cb.resume()
        if event == Event.END:
            if runner.state == RunState.ERROR:
                self._show_error(runner.error, runner.error_traceback)
            elif runner.trainer is not None and runner.trainer.messages:
                self._show_error("; ".join(runner.trainer.messages), None)
            self.refresh_table()
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        state, busy = self.runner.state, self.runner.running
        self.start_button.disabled = busy
        self.step_button.disabled = busy or self._resume is not None
        self.lr_finder.button.disabled = busy or self._resume is not None
        self.reset_button.disabled = busy
        self.optimizer.disabled = busy or self._resume is not None  # a checkpoint keeps its own
        self.stop_button.disabled = self.pause_button.disabled = not busy
        paused = state == RunState.PAUSED
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play" if paused else "pause"
        epochs = self.model.epochs_trained
        frozen = sorted(self.model.frozen_layers)
        running = "compiling…" if self.compiling else "training…"
        self.status.value = {RunState.RUNNING: running, RunState.PAUSED: "paused"}.get(
            state, f"{state} · {epochs} epoch{'s' if epochs != 1 else ''} trained") + (
            f" · frozen: {html.escape(', '.join(frozen))}" if frozen else "") + (
            f" · Start resumes {html.escape(self._resume.path.name)}" if self._resume else "")

    @property
    def compiling(self) -> bool:
        """Whether the run is capturing its step (``compile=True``: the first step
        compiles it, which takes seconds)."""
        engine = getattr(self.runner.trainer, "engine", None)
        return self.runner.running and bool(getattr(engine, "compiling", False))

    def _base_rate(self) -> float:
        """The model's learning rate (before a checkpoint is resumed: the checkpoint's)."""
        return (self._resume.saved_setting("learning_rate") if self._resume is not None
                else self.model.learning_rate)

    def _slider_moved(self) -> bool:
        return moved_off(self.learning_rate, self._base_rate())

    def _rate(self) -> float:
        """The learning rate Start trains at: the slider's once a person moved it."""
        return self.learning_rate.value if self._slider_moved() else self._base_rate()

    def _on_learning_rate(self, change: dict) -> None:
        # before a checkpoint is resumed, Start applies the slider's rate after resuming
        if self._resume is None and self._slider_moved():
            self.runner.set_learning_rate(change["new"])

    def _on_optimizer(self, change: dict) -> None:
        if change["new"] == self.model.optimizer:  # a revert below, or no change
            return
        refusal = ("stop the run to switch the optimizer" if self.running else
                   "the checkpoint resumes with its own optimizer; Start resumes it first"
                   if self._resume is not None else None)
        if refusal is not None:
            self.optimizer.value = self.model.optimizer  # the control says what trains
            self.status.value = refusal
            return
        self.model.set_optimizer(change["new"])  # at the model's rate, never the slider's grid

    def _on_freeze(self, name: str, frozen: bool) -> None:
        toggle = self.freeze_toggles[name]
        toggle.button_style = "info" if frozen else ""
        toggle.tooltip = f"{'unfreeze' if frozen else 'freeze'} {name}"
        if self._resume is None:  # before a resume, Start applies the toggles after it
            self.runner.at_next_batch(self._freeze_as_toggled)

    def _freeze_as_toggled(self) -> None:
        """Freeze and unfreeze the layers as their toggles say (at a batch boundary)."""
        wanted = {n for n, t in self.freeze_toggles.items() if t.value}
        frozen = self.model.frozen_layers
        if wanted - frozen:
            self.model.freeze(sorted(wanted - frozen))
        if (set(self.freeze_toggles) - wanted) & frozen:
            self.model.unfreeze(sorted((set(self.freeze_toggles) - wanted) & frozen))
        self._sync_buttons()

    def _on_device(self, change: dict) -> None:
        if change["new"] == self.model.device:  # a revert below, or no change
            return
        if self.runner.state == RunState.RUNNING:
            self.status.value = "pause or stop the run to switch device"
            self.device.value = self.model.device  # the control says where it trains
            return
        if self.runner.state == RunState.PAUSED:  # end the paused run at its batch boundary
            self.runner.stop()
            self.runner.wait()
        try:
            self.model.to_device(change["new"])
            self.status.value = f"model on {self.model.device}"
        except Exception as exc:
            self.device.value = self.model.device
            self._show_error(exc, None)

    def refresh_table(self) -> None:
        """Redraw the history table (its last rows) from the model's history."""
        frame = self.history.tail(HISTORY_ROWS)
        self.table.value = (TABLE_STYLE + frame.to_html(
            index=False, float_format=lambda v: f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}",
            border=0, na_rep="–",
            classes="xb-history-table") if len(frame) else "<i>no epochs trained yet</i>")

    def _show_error(self, error: BaseException | str, tb: str | None) -> None:
        self.error_box.value = error_html(error, tb)


class _CompileStatus(Callback):
    """Says "compiling…" in the dashboard's status from the run's start until the batch
    that finished the compile, then "training…" (a check of one string per batch)."""

    def __init__(self, dashboard: TrainingDashboard):
        self.dashboard = dashboard

    def on_train_begin(self, logs: dict) -> None:
        if self.dashboard.compiling:
            self.dashboard._sync_buttons()

    def on_batch_end(self, batch: int, logs: dict) -> None:
        if self.dashboard.status.value.startswith("compiling…") and not self.dashboard.compiling:
            self.dashboard._sync_buttons()
