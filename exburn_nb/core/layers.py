"""Layer kinds: one small class per kind owns everything the kit knows about it.

Each :class:`LayerKind` declares its option schema (:class:`Option`: name, type, range or
choices, default, help text), its shape rule, its parameter count, the ``torch`` module it
builds, the Python call that adds it to a spec (and reads that call back), the activation
its output carries, and, where it has one, its forward pass in a stacked ensemble. The
spec, the summary, the JSON format, the model builder widget and the stacked sweep engine
all read :data:`REGISTRY`; adding a layer kind is one class (registered under its name).

Example:
    >>> from exburn_nb.core.layers import REGISTRY, Layer
    >>> dense = REGISTRY["dense"]
    >>> [o.name for o in dense.options]
    ['units', 'activation']
    >>> layer = Layer("dense", "hidden", dense.validate({"units": 8}, "hidden"))
    >>> dense.output_shape(layer, (None, 4)), dense.count_params(layer, (None, 4))
    ((None, 8), 40)
    >>> dense.code(layer)
    '.dense(8, name="hidden")'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softmax", "gelu", "leaky_relu", "elu", "silu")

Shape = tuple  # (None, d1, d2, ...): None is the batch dimension
Generators = Sequence[torch.Generator | None] | None  # one per member; None: inference
StackedForward = Callable[[torch.Tensor, Generators], torch.Tensor]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # the default of an option that must be given


@dataclass(frozen=True)
class Option:
    """One option of a layer kind: its name, type, allowed values, default and help text.

    ``type`` is ``int``, ``float`` or ``str``. Numbers must lie in ``[minimum, maximum]``
    (``maximum`` excluded when ``exclusive_maximum``); ``choices`` lists the allowed strings
    (for a number option, named values allowed besides numbers, e.g. padding ``"same"``);
    ``optional`` lets the value be None.

    Example:
        >>> Option("rate", float, 0.5, minimum=0, maximum=1, exclusive_maximum=True).expected
        'a number in [0, 1)'
    """

    name: str
    type: type
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: bool = False
    choices: tuple = ()
    optional: bool = False
    help: str = ""

    @property
    def required(self) -> bool:
        """True when the option has no default."""
        return self.default is REQUIRED

    @property
    def expected(self) -> str:
        """What a valid value is, in words (used in every error message)."""
        named = ", ".join(repr(c) for c in self.choices)
        if self.type is str:
            text = f"one of {named}"
        else:
            noun = "an integer" if self.type is int else "a number"
            if self.maximum is None:
                text = f"{noun} >= {self.minimum:g}" if self.minimum is not None else noun
            else:
                close = ")" if self.exclusive_maximum else "]"
                text = f"{noun} in [{self.minimum:g}, {self.maximum:g}{close}"
            if self.choices:
                text = f"{named} or {text}"
        return text + (" or None" if self.optional else "")

    def validate(self, value: Any, where: str = "") -> Any:
        """The value, normalised (ints given for a float option become floats).

        Raises:
            ValueError: naming ``where`` (e.g. ``"layer 'hidden' (Dense): "``), the option,
                what was expected and the value given.
        """
        if value is None and self.optional:
            return None
        if value in self.choices and isinstance(value, str):
            return value
        if self.type in (int, float) and self._number_ok(value):
            return float(value) if self.type is float else value
        raise ValueError(f"{where}{self.name} must be {self.expected}; got {value!r}")

    def _number_ok(self, value: Any) -> bool:
        allowed = (int,) if self.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or (
                isinstance(value, float) and math.isnan(value)):
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is None:
            return True
        return value < self.maximum if self.exclusive_maximum else value <= self.maximum


@dataclass(frozen=True)
class Layer:
    """One layer of a spec: its kind, its unique name and its options (plain JSON values)."""

    kind: str
    name: str
    options: dict = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        """The type shown in summaries, e.g. ``"Dense"``."""
        return REGISTRY[self.kind].type_name


def py_literal(value: Any) -> str:
    """``value`` as Python source: strings in double quotes, shapes as tuples."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        inner = ", ".join(py_literal(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


def where(layer: Layer | str, type_name: str) -> str:
    """The prefix that names a layer in messages: ``"layer 'hidden' (Dense): "``."""
    name = layer.name if isinstance(layer, Layer) else layer
    return f"layer {name!r} ({type_name}): "


