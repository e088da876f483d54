"""``ModelBuilder``: assemble a network by clicking, see its shapes and cost, train it.

One row per layer (kind, options, name, move and delete buttons); every edit redraws the
summary, the parameter counts, the shape after each layer and a diagram of the stack, and
nothing touches torch until Compile. A stack that cannot work is accepted and marked: each
bad row says why, and Compile waits until it is fixed. The builder is a view of a
:class:`~exburn_nb.core.draft.Draft` (``builder.draft``), which holds the rows and does every
check; the option widgets come from the layer registry's schemas
(:mod:`exburn_nb.core.layers`), so a new layer kind needs no code here. Every click has a
Python twin (``add``, ``remove``, ``move``, ``set``, ``load_preset``, ``compile``).

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
from typing import Any

import ipywidgets as W
import pandas as pd

from ..base.vocabulary import LOSSES, OPTIMIZERS
from ..core.codegen import to_torch_code
from ..core.config import FIT_OPTIONS, FitConfig
from ..core.draft import PRESETS, Draft, Row
from ..core.layers import REGISTRY, Option
from ..core.model import Model, available_devices
from ..core.spec import Spec
from ..core.summary import format_shape, render_html
from .controls import error_html
from .dashboard import TrainingDashboard

NONE_LABEL = "none"
# The most layers from_spec takes: each layer is a row of about thirty widgets for the page to
# draw, and every edit re-checks the stack and refreshes each row's shape, the summary and the
# diagram (one add on a busy 2-core machine: 8 ms at 64 layers, 10 ms at 100, 21-28 ms at
# 200, 50 ms at 400; 0.24, 0.37, 0.7-1.1 and 2.0-2.3 s when an edit drew every row anew).
MAX_BUILDER_LAYERS = 64
RUN_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")


def _callback(method: Callable) -> Callable:
    """A widget handler that never raises: an error is shown in the builder's status line."""
    @functools.wraps(method)
    def run(self: ModelBuilder, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never raised into ipywidgets
            self.status.value = error_html(str(exc))
    return run


class _Place:
    """Where a row's widgets sit in the stack now; their handlers read it when they fire."""

    def __init__(self, index: int):
        self.index = index


def _drawn(row: Row) -> tuple:
    """What a row's widgets show: a row whose layer still reads the same keeps them."""
    return row.kind, row.name, repr(sorted(row.options.items()))


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
        self._init(Draft(data, input_shape=input_shape, output_units=output_units, loss=loss,
                         input_name=input_name), data, validation_data, fit_options)

    def _init(self, draft: Draft, data: Any, validation_data: Any,
              fit_options: dict[str, Any]) -> None:
        self.draft = draft
        self.data, self.validation_data = data, validation_data
        if data is not None and draft.loss == "cross_entropy":
            fit_options.setdefault("accuracy", True)
        self.fit_options = fit_options
        self.runs: list[tuple[Spec, Model]] = []
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

        A spec of more than :data:`MAX_BUILDER_LAYERS` layers is refused (edits would be slow).

        Example:
            >>> b = ModelBuilder.from_spec(xb.input("x", shape=(None, 4)).dense(3))  # doctest: +SKIP
        """
        if isinstance(spec, Spec) and len(spec.layers) > MAX_BUILDER_LAYERS:
            raise ValueError(f"spec has {len(spec.layers)} layers; the builder takes at most "
                             f"{MAX_BUILDER_LAYERS} (MAX_BUILDER_LAYERS: a row of widgets per "
                             "layer)")
        builder = cls.__new__(cls)
        builder._init(Draft.from_spec(spec, data, loss=loss), data, validation_data, fit_options)
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
        return self.draft.spec

    @property
    def code(self) -> str:
        """Formatted Python that builds :attr:`spec`."""
        return self.draft.code

    @property
    def errors(self) -> list[tuple[int, str]]:
        """``(row index, message)`` for every bad row; empty when the stack compiles."""
        return self.draft.errors

    @property
    def rows(self) -> list[Row]:
        """The hidden layers' rows (the draft's)."""
        return self.draft.rows

    @property
    def output(self) -> Row:
        """The output layer's row."""
        return self.draft.output

    @property
    def input_shape(self) -> tuple:
        """The input shape, ``(None, ...)``."""
        return self.draft.input_shape

    @property
    def loss(self) -> str:
        """The loss the output layer is sized for."""
        return self.draft.loss

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
        return self._model is not None and (bool(self.errors) or self._model.spec != self.spec)

    def summary(self) -> str:
        """The summary of the stack up to its first bad row (``Model.summary``'s table)."""
        return self.draft.summary()

    def add(self, kind: str, index: int | None = None, **options: Any) -> None:
        """Insert a ``kind`` layer at position ``index`` (None: just before the output
        layer); see :meth:`Draft.add <exburn_nb.core.draft.Draft.add>`.

        Example:
            >>> builder.add("dropout", rate=0.3)  # doctest: +SKIP
        """
        self.draft.add(kind, index, **options)
        self._redraw_rows()

    def remove(self, index: int) -> None:
        """Delete the layer at ``index`` (the output layer stays)."""
        self.draft.remove(index)
        self._redraw_rows()

    def move(self, index: int, new_index: int) -> None:
        """Move the layer at ``index`` to ``new_index`` (both above the output layer)."""
        self.draft.move(index, new_index)
        self._redraw_rows()

    def set(self, index: int, kind: str | None = None, **options: Any) -> None:
        """Change the options (and ``name``) of the layer at ``index``; with ``kind``, make
        it a layer of that kind (options not given start at their defaults)."""
        self.draft.set(index, kind, **options)
        self._redraw_rows()

    def load_preset(self, name: str) -> None:
        """Replace the hidden layers with a preset: ``"logistic_regression"``, ``"mlp"`` (the
        guide's MLP sized to the input) or ``"cnn"`` (image inputs only)."""
        self.draft.load_preset(name)
        self._redraw_rows()

    def compile(self, **compile_options: Any) -> Model:
        """Compile :attr:`spec` with the compile row's settings (``compile_options`` override
        them: loss, optimizer, learning_rate, weight_decay, device, seed) and, with data, open
        a :class:`TrainingDashboard` on it. The earlier ``(spec, model)`` stays in :attr:`runs`.

        Raises:
            ValueError: while a row is bad, or for an invalid compile option.
        """
        widgets = self._compile_widgets()
        model = self.draft.compile(**{**{k: w.value for k, w in widgets.items()},
                                      **compile_options})
        for name, value in compile_options.items():
            if value is not None:
                widgets[name].value = value
        if self._dashboard is not None:
            self._dashboard.stop()
            self._dashboard.wait(60)
        self._model = model
        self.runs.append((self.spec, model))
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

    # ----------------------------------------------------------------- widgets
    def _build_controls(self) -> None:
        image = len(self.input_shape) == 4
        presets = [p for p, key in PRESETS.items() if key != "cnn" or image]
        self.preset = W.Dropdown(options=presets, value=presets[-1], description="preset",
                                 layout=W.Layout(width="260px"))
        self.preset_button = self._button("load preset", "xb-builder-preset", self._on_preset)
        self.preset_row = W.HBox([self.preset, self.preset_button, W.HTML(
            f"input <b>{html.escape(self.draft.input_name)}</b> "
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
        self.code_box = W.Textarea(layout=W.Layout(width="640px", max_width="100%",
                                                   height="180px", display="none"))
        self.code_box.add_class("xb-builder-code")
        self.copy_html = W.HTML(layout=W.Layout(display="none"))
        self.torch_code_box = W.Textarea(layout=W.Layout(width="640px", max_width="100%",
                                                         height="180px", display="none"))
        self.torch_code_box.add_class("xb-builder-torch-code")
        self.code_tabs = W.Tab([self.code_box, self.torch_code_box],
                               titles=("exburn_nb", "PyTorch"),
                               layout=W.Layout(display="none"))
        self.code_row = W.VBox([W.HBox([self.show_code, self.copy_html]), self.code_tabs])
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
            w.observe(lambda _change: self._refresh_torch_code(), "value")
        self.compile_button = self._button("Compile", "xb-builder-compile", self._on_compile,
                                           style="primary")
        self.compile_row = W.GridBox(
            [self.loss_choice, self.optimizer, self.learning_rate, self.weight_decay,
             self.device, self.seed, self.compile_button],
            # as many 220 px columns as fit: fewer in a narrow cell, never cut at the right
            layout=W.Layout(grid_template_columns="repeat(auto-fill, 220px)", max_width="100%"))
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
    def _button(label: str, css: str, handler: Callable, style: str = "",
                tooltip: str = "") -> W.Button:
        b = W.Button(description=label, button_style=style, tooltip=tooltip,
                     layout=W.Layout(width="auto"))
        b.add_class(css)
        b.on_click(lambda _b: handler())
        return b

    def _option_widget(self, place: _Place, option: Option, value: Any) -> W.Widget:
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
            # a FloatText: an IntText drops a typed dot ("12.7" became 127); 12.7 reaches
            # the draft as typed and the row says "units must be an integer ..."
            w = W.FloatText(value=value, step=1, layout=W.Layout(width="140px"), **common)
        else:
            w = W.FloatText(value=value, step=0.05, layout=W.Layout(width="120px"), **common)
        w.add_class(f"xb-builder-option-{option.name}")
        w.observe(lambda change: self._on_option(place.index, option, change["new"]), "value")
        return w

    def _row_widget(self, row: Row, i: int) -> W.VBox:
        """The widgets of one row, at position ``i``; they act on the row wherever edits
        move it (each handler reads the row's position when it fires)."""
        fixed = row is self.draft.output
        place = _Place(i)
        kind = W.Dropdown(options=list(REGISTRY), value=row.kind, disabled=fixed,
                          layout=W.Layout(width="120px"))
        kind.add_class("xb-builder-kind")
        kind.observe(lambda change: self._on_kind(place.index, change["new"]), "value")
        name = W.Text(value=row.name, layout=W.Layout(width="120px"), continuous_update=False)
        name.add_class("xb-builder-name")
        name.observe(lambda change: self._on_name(place.index, change["new"]), "value")
        options = [self._option_widget(place, o, row.options.get(o.name, o.default))
                   for o in REGISTRY[row.kind].options
                   if not (fixed and o.name == "units")]
        if fixed:
            options.insert(0, W.HTML(f"units <b>{row.options['units']}</b> (sized to the data)"))
        buttons = [self._button(label, css, lambda handler=handler: handler(place.index),
                                tooltip=tip)
                   for label, css, handler, tip in (
                       ("↑", "xb-builder-up", self._on_up, "move layer up"),
                       ("↓", "xb-builder-down", self._on_down, "move layer down"),
                       ("✕", "xb-builder-delete", self._on_delete, "remove layer"))]
        buttons[2].disabled = fixed
        shape, error = W.HTML(), W.HTML()
        shape.add_class("xb-builder-shape")
        error.add_class("xb-builder-error")
        shape.layout.width = "140px"
        number = W.HTML(layout=W.Layout(width="20px"))
        controls = W.HBox([number, kind, name, *buttons, shape, *options],
                          layout=W.Layout(flex_flow="row wrap", align_items="center"))
        box = W.VBox([controls, error])
        box.add_class("xb-builder-row")
        box.controls, box.shape, box.error = controls, shape, error
        box.number, box.arrows, box.place = number, buttons[:2], place
        box.row, box.drawn = row, _drawn(row)
        self._place_row(box, i)
        return box

    def _place_row(self, box: W.VBox, i: int) -> None:
        """Put a row's widgets at position ``i``: its number, its arrows, its handlers."""
        fixed = box.row is self.draft.output
        box.place.index = i
        box.number.value = f"<b>{i}</b>"
        up, down = box.arrows
        up.disabled = fixed or i == 0
        down.disabled = fixed or i == len(self.rows) - 1

    def _keep_typed(self, i: int) -> None:
        """Row ``i`` took a value typed into its widgets: they show it already and stay."""
        box = self.rows_box.children[i]
        box.drawn = _drawn(box.row)

    def _redraw_rows(self) -> None:
        """Show the draft's rows (after a structural edit), then refresh the views.

        A row whose layer is as it was drawn keeps its widgets (only its number and arrows
        follow it): an edit sends the rows it adds or changes, not the whole stack. The
        widgets of the rows that went or changed are closed, so a long session does not pile
        up widgets in the kernel."""
        drawn = {id(box.row): box for box in self.rows_box.children}
        rows, gone = [], []
        for i, row in enumerate(self.draft.stack()):
            box = drawn.pop(id(row), None)
            if box is not None and box.drawn == _drawn(row):
                self._place_row(box, i)
            else:
                gone += [box] if box is not None else []
                box = self._row_widget(row, i)
            rows.append(box)
        self.rows_box.children = rows
        for box in [*gone, *drawn.values()]:
            for widget in (*box.controls.children, box.controls, box.error, box):
                widget.close()
        choices = [(f"{i}: {r.name}", i) for i, r in enumerate(self.rows)]
        self.add_after.options = [(f"input: {self.draft.input_name}", -1), *choices]
        self.add_after.value = len(self.rows) - 1
        self._refresh()

    def _refresh(self) -> None:
        """Redraw summary, counts, shapes, diagram, code and status from the draft."""
        errors, shapes, preview = self.draft.errors, self.draft.shapes, self.draft.preview
        bad = dict(errors)
        for i, (box, shape) in enumerate(zip(self.rows_box.children, shapes, strict=True)):
            box.shape.value = f"→ {format_shape(shape)}"
            box.error.value = error_html(f"⚠ {bad[i]}") if i in bad else ""
            box.layout.border = "1px solid #b00020" if i in bad else None
        total = preview.count_params()
        note = "" if not errors else (
            f" · <span style='color:#b00020'>shown up to layer {errors[0][0]}; "
            f"{len(errors)} layer(s) to fix</span>")
        self.params.value = (f"<b>Total params: {total:,}</b> · Trainable params: "
                             f"{total:,}{note}")
        self.summary_html.value = render_html(self.draft.summary_rows())
        self.diagram.value = self._svg(shapes, bad)
        code = self.code
        self.code_box.value = code
        self.copy_html.value = (
            "<button class='xb-builder-copy' onclick='navigator.clipboard.writeText("
            f"this.dataset.code)' data-code=\"{html.escape(code)}\">copy</button>")
        self._refresh_torch_code()
        self.compile_button.disabled = bool(errors)
        self.status.value = self._status_text()

    def _status_text(self) -> str:
        if self.draft.errors:
            return ("<span style='color:#b00020'>Compile is off until every marked layer is "
                    "fixed</span>")
        if self._model is None:
            return "ready to compile"
        if self.out_of_date:
            return "<b>the stack changed since Compile: recompile to apply</b>"
        return f"compiled (run {len(self.runs)}): {self._model.count_params():,} params"

    def _svg(self, shapes: list[tuple | None], bad: dict[int, str]) -> str:
        """The stack as boxes with shapes, input at the top."""
        boxes = [(self.draft.input_name, "Input", self.input_shape, False)] + [
            (r.name, REGISTRY[r.kind].type_name, s, i in bad)
            for i, (r, s) in enumerate(zip(self.draft.stack(), shapes, strict=True))]
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
        elif option.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # the field is a FloatText; 12.7 stays 12.7 (and is refused)
        self.draft.set_option(i, option.name, value)
        self._keep_typed(i)
        self._refresh()

    @_callback
    def _on_name(self, i: int, name: str) -> None:
        self.draft.rename(i, name)
        self._keep_typed(i)
        self._redraw_rows()  # the "after" choices show the names

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

    def _refresh_torch_code(self) -> None:
        """The PyTorch tab: :attr:`spec` as a plain PyTorch script, with the compile row's
        settings and the fit options (:func:`~exburn_nb.core.codegen.to_torch_code`)."""
        fit = {k: v for k, v in self.fit_options.items() if k in FIT_OPTIONS}
        try:
            self.torch_code_box.value = to_torch_code(
                self.spec, FitConfig.from_options(**fit),
                **{k: w.value for k, w in self._compile_widgets().items()})
        except ValueError as exc:
            self.torch_code_box.value = f"# no PyTorch code for this draft: {exc}"

    def _on_show_code(self, change: dict) -> None:
        display = None if change["new"] else "none"
        self.code_box.layout.display = self.copy_html.layout.display = display
        self.torch_code_box.layout.display = self.code_tabs.layout.display = display
