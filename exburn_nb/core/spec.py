"""Model specs: an immutable, chainable description of a network.

A spec is data, not weights: it round-trips through JSON and Python code, infers every
layer's output shape and parameter count, and builds a ``torch.nn.Module`` whose children
keep the layer names, so parameter names are ``<layer>.weight`` and ``<layer>.bias``. What
each layer kind accepts and computes lives in :mod:`exburn_nb.core.layers`; the spec asks
the kind for everything, so a newly registered kind chains as ``spec.<kind>(...)`` even
without a builder method of its own here.

Example:
    >>> import exburn_nb as xb
    >>> spec = (xb.input("input", shape=(None, 784))
    ...         .dense(256, activation="relu", name="hidden1")
    ...         .dropout(rate=0.2)
    ...         .dense(10, name="output"))
    >>> spec.output_shape
    (None, 10)
    >>> xb.Spec.from_json(spec.to_json()) == spec
    True
    >>> spec.remove("dropout_1").insert(1, "batch_norm").layers[1].name
    'batch_norm_1'
"""

from __future__ import annotations

import inspect
import json
import math
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from ..io.persist import MAX_LAYERS, parse_json
from .layers import (  # noqa: F401 - re-exported: the spec's public vocabulary
    ACTIVATIONS,
    REGISTRY,
    Conv2D,
    Dense,
    Dropout,
    Layer,
    LayerKind,
    Shape,
    init_weights,
    kind_of,
    make_activation,
    py_literal,
)
from .summary import SummaryRow, format_shape, render_html, render_text

FORMAT = "exburn_nb.spec/1"
# What a spec read from JSON (:meth:`Spec.from_json`, shared text) may describe; MAX_LAYERS
# (10,000) is the model files' own limit. One sample's values at any layer (the input
# included): 2**24 float32 values are 64 MiB per sample. Parameters: 300 million float32
# are 1.2 GB of weights; training with Adam measured 19.5 bytes per parameter (a 25M-
# parameter MLP after one step: weights, gradients, two moments), about 5.9 GB here, so a
# 24 GiB laptop holds the run with room for data and a few copies of the weights.
MAX_UNITS = 2**24
MAX_PARAMS = 300_000_000


def auto_name(kind: str, count: int, taken: Any) -> str:
    """The name a spec gives an unnamed layer: ``<kind>_<n>``, ``n`` one more than the
    ``count`` layers of this kind before it, skipping names in ``taken``.

    Example:
        >>> auto_name("dense", 1, {"dense_2"})
        'dense_3'
    """
    n = count + 1
    while f"{kind}_{n}" in taken:
        n += 1
    return f"{kind}_{n}"


