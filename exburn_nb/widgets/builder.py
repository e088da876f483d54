"""``ModelBuilder``: assemble a network by clicking, see its shapes and cost, train it.

One row per layer (kind, options, name, move and delete buttons); every edit redraws the
summary, the parameter counts, the shape after each layer and a diagram of the stack, and
nothing touches torch until Compile. A stack that cannot work is accepted and marked: each
bad row says why, and Compile waits until it is fixed. The option widgets come from the
layer registry's schemas (:mod:`exburn_nb.core.layers`), so a new layer kind needs no code here.
Every click has a Python twin (``add``, ``remove``, ``move``, ``set``, ``load_preset``,
``compile``).

Example:
    >>> (x, y), (vx, vy) = xb.datasets.digits()  # doctest: +SKIP
    >>> builder = xb.widgets.ModelBuilder((x, y), validation_data=(vx, vy), epochs=10)  # doctest: +SKIP
    >>> builder.load_preset("mlp")  # doctest: +SKIP
    >>> builder.add("dropout", rate=0.3)  # doctest: +SKIP
    >>> builder  # the cell's last expression shows it; Compile opens a dashboard  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import torch

from ..core.layers import REGISTRY, Option, kind_of
from ..core.losses import LOSSES
from ..core.model import Model, available_devices
from ..core.model import compile as compile_spec
from ..core.optim import OPTIMIZERS
from ..core.spec import Spec, auto_name, check_name
from ..core.spec import input as spec_input
from ..core.summary import SummaryRow, format_shape, render_html, render_text
from .dashboard import TrainingDashboard

PRESETS = {"logistic regression": "logistic_regression", "MLP": "mlp", "small CNN": "cnn"}
# The options a new layer starts with where its kind has no default (units, filters, ...).
STARTING_OPTIONS = {"units": 32, "filters": 16, "kernel_size": 3, "fn": "relu"}
COMPILE_OPTIONS = ("loss", "optimizer", "learning_rate", "weight_decay", "device", "seed")
OUTPUT_NAME = "output"
NONE_LABEL = "none"
RUN_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")


@dataclass
class Row:
    """One layer as the builder holds it: its options may be invalid while being edited."""

    kind: str
    name: str
    options: dict = field(default_factory=dict)


def infer_output(y: Any) -> tuple[int, str]:
    """``(units, loss)`` for targets ``y``: integer labels → one unit per class and
    ``cross_entropy``; 0/1 floats in a vector → 1 unit and ``binary_cross_entropy``; other
    floats → ``mse`` with one unit per column of ``y``.

    Example:
        >>> infer_output(torch.tensor([0, 2, 1]))
        (3, 'cross_entropy')
    """
    y = torch.as_tensor(np.asarray(y))
    if y.ndim == 0 or len(y) == 0:
        raise ValueError(f"data: y must hold one target per sample; got shape {tuple(y.shape)}")
    if not torch.is_floating_point(y):
        return int(y.max()) + 1, "cross_entropy"
    if y.ndim == 1 and bool(((y == 0) | (y == 1)).all()):
        return 1, "binary_cross_entropy"
    return (1 if y.ndim == 1 else int(np.prod(y.shape[1:]))), "mse"


def _hidden_width(features: int) -> int:
    """The guide's MLP first width, sized to the input: a power of two from 16 to 256."""
    return min(256, max(16, 1 << (features - 1).bit_length()))