class LayerKind:
    """The base of every layer kind; subclasses set the class attributes and override
    :meth:`output_shape`, :meth:`build` and, for layers with weights, :meth:`count_params`.

    A kind that can train in a stacked ensemble (the sweep engine: M members of one spec
    as one network) overrides :meth:`stacked_forward`, and :meth:`stack_layout` when the
    stack should hold a parameter differently from the member's module.

    Example:
        >>> class Scale(LayerKind):
        ...     kind, type_name, help = "scale", "Scale", "Multiplies by a constant."
        ...     options = (Option("factor", float, help="the constant"),)
        ...     member_options = ("factor",)
        ...     def stacked_forward(self, layers, params):
        ...         factor = torch.tensor([la.options["factor"] for la in layers])
        ...         return lambda h, generators: h * factor.view(-1, *[1] * (h.dim() - 1))
        >>> scale = Scale()
        >>> scale.stackable, scale.code(Layer("scale", "s", {"factor": 2.0}))
        (True, '.scale(2.0, name="s")')
        >>> members = [Layer("scale", "s", {"factor": f}) for f in (1.0, 2.0)]
        >>> scale.stacked_forward(members, [])(torch.ones(2, 1, 3), None)
        tensor([[[1., 1., 1.]],
        <BLANKLINE>
                [[2., 2., 2.]]])
    """

    kind: ClassVar[str]
    type_name: ClassVar[str]
    help: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    member_options: ClassVar[tuple[str, ...]] = ()
    """Options the members of one stacked ensemble may set differently (dropout's rate);
    they must agree on all others."""
    draws: ClassVar[bool] = False
    """Whether its stacked forward draws from the members' generators in training (a
    captured stacked step runs such a network's forward eagerly)."""

    def check_options(self, options: dict, name: str) -> dict:
        """The options given, each checked and normalised, without defaults or cross-checks.

        Raises:
            ValueError: for an unknown or invalid option, naming the layer.
        """
        prefix = where(name, self.type_name)
        known = {o.name: o for o in self.options}
        unknown = [k for k in options if k not in known]
        if unknown:
            raise ValueError(f"{prefix}unknown option {unknown[0]!r}; the options are "
                             f"{', '.join(known) or 'none'}")
        return {k: known[k].validate(v, prefix) for k, v in options.items()}

    def validate(self, options: dict, name: str) -> dict:
        """The options, checked one by one and completed with defaults, in schema order.

        Raises:
            ValueError: for an unknown, missing or invalid option, naming the layer.
        """
        given = self.check_options(options, name)
        prefix = where(name, self.type_name)
        missing = [o for o in self.options if o.required and o.name not in given]
        if missing:
            raise ValueError(f"{prefix}{missing[0].name} is required ({missing[0].expected})")
        out = {o.name: given.get(o.name, o.default) for o in self.options}
        self.check(out, prefix)
        return out

    def check(self, options: dict, prefix: str) -> None:
        """Rules that tie options together; raises ValueError. None by default."""

    def output_shape(self, layer: Layer, shape: Shape) -> Shape:
        """The layer's output shape for an input of ``shape``; ValueError if it cannot follow."""
        return shape

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        """A fresh ``torch`` module for an input of ``shape`` (not yet Glorot-initialised)."""
        raise NotImplementedError

    def count_params(self, layer: Layer, shape: Shape) -> int:
        """The number of parameters the built module has (computed, nothing allocated)."""
        return 0

    def activation_after(self, layer: Layer, before: str | None) -> str | None:
        """The activation the layer's output carries (``"softmax"``, ...; None: none), given
        the one its input carries: None by default, a layer that keeps it returns ``before``.
        The losses read the last one to tell probabilities from logits."""
        return None

    @property
    def positional(self) -> tuple[Option, ...]:
        """The options in the order a builder call takes them positionally: required first."""
        return (tuple(o for o in self.options if o.required)
                + tuple(o for o in self.options if not o.required))

    def code(self, layer: Layer, name_is_auto: bool = False) -> str:
        """The chained call that adds ``layer`` to a spec, e.g. ``.dense(8, name="h")``:
        required options positionally, others only where they differ from the default."""
        args = [py_literal(layer.options[o.name]) for o in self.options if o.required]
        args += [f"{o.name}={py_literal(layer.options[o.name])}" for o in self.options
                 if not o.required and layer.options[o.name] != o.default]
        if not name_is_auto:
            args.append(f"name={py_literal(layer.name)}")
        return f".{self.kind}({', '.join(args)})"

    def call_options(self, args: tuple, options: dict) -> dict:
        """The options of a builder call ``.<kind>(*args, **options)`` (the call
        :meth:`code` writes): positional values fill :attr:`positional` in order.

        Raises:
            TypeError: for more positional values than options, or an option given twice.
        """
        if len(args) > len(self.options):
            raise TypeError(f"{self.kind}() takes at most {len(self.options)} positional "
                            f"options ({', '.join(o.name for o in self.positional)}); "
                            f"got {len(args)}")
        named = {o.name: v for o, v in zip(self.positional, args, strict=False)}
        twice = [k for k in named if k in options]
        if twice:
            raise TypeError(f"{self.kind}() got option {twice[0]!r} twice")
        return {**named, **options}

    def require_rank(self, layer: Layer, shape: Shape, ranks: tuple[int, ...], hint: str) -> None:
        """Raise a ValueError naming the layer unless ``shape`` has one of ``ranks``."""
        if len(shape) not in ranks:
            raise ValueError(f"layer {layer.name!r} ({self.type_name}) needs an input of rank "
                             f"{' or '.join(map(str, ranks))}, {hint}; it gets shape {shape}")

    # ----------------------------------------------------------------- stacked ensembles
    @property
    def stackable(self) -> bool:
        """Whether the kind trains in a stacked ensemble (it overrides :meth:`stacked_forward`)."""
        return type(self).stacked_forward is not LayerKind.stacked_forward

    def stack_layout(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """A member's parameter ``name`` (``"weight"``, ...) as the stack holds it, one
        member of the ``(M, ...)`` stack; the same call turns it back. As it is by default."""
        return t

    def stacked_forward(self, layers: Sequence[Layer], params: Sequence[torch.Tensor],
                        ) -> StackedForward:
        """The layer's forward pass over all M members at once, prepared once per ensemble.

        Args:
            layers: this layer in each member's spec (they differ at most in
                :attr:`member_options`).
            params: the layer's parameters stacked over the members, ``(M, ...)``, in its
                module's order, each member's as :meth:`stack_layout` holds it.

        Returns:
            A callable ``(h, generators) -> output``: ``h`` is ``(M, B, ...)``, member ``m``'s
            output equals the member's own module on ``h[m]``; ``generators`` (one per
            member, or None in inference) draw any randomness, member ``m``'s exactly as
            its own run draws it. The sweep engine calls it for every batch: resolve all
            options here, not there.

        Raises:
            ValueError: when the kind has no stacked forward (see :attr:`stackable`).
        """
        raise ValueError(f"{self.type_name} layers have no stacked forward")


# --------------------------------------------------------------------- torch modules
def make_activation(fn: str, softmax_dim: int = 1) -> nn.Module:
    """The ``nn.Module`` for an activation name; softmax over ``softmax_dim`` (1: the
    features of a batch; 2 in a stacked ensemble, whose tensors are ``(M, B, ...)``).

    Example:
        >>> make_activation("softmax", softmax_dim=2)
        Softmax(dim=2)
    """
    return {
        "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
        "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "silu": nn.SiLU,
        "softmax": lambda: nn.Softmax(dim=softmax_dim),
    }[fn]()


def stacked_activation(fn: str | None) -> nn.Module | None:
    """The activation ``fn`` over a stacked ensemble's ``(M, B, ...)`` tensors (None: none):
    each member's slice gets what :func:`make_activation` gives its own module."""
    return None if fn is None else make_activation(fn, softmax_dim=2)


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


def init_weights(net: nn.Module) -> None:
    """Glorot/Xavier-uniform weights and zero biases for dense and conv layers (the guide's init)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                module.reset_parameters()


# --------------------------------------------------------------------- the kinds
def _activation_option(name: str = "activation", optional: bool = True) -> Option:
    return Option(name, str, None if optional else REQUIRED, choices=ACTIVATIONS,
                  optional=optional, help="the activation applied to the output"
                  + (" (None: linear)" if optional else ""))


IMAGE = "(None, channels, height, width)"


class DenseKind(LayerKind):
    kind, type_name = "dense", "Dense"
    help = ("A fully connected layer (Glorot-uniform weights, zero bias) on the last axis; "
            "an image needs a flatten layer first.")
    options = (Option("units", int, minimum=1, help="the number of outputs"),
               _activation_option())

    def output_shape(self, layer: Layer, shape: Shape) -> Shape:
        if len(shape) == 4:
            raise ValueError(f"layer {layer.name!r} (Dense) needs (None, features), not an image "
                             f"{shape}: add .flatten() before it")
        return shape[:-1] + (layer.options["units"],)

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        return Dense(shape[-1], layer.options["units"], layer.options["activation"])

    def count_params(self, layer: Layer, shape: Shape) -> int:
        return (shape[-1] + 1) * layer.options["units"]

    def activation_after(self, layer: Layer, before: str | None) -> str | None:
        return layer.options["activation"]

    def stack_layout(self, name: str, t: torch.Tensor) -> torch.Tensor:
        # weights held transposed, (M, in, out): baddbmm then reads them as they lie,
        # twice as fast as through a transposed view (forward and backward)
        return t.t() if name == "weight" else t

    def stacked_forward(self, layers: Sequence[Layer], params: Sequence[torch.Tensor],
                        ) -> StackedForward:
        w, b = params
        act = stacked_activation(layers[0].options["activation"])

        def forward(h: torch.Tensor, generators: Generators) -> torch.Tensor:
            shape = h.shape
            y = torch.baddbmm(b.unsqueeze(1), h.reshape(shape[0], -1, shape[-1]),
                              w).reshape(*shape[:-1], w.shape[2])
            return y if act is None else act(y)

        return forward


class DropoutKind(LayerKind):
    kind, type_name = "dropout", "Dropout"
    help = "Zeroes inputs with probability rate while training; identity at inference."
    options = (Option("rate", float, 0.5, minimum=0, maximum=1, exclusive_maximum=True,
                      help="the probability of zeroing each input"),)
    member_options = ("rate",)
    draws = True

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        return Dropout(layer.options["rate"])

    def activation_after(self, layer: Layer, before: str | None) -> str | None:
        return before

    def stacked_forward(self, layers: Sequence[Layer], params: Sequence[torch.Tensor],
                        ) -> StackedForward:
        rates = [la.options["rate"] for la in layers]

        def forward(h: torch.Tensor, generators: Generators) -> torch.Tensor:
            return h if generators is None else h * self.masks(h, rates, generators)

        return forward

    @staticmethod
    def masks(h: torch.Tensor, rates: Sequence[float],
              generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        """Each member's mask for ``h`` ``(M, B, ...)``, as its own :class:`Dropout` draws
        it (``rand < keep`` over its generator); ones for a rate of 0 (which draws
        nothing), and for a member without a generator (frozen)."""
        masks = []
        for rate, gen in zip(rates, generators, strict=True):
            if rate == 0 or gen is None:
                masks.append(torch.ones(h.shape[1:], dtype=h.dtype, device=h.device))
            else:
                keep = 1.0 - rate
                r = torch.rand(h.shape[1:], generator=gen, dtype=h.dtype, device=h.device)
                masks.append((r < keep) * (1.0 / keep))
        return torch.stack(masks)


class ActivationKind(LayerKind):
    kind, type_name = "activation", "Activation"
    help = "A standalone activation layer."
    options = (_activation_option("fn", optional=False),)

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        return make_activation(layer.options["fn"])

    def activation_after(self, layer: Layer, before: str | None) -> str | None:
        return layer.options["fn"]

    def stacked_forward(self, layers: Sequence[Layer], params: Sequence[torch.Tensor],
                        ) -> StackedForward:
        act = stacked_activation(layers[0].options["fn"])
        return lambda h, generators: act(h)


class FlattenKind(LayerKind):
    kind, type_name = "flatten", "Flatten"
    help = "Flattens everything but the batch dimension."

    def output_shape(self, layer: Layer, shape: Shape) -> Shape:
        return (None, math.prod(shape[1:]))

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        return nn.Flatten()

    def stacked_forward(self, layers: Sequence[Layer], params: Sequence[torch.Tensor],
                        ) -> StackedForward:
        return lambda h, generators: h.reshape(h.shape[0], h.shape[1], -1)


class BatchNormKind(LayerKind):
    kind, type_name = "batch_norm", "BatchNorm"
    help = "Batch normalisation over features (rank 2) or channels (rank 4)."

    def output_shape(self, layer: Layer, shape: Shape) -> Shape:
        self.require_rank(layer, shape, (2, 4), f"(None, features) or {IMAGE}")
        return shape

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        return nn.BatchNorm1d(shape[1]) if len(shape) == 2 else nn.BatchNorm2d(shape[1])

    def count_params(self, layer: Layer, shape: Shape) -> int:
        return 2 * shape[1]


def conv_padding(kernel_size: int, stride: int, padding: str | int) -> int | str:
    """The ``nn.Conv2d`` padding for a spec's ``"same"``, ``"valid"`` or int padding."""
    if padding == "valid":
        return 0
    if padding == "same":
        return "same" if stride == 1 else (kernel_size - 1) // 2
    return padding


class Conv2DKind(LayerKind):
    kind, type_name = "conv2d", "Conv2D"
    help = ("A 2-D convolution on (None, channels, height, width) inputs; padding 'same' keeps "
            "ceil(size / stride).")
    options = (Option("filters", int, minimum=1, help="the number of output channels"),
               Option("kernel_size", int, minimum=1, help="the side of the square kernel"),
               Option("stride", int, 1, minimum=1, help="the step between kernel positions"),
               Option("padding", int, "same", minimum=0, choices=("same", "valid"),
                      help="'same', 'valid' or zeros added on each side"),
               _activation_option())

    def check(self, options: dict, prefix: str) -> None:
        k, s = options["kernel_size"], options["stride"]
        if options["padding"] == "same" and s > 1 and k % 2 == 0:
            raise ValueError(f"{prefix}padding='same' with stride > 1 needs an odd kernel_size; "
                             f"got kernel_size={k}, stride={s}")

    def output_shape(self, layer: Layer, shape: Shape) -> Shape:
        self.require_rank(layer, shape, (4,), IMAGE)
        o = layer.options
        k, s = o["kernel_size"], o["stride"]
        pad = conv_padding(k, s, o["padding"])
        hw = shape[2:] if pad == "same" else tuple((d + 2 * pad - k) // s + 1 for d in shape[2:])
        if min(hw) < 1:
            raise ValueError(f"layer {layer.name!r} (Conv2D): kernel_size {k} is larger than "
                             f"its padded input {shape[2:]}")
        return (None, o["filters"]) + hw

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        o = layer.options
        return Conv2D(shape[1], o["filters"], o["kernel_size"], o["stride"],
                      conv_padding(o["kernel_size"], o["stride"], o["padding"]), o["activation"])

    def count_params(self, layer: Layer, shape: Shape) -> int:
        o = layer.options
        return (shape[1] * o["kernel_size"] ** 2 + 1) * o["filters"]

    def activation_after(self, layer: Layer, before: str | None) -> str | None:
        return layer.options["activation"]


class MaxPool2DKind(LayerKind):
    kind, type_name = "max_pool2d", "MaxPool2D"
    help = "Max pooling over pool_size x pool_size windows (stride = pool_size)."
    options = (Option("pool_size", int, 2, minimum=1, help="the side of the pooling window"),)

    def output_shape(self, layer: Layer, shape: Shape) -> Shape:
        self.require_rank(layer, shape, (4,), IMAGE)
        hw = tuple(d // layer.options["pool_size"] for d in shape[2:])
        if min(hw) < 1:
            raise ValueError(f"layer {layer.name!r} (MaxPool2D): pool_size "
                             f"{layer.options['pool_size']} is larger than its input {shape[2:]}")
        return shape[:2] + hw

    def build(self, layer: Layer, shape: Shape) -> nn.Module:
        return nn.MaxPool2d(layer.options["pool_size"])


REGISTRY: dict[str, LayerKind] = {k.kind: k() for k in (
    DenseKind, DropoutKind, ActivationKind, FlattenKind, BatchNormKind, Conv2DKind,
    MaxPool2DKind)}


def kind_of(kind: Any, argname: str = "kind") -> LayerKind:
    """The registered kind called ``kind``; ValueError naming ``argname`` otherwise."""
    if kind not in REGISTRY:
        raise ValueError(f"{argname}: unknown layer kind {kind!r}; the kinds are "
                         f"{', '.join(REGISTRY)}")
    return REGISTRY[kind]
