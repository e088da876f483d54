"""A network being edited: layer rows that may be invalid while a person types, checked
at every edit, with the reason for each bad row; presets; the code that builds it.

No widgets here: :class:`~exburn_nb.widgets.ModelBuilder` is a view of a :class:`Draft`
(every click calls one of its methods), and a script or a test edits one directly. The
option checks come from the layer registry (:mod:`exburn_nb.core.layers`), so a new
layer kind needs no code here.

Example:
    >>> d = Draft(input_shape=(None, 64), output_units=10)
    >>> d.add("dense", units=32, activation="relu")
    >>> d.spec.output_shape, d.errors
    ((None, 10), [])
    >>> d.set_option(0, "units", 0)  # accepted and marked: Compile waits until it is fixed
    >>> d.errors
    [(0, "layer 'dense_1' (Dense): units must be an integer >= 1; got 0")]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base.vocabulary import LOSSES
from .config import COMPILE_OPTIONS
from .layers import REGISTRY, kind_of
from .model import Model
from .model import compile as compile_spec
from .spec import Spec, auto_name, check_name
from .spec import input as spec_input
from .summary import SummaryRow, render_text

PRESETS = {"logistic regression": "logistic_regression", "MLP": "mlp", "small CNN": "cnn"}
# The options a new layer starts with where its kind has no default (units, filters, ...).
STARTING_OPTIONS = {"units": 32, "filters": 16, "kernel_size": 3, "fn": "relu"}
# What a draft's compile takes: xb.compile's options, less the input shape (the draft's own).
DRAFT_COMPILE_OPTIONS = tuple(o for o in COMPILE_OPTIONS if o != "input_shape")
OUTPUT_NAME = "output"


@dataclass
class Row:
    """One layer as a draft holds it: its options may be invalid while being edited.

    Example:
        >>> Row("dense", "hidden", {"units": 8}).kind
        'dense'
    """

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
    """The hidden layers of a preset for this input shape (the output layer comes after).

    Example:
        >>> [r.kind for r in preset_rows("mlp", (None, 64))]
        ['dense', 'dropout', 'dense', 'dropout']
    """
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


class Draft:
    """A network being edited: hidden layer rows, then a dense output layer sized to the
    data; every edit rechecks the stack.

    The checked methods (:meth:`add`, :meth:`set`, :meth:`remove`, :meth:`move`,
    :meth:`load_preset`) raise ``ValueError`` on a malformed call and change nothing then;
    :meth:`set_option` and :meth:`rename` take any value, as a person types it, and a row
    that cannot work is marked in :attr:`errors` until it is fixed.

    Args:
        data: optional ``(x, y)``: the input shape and the output layer (units, loss) are
            inferred from it.
        input_shape: ``(None, ...)``, when there is no data.
        output_units: the output layer's width, when there is no data.
        loss: the loss (inferred from ``y`` when left out; else ``cross_entropy``).
        input_name: the input layer's name.

    Example:
        >>> d = Draft(input_shape=(None, 4), output_units=3)
        >>> d.load_preset("mlp"); len(d.rows), d.spec.output_shape
        (4, (None, 3))
    """

    def __init__(self, data: Any = None, *, input_shape: tuple | None = None,
                 output_units: int | None = None, loss: str | None = None,
                 input_name: str = "input"):
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
        self.start = spec_input(input_name, shape=tuple(input_shape))
        self.input_shape, self.input_name = self.start.input_shape, input_name
        self.loss = loss or "cross_entropy"
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.output = Row("dense", OUTPUT_NAME, REGISTRY["dense"].validate(
            {"units": output_units}, OUTPUT_NAME))
        self.rows: list[Row] = []
        self._spec: Spec = self.start
        self.recheck()

    @classmethod
    def from_spec(cls, spec: Spec, data: Any = None, *, loss: str | None = None) -> Draft:
        """A draft holding ``spec``; its last layer, a dense one, is the output layer.

        Example:
            >>> [r.kind for r in Draft.from_spec(spec_input("x", shape=(None, 4)).dense(8).dense(3)).rows]
            ['dense']
        """
        if not isinstance(spec, Spec) or not spec.layers or spec.layers[-1].kind != "dense":
            raise ValueError("spec must be an exburn_nb spec whose last layer is a dense output "
                             f"layer; got {spec!r}")
        last = spec.layers[-1]
        draft = cls(data, input_shape=spec.input_shape,
                    output_units=None if data is not None else last.options["units"],
                    loss=loss, input_name=spec.input_name)
        if draft.output.options["units"] != last.options["units"]:
            raise ValueError(f"spec: its output layer has {last.options['units']} units; the "
                             f"data needs {draft.output.options['units']}")
        draft.output = Row("dense", last.name, dict(last.options))
        draft.rows = [Row(la.kind, la.name, dict(la.options)) for la in spec.layers[:-1]]
        draft.recheck()
        return draft

    # ----------------------------------------------------------------- what it says
    @property
    def spec(self) -> Spec:
        """The last valid spec (while a row is bad, the spec before the bad edit)."""
        return self._spec

    @property
    def preview(self) -> Spec:
        """The spec up to the first bad row (all of it when every row is good)."""
        return self._preview

    @property
    def code(self) -> str:
        """Formatted Python that builds :attr:`spec`."""
        return self._spec.to_code()

    @property
    def errors(self) -> list[tuple[int, str]]:
        """``(row index, message)`` for every bad row; empty when the stack compiles."""
        return list(self._errors)

    @property
    def shapes(self) -> list[tuple | None]:
        """The output shape after each row of :meth:`stack` (None from the first bad row)."""
        return list(self._shapes)

    def stack(self) -> list[Row]:
        """Every row, the output layer last."""
        return [*self.rows, self.output]

    def summary_rows(self) -> list[SummaryRow]:
        """The summary table's rows for :attr:`preview`."""
        return self._preview.summary_rows()

    def summary(self) -> str:
        """The summary of the stack up to its first bad row (``Model.summary``'s table)."""
        return render_text(self.summary_rows())

    # ----------------------------------------------------------------- checked edits
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
            name = auto_name(kind, count, {r.name for r in self.stack()} | {self.input_name})
        row = Row(kind, check_name(name), self._starting_options(lk, name))
        row.options.update(lk.check_options(options, name))
        self.rows.insert(index, row)
        self.recheck()

    def remove(self, index: int) -> None:
        """Delete the layer at ``index`` (the output layer stays)."""
        del self.rows[self._index(index, "index")]
        self.recheck()

    def move(self, index: int, new_index: int) -> None:
        """Move the layer at ``index`` to ``new_index`` (both above the output layer)."""
        row = self.rows.pop(self._index(index, "index"))
        self.rows.insert(self._index(new_index, "new_index", size=len(self.rows) + 1), row)
        self.recheck()

    def set(self, index: int, kind: str | None = None, **options: Any) -> None:
        """Change the options (and ``name``) of the layer at ``index``; with ``kind``, make
        it a layer of that kind (options not given start at their defaults)."""
        i = self._index(index, "index", extra=1, output=True)
        row = self.stack()[i]
        if row is self.output and (kind not in (None, "dense") or "units" in options):
            raise ValueError("index: the output layer stays a dense layer sized to the data; "
                             "set only its activation or name")
        name = check_name(options.pop("name", row.name))
        new_kind = row.kind if kind is None else kind_of(kind).kind
        lk = REGISTRY[new_kind]
        start = row.options if new_kind == row.kind else self._starting_options(lk, name)
        checked = lk.check_options(options, name)  # raises before anything changes
        row.name, row.kind, row.options = name, new_kind, {**start, **checked}
        self.recheck()

    def load_preset(self, name: str) -> None:
        """Replace the hidden layers with a preset: ``"logistic_regression"``, ``"mlp"`` (the
        guide's MLP sized to the input) or ``"cnn"`` (image inputs only); the labels of
        :data:`PRESETS` work too."""
        self.rows = preset_rows(PRESETS.get(name, name), self.input_shape)
        self.recheck()

    # ----------------------------------------------------------------- edits as typed
    def set_option(self, index: int, option: str, value: Any) -> None:
        """Set one option of the row at ``index`` as typed: a bad value marks the row."""
        self.stack()[self._index(index, "index", extra=1, output=True)].options[option] = value
        self.recheck()

    def rename(self, index: int, name: str) -> None:
        """Rename the row at ``index`` as typed: a bad or taken name marks the row."""
        self.stack()[self._index(index, "index", extra=1, output=True)].name = name
        self.recheck()

    # ----------------------------------------------------------------- compile
    def compile(self, **compile_options: Any) -> Model:
        """``xb.compile(self.spec, **compile_options)`` (loss, optimizer, learning_rate,
        weight_decay, device, seed; the draft's loss by default).

        Raises:
            ValueError: while a row is bad, or for an unknown or invalid option.

        Example:
            >>> Draft(input_shape=(None, 4), output_units=2).compile(seed=0).count_params()
            10
        """
        check_compile_options(compile_options)
        if self._errors:
            raise ValueError("fix the stack before compiling: " + "; ".join(
                m for _, m in self._errors))
        return compile_spec(self._spec, **{"loss": self.loss, **compile_options})

    # ----------------------------------------------------------------- checks
    def recheck(self) -> None:
        """Check every row again: the spec up to the first bad row, each row's error and
        output shape; :attr:`spec` follows when every row is good."""
        spec, errors, shapes, ok = self.start, [], [], True
        seen = {self.input_name: "the input"}
        for i, row in enumerate(self.stack()):
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
                if ok:  # past a limit (MAX_UNITS, MAX_PARAMS, ...) the row is bad, unbuilt
                    spec = spec.insert(len(spec.layers), row.kind, name=row.name,
                                       **options).check_limits()
            except ValueError as exc:
                errors.append((i, str(exc)))
                ok = False
            shapes.append(spec.output_shape if ok else None)
        self._preview, self._errors, self._shapes = spec, errors, shapes
        if not errors:
            self._spec = spec

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


def check_compile_options(options: dict[str, Any]) -> None:
    """Refuse an option name that a draft's compile does not take.

    Example:
        >>> check_compile_options({"momentum": 0.9})
        Traceback (most recent call last):
        ...
        ValueError: compile_options: unknown option 'momentum'; the options are loss, optimizer, learning_rate, device, weight_decay, seed
    """
    unknown = sorted(set(options) - set(DRAFT_COMPILE_OPTIONS))
    if unknown:
        raise ValueError(f"compile_options: unknown option {unknown[0]!r}; the options are "
                         f"{', '.join(DRAFT_COMPILE_OPTIONS)}")