def preset_rows(name: str, input_shape: tuple) -> list[Row]:
    """The hidden layers of a preset for this input shape (the output layer comes after)."""
    image = len(input_shape) == 4
    if name == "logistic_regression":
        return [Row("flatten", "flatten_1")] if image else []
    if name == "mlp":
        width = _hidden_width(int(np.prod(input_shape[1:])))
        rows = [Row("flatten", "flatten_1")] if image else []
        return rows + [Row("dense", "hidden1", {"units": width, "activation": "relu"}),
                       Row("dropout", "dropout_1", {"rate": 0.2}),
                       Row("dense", "hidden2", {"units": width // 2, "activation": "relu"}),
                       Row("dropout", "dropout_2", {"rate": 0.2})]
    if name == "cnn":
        if not image:
            raise ValueError(f"name: the small CNN needs an image input (None, C, H, W); this "
                             f"builder's input is {input_shape}")
        rows, side = [], min(input_shape[2:])
        for i, filters in enumerate((16, 32), start=1):
            rows.append(Row("conv2d", f"conv{i}", {"filters": filters, "kernel_size": 3,
                                                   "activation": "relu"}))
            if side // 2 >= 2:
                rows.append(Row("max_pool2d", f"pool{i}", {"pool_size": 2}))
                side //= 2
        return rows + [Row("flatten", "flatten_1"),
                       Row("dense", "hidden", {"units": 64, "activation": "relu"})]
    raise ValueError(f"name must be one of {', '.join(PRESETS.values())}; got {name!r}")


def _callback(method: Callable) -> Callable:
    """A widget handler that never raises: an error is shown in the builder's status line."""
    @functools.wraps(method)
    def run(self: ModelBuilder, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into ipywidgets
            self.status.value = f"<span style='color:#b00020'>{html.escape(str(exc))}</span>"
    return run


class ModelBuilder(W.VBox):
    """Build a network by clicking, see what it computes and costs at every edit, train it.

    Args:
        data: optional ``(x, y)`` training data: the input shape and the output layer
            (units, loss) are inferred from it, and Compile opens a dashboard on it.
        validation_data: optional ``(x, y)`` for the dashboard.
        input_shape: ``(None, ...)``, when there is no data.
        output_units: the output layer's width, when there is no data.
        loss: the loss (inferred from ``y`` when left out).
        input_name: the input layer's name.
        **fit_options: passed to the :class:`TrainingDashboard` (epochs, batch_size, ...).

    Example:
        >>> b = ModelBuilder(input_shape=(None, 64), output_units=10, loss="cross_entropy")
        >>> b.add("dense", units=32, activation="relu")
        >>> b.spec.output_shape, b.errors
        ((None, 10), [])
    """

    def __init__(self, data: Any = None, validation_data: Any = None, *,
                 input_shape: tuple | None = None, output_units: int | None = None,
                 loss: str | None = None, input_name: str = "input", **fit_options: Any):
        if data is not None:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise ValueError(f"data must be an (x, y) pair; got {type(data).__name__}")
            x, y = data
            x_shape = (None, *np.shape(x)[1:])
            if input_shape is not None and tuple(input_shape) != x_shape:
                raise ValueError(f"input_shape {tuple(input_shape)} differs from the data's "
                                 f"{x_shape}; leave it out when giving data")
            units, inferred_loss = infer_output(y)
            input_shape, output_units = x_shape, output_units or units
            loss = loss or inferred_loss
        if input_shape is None or output_units is None:
            raise ValueError("ModelBuilder needs data=(x, y), or input_shape=(None, ...) and "
                             "output_units")
        self._start = spec_input(input_name, shape=tuple(input_shape))
        self.input_shape = self._start.input_shape
        self.loss = loss or "cross_entropy"
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.output = Row("dense", OUTPUT_NAME, REGISTRY["dense"].validate(
            {"units": output_units}, OUTPUT_NAME))
        self.data, self.validation_data = data, validation_data
        if data is not None and self.loss == "cross_entropy":
            fit_options.setdefault("accuracy", True)
        self.fit_options = fit_options
        self.rows: list[Row] = []
        self.runs: list[tuple[Spec, Model]] = []
        self._spec: Spec = self._start
        self._errors: list[tuple[int, str]] = []
        self._model: Model | None = None
        self._dashboard: TrainingDashboard | None = None
        self._build_controls()
        super().__init__([self.preset_row, self.rows_box, self.add_row, self.views,
                          self.code_row, self.compile_row, self.status, self.runs_html,
                          self.dashboard_box])
        self.add_class("xb-builder")
        self._redraw_rows()

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_spec(cls, spec: Spec, data: Any = None, validation_data: Any = None, *,
                  loss: str | None = None, **fit_options: Any) -> ModelBuilder:
        """A builder holding ``spec``; its last layer, a dense one, is the output layer.

        Example:
            >>> b = ModelBuilder.from_spec(xb.input("x", shape=(None, 4)).dense(3))  # doctest: +SKIP
        """
        if not isinstance(spec, Spec) or not spec.layers or spec.layers[-1].kind != "dense":
            raise ValueError("spec must be an exburn_nb spec whose last layer is a dense output "
                             f"layer; got {spec!r}")
        last = spec.layers[-1]
        builder = cls(data, validation_data, input_shape=spec.input_shape,
                      output_units=None if data is not None else last.options["units"],
                      loss=loss, input_name=spec.input_name, **fit_options)
        if builder.output.options["units"] != last.options["units"]:
            raise ValueError(f"spec: its output layer has {last.options['units']} units; the "
                             f"data needs {builder.output.options['units']}")
        builder.output = Row("dense", last.name, dict(last.options))
        builder.rows = [Row(la.kind, la.name, dict(la.options)) for la in spec.layers[:-1]]
        builder._redraw_rows()
        return builder

    @classmethod
    def from_model(cls, model: Model, data: Any = None, validation_data: Any = None,
                   **fit_options: Any) -> ModelBuilder:
        """A builder holding a compiled model's spec, its compile row set from the model."""
        if not isinstance(model, Model) or model.spec is None:
            raise ValueError("model must be a Model compiled from a spec (xb.compile(spec)); "
                             f"got {model!r}")
        builder = cls.from_spec(model.spec, data, validation_data, loss=model.loss_function,
                                **fit_options)
        builder.optimizer.value, builder.learning_rate.value = model.optimizer, model.learning_rate
        builder.weight_decay.value, builder.device.value = model.weight_decay, model.device
        return builder

    # ----------------------------------------------------------------- the Python API
    @property
    def spec(self) -> Spec:
        """The last valid spec (while a row is bad, the spec before the bad edit)."""
        return self._spec

    @property
    def code(self) -> str:
        """Formatted Python that builds :attr:`spec`."""
        return self._spec.to_code()

    @property
    def errors(self) -> list[tuple[int, str]]:
        """``(row index, message)`` for every bad row; empty when the stack compiles."""
        return list(self._errors)

    @property
    def model(self) -> Model | None:
        """The model the last Compile made, or None."""
        return self._model

    @property
    def dashboard(self) -> TrainingDashboard | None:
        """The training dashboard of the last Compile (None without data or before it)."""
        return self._dashboard

    @property
    def out_of_date(self) -> bool:
        """True when the stack changed since the last Compile."""
        return self._model is not None and (bool(self._errors) or self._model.spec != self._spec)

    def summary(self) -> str:
        """The summary of the stack up to its first bad row (``Model.summary``'s table)."""
        return render_text(self._summary_rows())

    def add(self, kind: str, index: int | None = None, **options: Any) -> None:
        """Insert a ``kind`` layer at position ``index`` (None: just before the output layer).

        Options not given start at their defaults (units 32, filters 16, kernel_size 3).

        Raises:
            ValueError: for an unknown kind, an out-of-range index or a malformed option.
        """
        lk = kind_of(kind)
        index = len(self.rows) if index is None else self._index(index, "index", extra=1)
        name = options.pop("name", None)
        if name is None:
            count = sum(r.kind == kind for r in self.rows[:index])
            name = auto_name(kind, count, {r.name for r in self._stack()} | {self._start.input_name})
        row = Row(kind, check_name(name), self._starting_options(lk, name))
        row.options.update(lk.check_options(options, name))
        self.rows.insert(index, row)
        self._redraw_rows()

    def remove(self, index: int) -> None:
        """Delete the layer at ``index`` (the output layer stays)."""
        del self.rows[self._index(index, "index")]
        self._redraw_rows()

    def move(self, index: int, new_index: int) -> None:
        """Move the layer at ``index`` to ``new_index`` (both above the output layer)."""
        row = self.rows.pop(self._index(index, "index"))
        self.rows.insert(self._index(new_index, "new_index", size=len(self.rows) + 1), row)
        self._redraw_rows()

    def set(self, index: int, kind: str | None = None, **options: Any) -> None:
        """Change the options (and ``name``) of the layer at ``index``; with ``kind``, make
        it a layer of that kind (options not given start at their defaults)."""
        i = self._index(index, "index", extra=1, output=True)
        row = self._stack()[i]
        if row is self.output and (kind not in (None, "dense") or "units" in options):
            raise ValueError("index: the output layer stays a dense layer sized to the data; "
                             "set only its activation or name")
        name = check_name(options.pop("name", row.name))
        new_kind = row.kind if kind is None else kind_of(kind).kind
        lk = REGISTRY[new_kind]
        start = row.options if new_kind == row.kind else self._starting_options(lk, name)
        checked = lk.check_options(options, name)  # raises before anything changes
        row.name, row.kind, row.options = name, new_kind, {**start, **checked}
        self._redraw_rows()

    def load_preset(self, name: str) -> None:
        """Replace the hidden layers with a preset: ``"logistic_regression"``, ``"mlp"`` (the
        guide's MLP sized to the input) or ``"cnn"`` (image inputs only)."""
        self.rows = preset_rows(PRESETS.get(name, name), self.input_shape)
        self._redraw_rows()

    def compile(self, **compile_options: Any) -> Model:
        """Compile :attr:`spec` with the compile row's settings (``compile_options`` override
        them: loss, optimizer, learning_rate, weight_decay, device, seed) and, with data, open
        a :class:`TrainingDashboard` on it. The earlier ``(spec, model)`` stays in :attr:`runs`.

        Raises:
            ValueError: while a row is bad, or for an invalid compile option.
        """
        unknown = sorted(set(compile_options) - set(COMPILE_OPTIONS))
        if unknown:
            raise ValueError(f"compile_options: unknown option {unknown[0]!r}; the options are "
                             f"{', '.join(COMPILE_OPTIONS)}")
        if self._errors:
            raise ValueError("fix the stack before compiling: " + "; ".join(
                m for _, m in self._errors))
        widgets = self._compile_widgets()
        settings = {**{k: w.value for k, w in widgets.items()}, **compile_options}
        model = compile_spec(self._spec, **settings)
        for name, value in compile_options.items():
            if value is not None:
                widgets[name].value = value
        if self._dashboard is not None:
            self._dashboard.stop()
            self._dashboard.wait(60)
        self._model = model
        self.runs.append((self._spec, model))
        if self.data is not None:
            self._dashboard = TrainingDashboard(model, self.data,
                                                validation_data=self.validation_data,
                                                **self.fit_options)
            self.dashboard_box.children = [self._dashboard]
        earlier = self.runs_frame().iloc[:-1]
        self.runs_html.value = "" if earlier.empty else (
            "<b>earlier runs</b> (their models stay in <code>builder.runs</code>)"
            + earlier.to_html(index=False, float_format="{:.4f}".format, na_rep="–",
                              classes="xb-builder-runs-table"))
        self._refresh()
        return model

    def runs_frame(self) -> pd.DataFrame:
        """One row per Compile: its layers, parameters, epochs trained and last metrics.

        Example:
            >>> builder.runs_frame()[["run", "params", "val_accuracy"]]  # doctest: +SKIP
        """
        rows = []
        for run, (spec, model) in enumerate(self.runs, start=1):
            history = model.history
            last = history.iloc[-1] if len(history) else {}
            rows.append({"run": run, "layers": " → ".join(la.type_name for la in spec.layers),
                         "params": model.count_params(), "epochs": model.epochs_trained,
                         **{k: last[k] for k in RUN_METRICS if k in last}})
        return pd.DataFrame(rows)

    # ----------------------------------------------------------------- checks
    def _stack(self) -> list[Row]:
        return [*self.rows, self.output]

    def _index(self, index: Any, argname: str, extra: int = 0, output: bool = False,
               size: int | None = None) -> int:
        size = len(self.rows) + extra if size is None else size
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            where = "the layers above the output layer" if not output else "the layers"
            raise ValueError(f"{argname} must be an integer in [0, {size}) ({where}); "
                             f"got {index!r}")
        return index

    @staticmethod
    def _starting_options(lk: Any, name: str) -> dict:
        return lk.validate({o.name: STARTING_OPTIONS[o.name] for o in lk.options
                            if o.required}, name)

    def _check_stack(self) -> tuple[Spec, list[tuple[int, str]], list[tuple | None]]:
        """The spec up to the first bad row, every row's error, and each row's output shape."""
        spec, errors, shapes, ok = self._start, [], [], True
        seen = {self._start.input_name: "the input"}
        for i, row in enumerate(self._stack()):
            try:
                try:
                    check_name(row.name)
                except ValueError as exc:
                    raise ValueError(f"layer {i}: {exc}") from None
                if row.name in seen:
                    raise ValueError(f"layer {row.name!r}: the name is already used by "
                                     f"{seen[row.name]}")
                seen[row.name] = f"layer {i}"
                options = REGISTRY[row.kind].validate(row.options, row.name)
                if ok:
                    spec = spec.insert(len(spec.layers), row.kind, name=row.name, **options)
            except ValueError as exc:
                errors.append((i, str(exc)))
                ok = False
            shapes.append(spec.output_shape if ok else None)
        return spec, errors, shapes

    def _summary_rows(self) -> list[SummaryRow]:
        return self._preview.summary_rows()

    # ----------------------------------------------------------------- widgets
    def _build_controls(self) -> None:
        image = len(self.input_shape) == 4
        presets = [p for p, key in PRESETS.items() if key != "cnn" or image]
        self.preset = W.Dropdown(options=presets, value=presets[-1], description="preset",
                                 layout=W.Layout(width="260px"))
        self.preset_button = self._button("load preset", "xb-builder-preset", self._on_preset)
        self.preset_row = W.HBox([self.preset, self.preset_button, W.HTML(
            f"input <b>{html.escape(self._start.input_name)}</b> "
            f"{format_shape(self.input_shape)} · loss <b>{self.loss}</b>")])
        self.rows_box = W.VBox()
        self.rows_box.add_class("xb-builder-rows")
        self.add_kind = W.Dropdown(options=list(REGISTRY), value="dense", description="add",
                                   layout=W.Layout(width="200px"))
        self.add_kind.add_class("xb-builder-add-kind")
        self.add_after = W.Dropdown(description="after", layout=W.Layout(width="220px"))
        self.add_after.add_class("xb-builder-add-after")
        self.add_button = self._button("add layer", "xb-builder-add", self._on_add)
        self.add_row = W.HBox([self.add_kind, self.add_after, self.add_button])
        self.summary_html = W.HTML()
        self.summary_html.add_class("xb-builder-summary")
        self.params = W.HTML()
        self.params.add_class("xb-builder-params")
        self.diagram = W.HTML()
        self.diagram.add_class("xb-builder-diagram")
        self.views = W.HBox([W.VBox([self.params, self.summary_html]), self.diagram])
        self.show_code = W.ToggleButton(description="show code", value=False)
        self.show_code.add_class("xb-builder-code-toggle")
        self.show_code.observe(self._on_show_code, "value")
        self.code_box = W.Textarea(layout=W.Layout(width="640px", height="180px",
                                                   display="none"))
        self.code_box.add_class("xb-builder-code")
        self.copy_html = W.HTML(layout=W.Layout(display="none"))
        self.code_row = W.VBox([W.HBox([self.show_code, self.copy_html]), self.code_box])
        self.loss_choice = W.Dropdown(options=LOSSES, value=self.loss, description="loss")
        self.optimizer = W.Dropdown(options=OPTIMIZERS, value="adam", description="optimizer")
        self.learning_rate = W.BoundedFloatText(value=1e-3, min=1e-8, max=10.0, step=1e-4,
                                                description="learning rate")
        self.weight_decay = W.BoundedFloatText(value=0.0, min=0.0, max=1.0, step=1e-4,
                                               description="weight decay")
        self.device = W.Dropdown(options=available_devices(), value="cpu", description="device")
        self.seed = W.IntText(value=0, description="seed")
        for w in (self.loss_choice, self.optimizer, self.learning_rate, self.weight_decay,
                  self.device, self.seed):
            w.layout, w.style = W.Layout(width="210px"), {"description_width": "90px"}
        self.compile_button = self._button("Compile", "xb-builder-compile", self._on_compile,
                                           style="primary")
        self.compile_row = W.GridBox(
            [self.loss_choice, self.optimizer, self.learning_rate, self.weight_decay,
             self.device, self.seed, self.compile_button],
            layout=W.Layout(grid_template_columns="repeat(4, 220px)"))
        self.status = W.HTML()
        self.status.add_class("xb-builder-status")
        self.runs_html = W.HTML()
        self.runs_html.add_class("xb-builder-runs")
        self.dashboard_box = W.VBox()

    def _compile_widgets(self) -> dict[str, W.Widget]:
        return {"loss": self.loss_choice, "optimizer": self.optimizer,
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "device": self.device, "seed": self.seed}

    @staticmethod
    def _button(label: str, css: str, handler: Callable, style: str = "") -> W.Button:
        b = W.Button(description=label, button_style=style, layout=W.Layout(width="auto"))
        b.add_class(css)
        b.on_click(lambda _b: handler())
        return b

    def _option_widget(self, i: int, option: Option, value: Any) -> W.Widget:
        """The control for one option, generated from its schema."""
        common = {"description": option.name, "tooltip": option.help,
                  "style": {"description_width": "initial"}}
        if option.type is str:
            labels = [*([NONE_LABEL] if option.optional else []), *option.choices]
            w = W.Dropdown(options=labels, value=NONE_LABEL if value is None else value,
                           layout=W.Layout(width="180px"), **common)
        elif option.choices:
            w = W.Combobox(options=list(option.choices), value=str(value), ensure_option=False,
                           layout=W.Layout(width="150px"), **common)
        elif option.type is int:
            w = W.IntText(value=value, layout=W.Layout(width="140px"), **common)
        else:
            w = W.FloatText(value=value, step=0.05, layout=W.Layout(width="120px"), **common)
        w.add_class(f"xb-builder-option-{option.name}")
        w.observe(lambda change: self._on_option(i, option, change["new"]), "value")
        return w

    def _row_widget(self, i: int, row: Row) -> W.VBox:
        fixed = row is self.output
        kind = W.Dropdown(options=list(REGISTRY), value=row.kind, disabled=fixed,
                          layout=W.Layout(width="120px"))
        kind.add_class("xb-builder-kind")
        kind.observe(lambda change: self._on_kind(i, change["new"]), "value")
        name = W.Text(value=row.name, layout=W.Layout(width="120px"), continuous_update=False)
        name.add_class("xb-builder-name")
        name.observe(lambda change: self._on_name(i, change["new"]), "value")
        options = [self._option_widget(i, o, row.options.get(o.name, o.default))
                   for o in REGISTRY[row.kind].options
                   if not (fixed and o.name == "units")]
        if fixed:
            options.insert(0, W.HTML(f"units <b>{row.options['units']}</b> (sized to the data)"))
        last = len(self.rows) - 1
        buttons = [self._button(label, css, functools.partial(handler, i))
                   for label, css, handler in (("↑", "xb-builder-up", self._on_up),
                                               ("↓", "xb-builder-down", self._on_down),
                                               ("✕", "xb-builder-delete", self._on_delete))]
        buttons[0].disabled = fixed or i == 0
        buttons[1].disabled = fixed or i == last
        buttons[2].disabled = fixed
        shape, error = W.HTML(), W.HTML()
        shape.add_class("xb-builder-shape")
        error.add_class("xb-builder-error")
        shape.layout.width = "140px"
        controls = W.HBox([W.HTML(f"<b>{i}</b>", layout=W.Layout(width="20px")), kind, name,
                           *buttons, shape, *options],
                          layout=W.Layout(flex_flow="row wrap", align_items="center"))
        box = W.VBox([controls, error])
        box.add_class("xb-builder-row")
        box.controls, box.shape, box.error = controls, shape, error
        return box

    def _redraw_rows(self) -> None:
        """Rebuild the row widgets (after a structural edit), then refresh the views; the old
        ones are closed, so a long session does not pile up widgets in the kernel."""
        old = self.rows_box.children
        self.rows_box.children = [self._row_widget(i, r) for i, r in enumerate(self._stack())]
        for box in old:
            for widget in (*box.controls.children, box.controls, box.error, box):
                widget.close()
        choices = [(f"{i}: {r.name}", i) for i, r in enumerate(self.rows)]
        self.add_after.options = [(f"input: {self._start.input_name}", -1), *choices]
        self.add_after.value = len(self.rows) - 1
        self._refresh()

    def _refresh(self) -> None:
        """Recheck the stack and redraw summary, counts, shapes, diagram, code and status."""
        self._preview, self._errors, shapes = self._check_stack()
        if not self._errors:
            self._spec = self._preview
        bad = dict(self._errors)
        for i, (box, shape) in enumerate(zip(self.rows_box.children, shapes, strict=True)):
            box.shape.value = f"→ {format_shape(shape)}"
            box.error.value = (f"<span style='color:#b00020'>⚠ {html.escape(bad[i])}</span>"
                               if i in bad else "")
            box.layout.border = "1px solid #b00020" if i in bad else None
        total = self._preview.count_params()
        note = "" if not self._errors else (
            f" · <span style='color:#b00020'>shown up to layer {self._errors[0][0]}; "
            f"{len(self._errors)} layer(s) to fix</span>")
        self.params.value = (f"<b>Total params: {total:,}</b> · Trainable params: "
                             f"{total:,}{note}")
        self.summary_html.value = render_html(self._summary_rows())
        self.diagram.value = self._svg(shapes, bad)
        code = self.code
        self.code_box.value = code
        self.copy_html.value = (
            "<button class='xb-builder-copy' onclick='navigator.clipboard.writeText("
            f"this.dataset.code)' data-code=\"{html.escape(code)}\">copy</button>")
        self.compile_button.disabled = bool(self._errors)
        self.status.value = self._status_text()

    def _status_text(self) -> str:
        if self._errors:
            return ("<span style='color:#b00020'>Compile is off until every marked layer is "
                    "fixed</span>")
        if self._model is None:
            return "ready to compile"
        if self.out_of_date:
            return "<b>the stack changed since Compile: recompile to apply</b>"
        return f"compiled (run {len(self.runs)}): {self._model.count_params():,} params"

    def _svg(self, shapes: list[tuple | None], bad: dict[int, str]) -> str:
        """The stack as boxes with shapes, input at the top."""
        boxes = [(self._start.input_name, "Input", self.input_shape, False)] + [
            (r.name, REGISTRY[r.kind].type_name, s, i in bad)
            for i, (r, s) in enumerate(zip(self._stack(), shapes, strict=True))]
        height, width, gap = 34, 230, 14
        parts = []
        for j, (name, type_name, shape, is_bad) in enumerate(boxes):
            y = j * (height + gap)
            fill, stroke = ("#fde7ea", "#b00020") if is_bad else ("#eef3fb", "#4a6fa5")
            parts.append(
                f"<rect x='1' y='{y}' width='{width}' height='{height}' rx='6' fill='{fill}' "
                f"stroke='{stroke}'/><text x='10' y='{y + 14}' font-size='12' "
                f"font-weight='bold'>{html.escape(name)} · {type_name}</text>"
                f"<text x='10' y='{y + 28}' font-size='11'>{format_shape(shape)}</text>")
            if j:
                parts.append(f"<line x1='{width // 2}' y1='{y - gap}' x2='{width // 2}' y2='{y}' "
                             "stroke='#888'/>")
        total = len(boxes) * (height + gap)
        return (f"<svg class='xb-builder-svg' width='{width + 2}' height='{total}' "
                f"xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg>")

    # ----------------------------------------------------------------- handlers
    @_callback
    def _on_option(self, i: int, option: Option, value: Any) -> None:
        if option.type is str and option.optional and value == NONE_LABEL:
            value = None
        elif option.choices and option.type is int and value not in option.choices:
            value = int(value) if str(value).strip().isdigit() else value
        self._stack()[i].options[option.name] = value
        self._refresh()

    @_callback
    def _on_name(self, i: int, name: str) -> None:
        self._stack()[i].name = name
        self._redraw_rows()

    @_callback
    def _on_kind(self, i: int, kind: str) -> None:
        self.set(i, kind=kind)

    @_callback
    def _on_up(self, i: int) -> None:
        self.move(i, i - 1)

    @_callback
    def _on_down(self, i: int) -> None:
        self.move(i, i + 1)

    @_callback
    def _on_delete(self, i: int) -> None:
        self.remove(i)

    @_callback
    def _on_add(self) -> None:
        self.add(self.add_kind.value, index=self.add_after.value + 1)

    @_callback
    def _on_preset(self) -> None:
        self.load_preset(self.preset.value)

    @_callback
    def _on_compile(self) -> None:
        self.compile()

    def _on_show_code(self, change: dict) -> None:
        display = None if change["new"] else "none"
        self.code_box.layout.display = self.copy_html.layout.display = display