def check_name(name: Any, taken: Any = ()) -> str:
    """``name`` if it is a Python identifier not in ``taken``; ValueError otherwise."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier such as 'hidden1'; got {name!r}")
    if name in taken:
        raise ValueError(f"name {name!r} is already used by another layer; "
                         f"names in use: {sorted(taken)}")
    return name


class _NameTable:
    """Layer name -> position, shared by a chain of specs that extend one another.

    Only the spec at the chain's tip (``size`` layers) extends it in place; any other spec
    that appends copies its own prefix first. So every spec sharing a table is a prefix of
    the tip, and a name is one of its layers exactly when its position is below its length.
    """

    def __init__(self, table: dict[str, int], size: int = 0):
        self.table, self.size = table, size
        self.lock = threading.Lock()


class _Names:
    """The names in use in the first ``length`` layers (plus the input's), for ``in`` tests."""

    def __init__(self, positions: _NameTable, length: int):
        self.positions, self.length = positions, length

    def __contains__(self, name: object) -> bool:
        return self.positions.table.get(name, self.length) < self.length

    def __iter__(self) -> Iterator[str]:
        return (n for n, i in self.positions.table.items() if i < self.length)

    def extended(self, name: str) -> _NameTable:
        """The table for a spec of ``length + 1`` layers whose last one is ``name``."""
        p = self.positions
        with p.lock:
            if p.size == self.length:
                p.table[name], p.size = self.length, self.length + 1
                return p
        own = {n: i for n, i in p.table.items() if i < self.length}
        own[name] = self.length
        return _NameTable(own, self.length + 1)


class Spec:
    """An immutable model spec; every builder method returns a new spec.

    Build one with :func:`input`, then chain layers. Shapes are channels-first, as in
    PyTorch: images are ``(None, channels, height, width)``. Building is linear in the
    number of layers: each new spec carries the shapes already inferred.
    """

    def __init__(self, input_name: str, input_shape: Shape, layers: tuple[Layer, ...] = ()):
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        self.layers = tuple(layers)
        self._shapes = self._infer_from(0, ())

    @classmethod
    def _make(cls, input_name: str, input_shape: Shape, layers: tuple[Layer, ...],
              shapes: tuple[Shape, ...]) -> Spec:
        spec = cls.__new__(cls)
        spec.input_name, spec.input_shape, spec.layers = input_name, input_shape, layers
        spec._shapes = shapes
        return spec

    def _infer_from(self, start: int, known: tuple[Shape, ...]) -> tuple[Shape, ...]:
        """``known`` (the shapes of layers before ``start``) plus those inferred after it."""
        shapes = list(known)
        shape = shapes[-1] if shapes else self.input_shape
        for layer in self.layers[start:]:
            shape = REGISTRY[layer.kind].output_shape(layer, shape)
            shapes.append(shape)
        return tuple(shapes)

    def _with_layers(self, layers: tuple[Layer, ...], changed_from: int) -> Spec:
        spec = Spec._make(self.input_name, self.input_shape, layers, ())
        spec._shapes = spec._infer_from(changed_from, self._shapes[:changed_from])
        return spec

    # ----------------------------------------------------------------- builder methods
    def dense(self, units: int, activation: str | None = None, name: str | None = None) -> Spec:
        """A fully connected layer (Glorot-uniform weights, zero bias) on the last axis; an
        image ``(None, C, H, W)`` needs :meth:`flatten` first."""
        return self._add("dense", name, units=units, activation=activation)

    def dropout(self, rate: float = 0.5, name: str | None = None) -> Spec:
        """Zeroes inputs with probability ``rate`` while training; identity at inference."""
        return self._add("dropout", name, rate=rate)

    def activation(self, fn: str, name: str | None = None) -> Spec:
        """A standalone activation layer, one of :data:`ACTIVATIONS`."""
        return self._add("activation", name, fn=fn)

    def flatten(self, name: str | None = None) -> Spec:
        """Flattens everything but the batch dimension."""
        return self._add("flatten", name)

    def batch_norm(self, name: str | None = None) -> Spec:
        """Batch normalisation over features (rank 2) or channels (rank 4)."""
        return self._add("batch_norm", name)

    def conv2d(self, filters: int, kernel_size: int, stride: int = 1, padding: str | int = "same",
               activation: str | None = None, name: str | None = None) -> Spec:
        """A 2-D convolution on ``(None, channels, height, width)`` inputs.

        ``padding`` is ``"same"`` (output size ``ceil(size / stride)``), ``"valid"`` or an int.
        """
        return self._add("conv2d", name, filters=filters, kernel_size=kernel_size, stride=stride,
                         padding=padding, activation=activation)

    def max_pool2d(self, pool_size: int = 2, name: str | None = None) -> Spec:
        """Max pooling over ``pool_size`` x ``pool_size`` windows (stride = pool_size)."""
        return self._add("max_pool2d", name, pool_size=pool_size)

    def _builder(self, kind: LayerKind) -> Callable[..., Spec]:
        """The builder method of a kind that has none above: ``.<kind>(*options, name=None,
        **options)``, positional options as :meth:`LayerKind.call_options` reads them."""
        def add(*args: Any, name: str | None = None, **options: Any) -> Spec:
            return self._add(kind.kind, name, **kind.call_options(args, options))

        add.__name__, add.__doc__ = kind.kind, kind.help
        add.__signature__ = inspect.Signature(  # what Jupyter shows for spec.<kind>(
            [inspect.Parameter(o.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               default=inspect.Parameter.empty if o.required else o.default)
             for o in kind.positional]
            + [inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None)],
            return_annotation=Spec)
        return add

    def _new_layer(self, kind: str, name: str | None, options: dict,
                   others: tuple[Layer, ...]) -> Layer:
        """A validated layer that may join ``others`` (for its auto name and uniqueness)."""
        lk = kind_of(kind)
        if others is self.layers:  # appending: the names and counts are carried along
            taken, count = self._taken(), self._counts().get(kind, 0)
        else:
            taken = {la.name for la in others} | {self.input_name}
            count = operator.countOf(map(operator.attrgetter("kind"), others), kind)
        if name is None:
            name = auto_name(kind, count, taken)
        check_name(name, taken)
        return Layer(kind, name, lk.validate(options, name))

    def _add(self, kind: str, name: str | None, **options: Any) -> Spec:
        layer = self._new_layer(kind, name, options, self.layers)
        shape = REGISTRY[kind].output_shape(layer, self.output_shape)
        spec = Spec._make(self.input_name, self.input_shape, self.layers + (layer,),
                          self._shapes + (shape,))
        spec._kind_counts = {**self._counts(), kind: self._counts().get(kind, 0) + 1}
        spec._positions = self._taken().extended(layer.name)
        return spec

    def _counts(self) -> dict[str, int]:
        """How many layers of each kind the spec has (carried from spec to spec)."""
        if getattr(self, "_kind_counts", None) is None:
            self._kind_counts = {}
            for la in self.layers:
                self._kind_counts[la.kind] = self._kind_counts.get(la.kind, 0) + 1
        return self._kind_counts

    def _taken(self) -> _Names:
        """The names in use, shared with the specs this one extends (chaining stays linear)."""
        positions = getattr(self, "_positions", None)
        if positions is None:
            positions = _NameTable({self.input_name: -1})
            for i, la in enumerate(self.layers):
                positions.table[la.name] = i
            positions.size = len(self.layers)
            self._positions = positions
        return _Names(positions, len(self.layers))

    # ----------------------------------------------------------------- editing
    def index(self, index_or_name: int | str, argname: str = "index_or_name") -> int:
        """The position of a layer given by position (negative counts from the end) or name.

        Example:
            >>> xb.input("x", shape=(None, 2)).dense(3, name="h").index("h")  # doctest: +SKIP
            0
        """
        n = len(self.layers)
        if isinstance(index_or_name, str):
            for i, layer in enumerate(self.layers):
                if layer.name == index_or_name:
                    return i
            raise ValueError(f"{argname}: no layer is named {index_or_name!r}; the layers are "
                             f"{[la.name for la in self.layers]}")
        if isinstance(index_or_name, bool) or not isinstance(index_or_name, int) \
                or not -n <= index_or_name < n:
            raise ValueError(f"{argname} must be a layer name or an integer in [{-n}, {n}) for "
                             f"this {n}-layer spec; got {index_or_name!r}")
        return index_or_name % n

    def insert(self, index: int, kind: str, **options: Any) -> Spec:
        """A new spec with a ``kind`` layer at position ``index`` (``len(spec.layers)``
        appends); ``options`` are the layer's, ``name`` included.

        Example:
            >>> spec.insert(1, "dropout", rate=0.1)  # doctest: +SKIP
        """
        n = len(self.layers)
        if isinstance(index, bool) or not isinstance(index, int) or not -n <= index <= n:
            raise ValueError(f"index must be an integer in [{-n}, {n}] for this {n}-layer "
                             f"spec; got {index!r}")
        index = n + index if index < 0 else index  # as list.insert
        if index == n:
            return self._add(kind, options.pop("name", None), **options)
        layer = self._new_layer(kind, options.pop("name", None), options, self.layers)
        return self._with_layers(self.layers[:index] + (layer,) + self.layers[index:], index)

    def remove(self, index_or_name: int | str) -> Spec:
        """A new spec without one layer, given by position or name.

        Raises:
            ValueError: when the layer after it cannot take the new input shape.
        """
        i = self.index(index_or_name)
        return self._with_layers(self.layers[:i] + self.layers[i + 1:], i)

    def replace(self, index_or_name: int | str, kind: str | None = None, **options: Any) -> Spec:
        """A new spec with one layer changed: new options over the old ones, or, with a
        different ``kind``, a new layer (defaults for options not given) under the same name.

        Example:
            >>> spec.replace("hidden1", units=128)  # doctest: +SKIP
            >>> spec.replace(1, "batch_norm")  # doctest: +SKIP
        """
        i = self.index(index_or_name)
        old = self.layers[i]
        kind = old.kind if kind is None else kind
        name = options.pop("name", old.name)
        if kind == old.kind:
            options = {**old.options, **options}
        others = self.layers[:i] + self.layers[i + 1:]
        layer = self._new_layer(kind, name, options, others)
        return self._with_layers(self.layers[:i] + (layer,) + self.layers[i + 1:], i)

    # ----------------------------------------------------------------- shapes and counts
    @property
    def output_shape(self) -> Shape:
        """The network's output shape, batch dimension first (``None``)."""
        return self._shapes[-1] if self._shapes else self.input_shape

    @property
    def layer_shapes(self) -> list[tuple[Layer, Shape]]:
        """Each layer with its inferred output shape."""
        return list(zip(self.layers, self._shapes, strict=True))

    @property
    def output_activation(self) -> str | None:
        """The activation the output carries (``"softmax"``, ``"sigmoid"``, ...) or None
        for logits, as each layer's kind passes it on (a dropout keeps its input's)."""
        activation = None
        for layer in self.layers:
            activation = REGISTRY[layer.kind].activation_after(layer, activation)
        return activation

    def layer_params(self) -> list[int]:
        """Each layer's parameter count, as the built module will have it (nothing allocated)."""
        return [REGISTRY[la.kind].count_params(la, shape)
                for la, shape in zip(self.layers, self._input_shapes(), strict=True)]

    def _input_shapes(self) -> tuple[Shape, ...]:
        return (self.input_shape, *self._shapes)[:len(self.layers)]

    def count_params(self) -> int:
        """The number of parameters of the built network (all trainable until compiled
        and frozen).

        Example:
            >>> xb.input("x", shape=(None, 4)).dense(3).count_params()  # doctest: +SKIP
            15
        """
        return sum(self.layer_params())

    def summary_rows(self) -> list[SummaryRow]:
        """The rows of :meth:`summary` (the same rows ``Model.summary`` shows)."""
        return [SummaryRow(la.name, la.type_name, format_shape(shape), params, False)
                for la, shape, params in zip(self.layers, self._shapes, self.layer_params(), strict=True)]

    def summary(self) -> str:
        """The guide's boxed summary of the network this spec builds, before compiling:
        layer, type, output shape, params; totals equal the compiled model's.

        Example:
            >>> print(spec.summary())  # doctest: +SKIP
        """
        return render_text(self.summary_rows())

    def _repr_html_(self) -> str:
        return render_html(self.summary_rows())

    # ----------------------------------------------------------------- build
    def build(self) -> nn.Sequential:
        """A fresh ``nn.Sequential`` (Glorot-uniform weights, zero biases) with named layers."""
        net = nn.Sequential(OrderedDict(
            (la.name, REGISTRY[la.kind].build(la, shape))
            for la, shape in zip(self.layers, self._input_shapes(), strict=True)))
        init_weights(net)
        return net

    # ----------------------------------------------------------------- JSON and code
    def to_dict(self) -> dict:
        """A plain dict (JSON-ready) describing the spec."""
        return {
            "format": FORMAT,
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "layers": [{"kind": la.kind, "name": la.name, **la.options} for la in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Spec:
        """Rebuild a spec from :meth:`to_dict` output, re-validating every layer (linear time)."""
        try:
            spec = input(data["input"]["name"], shape=tuple(data["input"]["shape"]))
            layers, shapes, taken = [], [], {spec.input_name}
            shape = spec.input_shape
            for entry in data["layers"]:
                options = {k: v for k, v in entry.items() if k not in ("kind", "name")}
                lk = kind_of(entry["kind"], "layers")
                layer = Layer(lk.kind, check_name(entry["name"], taken),
                              lk.validate(options, entry["name"]))
                taken.add(layer.name)
                shape = lk.output_shape(layer, shape)
                layers.append(layer)
                shapes.append(shape)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a valid exburn_nb spec: {exc!r}") from None
        return cls._make(spec.input_name, spec.input_shape, tuple(layers), tuple(shapes))

    def to_json(self, indent: int | None = None) -> str:
        """The spec as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Spec:
        """Rebuild a spec from :meth:`to_json` output: shared text, so its nesting, layer
        count (:data:`MAX_LAYERS`), widths (:data:`MAX_UNITS`) and parameter count
        (:data:`MAX_PARAMS`) are checked before anything is built.

        Example:
            >>> Spec.from_json('{"input": {"name": "x", "shape": [null, 2]}, '
            ...                '"layers": [{"kind": "dense", "name": "d", "units": 3}]}')
            xb.input("x", shape=(None, 2)).dense(3, name="d")
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"text must be the spec's JSON text (str or bytes); got "
                            f"{type(text).__name__}")
        data = parse_json(text, "spec JSON")
        layers = data.get("layers") if isinstance(data, dict) else None
        if isinstance(layers, list) and len(layers) > MAX_LAYERS:
            raise ValueError(f"spec JSON: layers has {len(layers):,} entries; at most "
                             f"{MAX_LAYERS:,} (MAX_LAYERS)")
        return cls.from_dict(data).check_limits()

    def check_limits(self) -> Spec:
        """This spec, if it stays within :data:`MAX_LAYERS` layers, :data:`MAX_UNITS` values
        per sample at every layer and :data:`MAX_PARAMS` parameters (counted from the
        shapes, nothing allocated); otherwise a ValueError naming the layer and the limit.

        Example:
            >>> input("x", shape=(None, 2)).dense(10**9, name="wide").check_limits()
            Traceback (most recent call last):
            ...
            ValueError: layer 'wide' (Dense) has 1,000,000,000 values per sample; at most 16,777,216 (MAX_UNITS)
        """
        if len(self.layers) > MAX_LAYERS:
            raise ValueError(f"the spec has {len(self.layers):,} layers; at most "
                             f"{MAX_LAYERS:,} (MAX_LAYERS)")
        where = [f"input {self.input_name!r}"] + [
            f"layer {la.name!r} ({la.type_name})" for la in self.layers]
        for name, shape in zip(where, (self.input_shape, *self._shapes), strict=True):
            units = math.prod(shape[1:])
            if units > MAX_UNITS:
                raise ValueError(f"{name} has {_amount(units)} values per sample; at most "
                                 f"{MAX_UNITS:,} (MAX_UNITS)")
        params = self.count_params()
        if params > MAX_PARAMS:
            raise ValueError(f"the spec has {_amount(params)} parameters; at most "
                             f"{MAX_PARAMS:,} (MAX_PARAMS)")
        return self

    def _code_parts(self) -> list[str]:
        """``xb.input(...)`` then one chained call per layer; names left out where the
        spec would give the same name by itself."""
        parts = [f"xb.input({py_literal(self.input_name)}, shape={py_literal(self.input_shape)})"]
        taken, counts = {self.input_name}, {}
        for layer in self.layers:
            auto = auto_name(layer.kind, counts.get(layer.kind, 0), taken)
            parts.append(REGISTRY[layer.kind].code(layer, name_is_auto=layer.name == auto))
            taken.add(layer.name)
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
        return parts

    def to_code(self, variable: str = "spec") -> str:
        """Formatted Python that builds this spec; executing it gives an equal spec.

        Example:
            >>> print(input("x", shape=(None, 4)).dense(3, name="out").to_code(), end="")
            import exburn_nb as xb
            <BLANKLINE>
            spec = (
                xb.input("x", shape=(None, 4))
                .dense(3, name="out")
            )
        """
        parts = self._code_parts()
        body = parts[0] if len(parts) == 1 else "(\n" + "".join(
            f"    {p}\n" for p in parts) + ")"
        return f"import exburn_nb as xb\n\n{variable} = {body}\n"

    def __copy__(self) -> Spec:
        return self  # immutable

    def __deepcopy__(self, memo: dict) -> Spec:
        return self

    def __getattr__(self, name: str) -> Any:
        # only called for missing attributes: a registered kind without a builder method
        # of its own gets the generic one (so the code a kind writes runs), and a spec
        # used as a model says what to do
        if name in REGISTRY:
            return self._builder(REGISTRY[name])
        hint = "" if name.startswith("_") else (
            "; a spec describes a network but has no weights, loss or optimizer: compile it "
            "first, e.g. model = xb.compile(spec, loss=\"cross_entropy\", optimizer=\"adam\")")
        raise AttributeError(f"'Spec' object has no attribute {name!r}{hint}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *REGISTRY})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return "".join(self._code_parts())


def _amount(n: int) -> str:
    """``n`` with thousands separators, or a bound once it is too long to print."""
    return f"{n:,}" if n < 10**30 else "more than 10**30"


def input(name: str = "input", shape: Shape = (None, 1)) -> Spec:  # noqa: A001 - the guide's name
    """Start a spec: the input layer, e.g. ``input("input", shape=(None, 784))``.

    The leading ``None`` is the batch dimension (any size). Images are channels-first:
    ``(None, 1, 8, 8)``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier such as 'input'; got {name!r}")
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
    if (not isinstance(shape, tuple) or len(shape) < 2 or shape[0] is not None
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape[1:])):
        raise ValueError("shape must be (None, d1, ...) with None for the batch and positive "
                         f"integer sizes, e.g. (None, 784); got {shape!r}")
    return Spec(name, shape)
