"""Model specs: an immutable, chainable description of a network.

A spec is data, not weights: it round-trips through JSON, infers every layer's output
shape, and builds a ``torch.nn.Module`` whose children keep the layer names, so parameter
names are ``<layer>.weight`` and ``<layer>.bias``.

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
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softmax", "gelu", "leaky_relu", "elu", "silu")
LAYER_KINDS = ("dense", "dropout", "activation", "flatten", "batch_norm", "conv2d", "max_pool2d")
TYPE_NAMES = {
    "dense": "Dense", "dropout": "Dropout", "activation": "Activation", "flatten": "Flatten",
    "batch_norm": "BatchNorm", "conv2d": "Conv2D", "max_pool2d": "MaxPool2D",
}

Shape = tuple  # (None, d1, d2, ...): None is the batch dimension


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def _check_activation(value: str | None, argname: str = "activation") -> str | None:
    if value is not None and value not in ACTIVATIONS:
        raise ValueError(f"{argname} must be one of {', '.join(ACTIVATIONS)} or None; got {value!r}")
    return value


@dataclass(frozen=True)
class Layer:
    """One layer of a spec: its kind, its unique name and its options (plain JSON values)."""

    kind: str
    name: str
    options: dict = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        """The type shown in summaries, e.g. ``"Dense"``."""
        return TYPE_NAMES[self.kind]


class Spec:
    """An immutable model spec; every builder method returns a new spec.

    Build one with :func:`input`, then chain layers. Shapes are channels-first, as in
    PyTorch: images are ``(None, channels, height, width)``.
    """

    def __init__(self, input_name: str, input_shape: Shape, layers: tuple[Layer, ...] = ()):
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        self.layers = tuple(layers)
        self._shapes = self._infer_shapes()

    # ----------------------------------------------------------------- builder methods
    def dense(self, units: int, activation: str | None = None, name: str | None = None) -> Spec:
        """A fully connected layer (Glorot-uniform weights, zero bias) on the last axis."""
        _check_int("units", units)
        return self._add("dense", name, units=units, activation=_check_activation(activation))

    def dropout(self, rate: float = 0.5, name: str | None = None) -> Spec:
        """Zeroes inputs with probability ``rate`` while training; identity at inference."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"rate must be a number in [0, 1); got {rate!r}")
        return self._add("dropout", name, rate=float(rate))

    def activation(self, fn: str, name: str | None = None) -> Spec:
        """A standalone activation layer, one of :data:`ACTIVATIONS`."""
        if fn is None:
            raise ValueError(f"fn must be one of {', '.join(ACTIVATIONS)}; got None")
        return self._add("activation", name, fn=_check_activation(fn, "fn"))

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
        _check_int("filters", filters)
        _check_int("kernel_size", kernel_size)
        _check_int("stride", stride)
        if padding not in ("same", "valid") and not (
                isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0):
            raise ValueError(f"padding must be 'same', 'valid' or an int >= 0; got {padding!r}")
        if padding == "same" and stride > 1 and kernel_size % 2 == 0:
            raise ValueError("padding='same' with stride > 1 needs an odd kernel_size; "
                             f"got kernel_size={kernel_size}, stride={stride}")
        return self._add("conv2d", name, filters=filters, kernel_size=kernel_size, stride=stride,
                         padding=padding, activation=_check_activation(activation))

    def max_pool2d(self, pool_size: int = 2, name: str | None = None) -> Spec:
        """Max pooling over ``pool_size`` x ``pool_size`` windows (stride = pool_size)."""
        _check_int("pool_size", pool_size)
        return self._add("max_pool2d", name, pool_size=pool_size)

    def _add(self, kind: str, name: str | None, **options: Any) -> Spec:
        taken = {layer.name for layer in self.layers} | {self.input_name}
        if name is None:
            n = sum(layer.kind == kind for layer in self.layers) + 1
            while f"{kind}_{n}" in taken:
                n += 1
            name = f"{kind}_{n}"
        elif not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be a Python identifier such as 'hidden1'; got {name!r}")
        elif name in taken:
            raise ValueError(f"name {name!r} is already used by another layer; "
                             f"names in use: {sorted(taken)}")
        return Spec(self.input_name, self.input_shape, self.layers + (Layer(kind, name, options),))

    # ----------------------------------------------------------------- shapes
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
        """The activation applied last (``"softmax"``, ``"sigmoid"``, ...) or None for logits."""
        for layer in reversed(self.layers):
            if layer.kind in ("dense", "conv2d"):
                return layer.options.get("activation")
            if layer.kind == "activation":
                return layer.options["fn"]
            if layer.kind not in ("dropout",):
                return None
        return None

    def _infer_shapes(self) -> list[Shape]:
        shapes, shape = [], self.input_shape
        for layer in self.layers:
            shape = _output_shape(layer, shape)
            shapes.append(shape)
        return shapes

    # ----------------------------------------------------------------- build
    def build(self) -> nn.Sequential:
        """A fresh ``nn.Sequential`` (Glorot-uniform weights, zero biases) with named layers."""
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        shape = self.input_shape
        for layer in self.layers:
            modules[layer.name] = _make_module(layer, shape)
            shape = _output_shape(layer, shape)
        net = nn.Sequential(modules)
        init_weights(net)
        return net

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        """A plain dict (JSON-ready) describing the spec."""
        return {
            "format": "exburn_nb.spec/1",
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "layers": [{"kind": la.kind, "name": la.name, **la.options} for la in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Spec:
        """Rebuild a spec from :meth:`to_dict` output, re-validating every layer."""
        try:
            spec = input(data["input"]["name"], shape=tuple(data["input"]["shape"]))
            for entry in data["layers"]:
                options = {k: v for k, v in entry.items() if k not in ("kind", "name")}
                if entry["kind"] not in LAYER_KINDS:
                    raise ValueError(f"unknown layer kind {entry['kind']!r}")
                spec = getattr(spec, entry["kind"])(**options, name=entry["name"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a valid exburn_nb spec: {exc!r}") from None
        return spec

    def to_json(self, indent: int | None = None) -> str:
        """The spec as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Rebuild a spec from :meth:`to_json` output."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"spec JSON is not valid JSON: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        parts = [f"input({self.input_name!r}, shape={self.input_shape})"]
        for layer in self.layers:
            args = ", ".join(f"{k}={v!r}" for k, v in layer.options.items() if v is not None)
            parts.append(f".{layer.kind}({args}{', ' if args else ''}name={layer.name!r})")
        return "".join(parts)


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


# --------------------------------------------------------------------- layer modules
def make_activation(fn: str) -> nn.Module:
    """The ``nn.Module`` for an activation name (softmax over dimension 1)."""
    return {
        "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
        "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "silu": nn.SiLU,
        "softmax": lambda: nn.Softmax(dim=1),
    }[fn]()


class Dense(nn.Linear):
    """``nn.Linear`` with an optional activation, so its parameters stay ``<name>.weight``."""

    def __init__(self, in_features: int, units: int, activation: str | None):
        super().__init__(in_features, units)
        self.act = make_activation(activation) if activation else None
        # a plain attribute: nn.Module.__getattr__ costs microseconds per lookup, which
        # shows at small batches
        object.__setattr__(self, "_act_fn", self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        return y if self._act_fn is None else self._act_fn(y)


class Conv2D(nn.Conv2d):
    """``nn.Conv2d`` with an optional activation."""

    def __init__(self, in_channels: int, filters: int, kernel_size: int, stride: int,
                 padding: int | str, activation: str | None):
        super().__init__(in_channels, filters, kernel_size, stride=stride, padding=padding)
        self.act = make_activation(activation) if activation else None
        object.__setattr__(self, "_act_fn", self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(x, self.weight, self.bias)
        return y if self._act_fn is None else self._act_fn(y)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn as ``rand < keep``: the same distribution and
    scaling, about 1.6x faster than ``bernoulli_`` on CPU (forward and backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        return x * ((torch.rand_like(x) < keep) * (1.0 / keep))


def _conv_padding(kernel_size: int, stride: int, padding: str | int) -> int | str:
    if padding == "valid":
        return 0
    if padding == "same":
        return "same" if stride == 1 else (kernel_size - 1) // 2
    return padding


def _require_rank(layer: Layer, shape: Shape, ranks: tuple[int, ...], hint: str) -> None:
    if len(shape) not in ranks:
        raise ValueError(f"layer {layer.name!r} ({layer.type_name}) needs an input of rank "
                         f"{' or '.join(map(str, ranks))}, {hint}; it gets shape {shape}")


def _output_shape(layer: Layer, shape: Shape) -> Shape:
    o = layer.options
    if layer.kind == "dense":
        return shape[:-1] + (o["units"],)
    if layer.kind == "flatten":
        return (None, math.prod(shape[1:]))
    if layer.kind == "batch_norm":
        _require_rank(layer, shape, (2, 4), "(None, features) or (None, C, H, W)")
        return shape
    if layer.kind == "conv2d":
        _require_rank(layer, shape, (4,), "(None, channels, height, width)")
        k, s = o["kernel_size"], o["stride"]
        pad = _conv_padding(k, s, o["padding"])
        hw = shape[2:] if pad == "same" else tuple((d + 2 * pad - k) // s + 1 for d in shape[2:])
        if min(hw) < 1:
            raise ValueError(f"layer {layer.name!r} (Conv2D): kernel_size {k} is larger than "
                             f"its padded input {shape[2:]}")
        return (None, o["filters"]) + hw
    if layer.kind == "max_pool2d":
        _require_rank(layer, shape, (4,), "(None, channels, height, width)")
        hw = tuple(d // o["pool_size"] for d in shape[2:])
        if min(hw) < 1:
            raise ValueError(f"layer {layer.name!r} (MaxPool2D): pool_size {o['pool_size']} is "
                             f"larger than its input {shape[2:]}")
        return shape[:2] + hw
    return shape  # dropout, activation


def _make_module(layer: Layer, shape: Shape) -> nn.Module:
    o = layer.options
    if layer.kind == "dense":
        return Dense(shape[-1], o["units"], o["activation"])
    if layer.kind == "dropout":
        return Dropout(o["rate"])
    if layer.kind == "activation":
        return make_activation(o["fn"])
    if layer.kind == "flatten":
        return nn.Flatten()
    if layer.kind == "batch_norm":
        return nn.BatchNorm1d(shape[1]) if len(shape) == 2 else nn.BatchNorm2d(shape[1])
    if layer.kind == "conv2d":
        return Conv2D(shape[1], o["filters"], o["kernel_size"], o["stride"],
                      _conv_padding(o["kernel_size"], o["stride"], o["padding"]), o["activation"])
    return nn.MaxPool2d(o["pool_size"])  # max_pool2d


def init_weights(net: nn.Module) -> None:
    """Glorot/Xavier-uniform weights and zero biases for dense and conv layers (the guide's init)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_parameters()
