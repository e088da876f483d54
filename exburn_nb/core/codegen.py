"""``to_torch_code``: the same network, and the same training run, as a plain PyTorch script.

The script needs no exburn_nb: an ``nn.Module`` whose parameter names are the model's
(``<layer>.weight``), exburn_nb's initialisation (Glorot-uniform weights, zero biases,
seeded as ``xb.compile(spec, seed=...)``), the optimizer with the kit's constants, the
schedule, clipping and gradient accumulation as configured, and a plain loop that shuffles
and draws dropout masks as ``xb.fit`` does. So with the same seeds, ``python script.py
data.npz weights.pt`` trains to the weights ``xb.fit`` reaches.

Example:
    >>> import exburn_nb as xb
    >>> spec = xb.input("input", shape=(None, 4)).dense(8, activation="relu", name="hidden").dense(3)
    >>> code = to_torch_code(spec, xb.FitConfig(epochs=2, seed=0), seed=0)
    >>> print(code.splitlines()[0])
    # The network and training run exburn_nb describes, in plain PyTorch (no exburn_nb needed).
    >>> "self.hidden = nn.Linear(4, 8)" in code, "import exburn_nb" in code
    (True, False)
"""

from __future__ import annotations

import inspect
import keyword
from typing import Any

import torch

from ..base.checks import check_seed
from .config import CompileConfig, FitConfig
from .layers import Layer, conv_padding, init_weights, py_literal
from .losses import Loss
from .model import Model, resolve_device
from .optim import Schedule, make_optimizer
from .spec import Spec

# activation -> the expression applying it to ``{}`` (what the kit's modules call)
ACTIVATION_CODE = {"relu": "torch.relu({})", "tanh": "torch.tanh({})",
                   "sigmoid": "torch.sigmoid({})", "softmax": "torch.softmax({}, dim=1)",
                   "gelu": "F.gelu({})", "leaky_relu": "F.leaky_relu({})", "elu": "F.elu({})",
                   "silu": "F.silu({})"}
SPEC_COMPILE_OPTIONS = ("loss", "optimizer", "learning_rate", "weight_decay", "device", "seed")

_HEADER = '''\
# The network and training run exburn_nb describes, in plain PyTorch (no exburn_nb needed).
#
# Run it as:  python train.py data.npz weights.pt
#   data.npz holds arrays x (features, {x_shape}) and y (targets); the trained weights
#   (a state_dict with exburn_nb's parameter names) are saved to weights.pt.
# With the same seeds it trains to the weights xb.fit reaches (float rounding aside).
'''

_DROPOUT = '''

class Dropout(nn.Module):
    """Zeroes inputs with probability p while training, scaling the rest by 1 / (1 - p).
    The mask is drawn as rand < 1 - p, as exburn_nb draws it (the same random numbers)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        return x * ((torch.rand_like(x) < keep) * (1.0 / keep))
'''

_INIT = "\n\n" + inspect.getsource(init_weights)  # the kit's own, word for word

_LOSSES = {
    ("cross_entropy", False): ["return F.cross_entropy(output, target)"],
    ("cross_entropy", True): [
        "# the output is probabilities (a softmax output layer)",
        "logp = output.clamp_min(1e-12).log()",
        "if target.dtype == torch.long:",
        "    return F.nll_loss(logp, target)",
        "return -(target * logp).sum(dim=1).mean()"],
    ("mse", False): ["return F.mse_loss(output, target)"],
    ("binary_cross_entropy", False): ["return F.binary_cross_entropy_with_logits(output, target)"],
    ("binary_cross_entropy", True): [
        "# the output is probabilities (a sigmoid output layer)",
        "return F.binary_cross_entropy(output, target)"],
}


def to_torch_code(source: Spec | Model, config: FitConfig | None = None,
                  **compile_options: Any) -> str:
    """A self-contained PyTorch script that builds ``source``'s network and trains it as
    ``xb.fit(model, (x, y), config)`` does.

    Args:
        source: a spec (compile settings from ``compile_options``, else ``xb.compile``'s
            defaults) or a model compiled from a spec (its loss, optimizer, learning rate,
            weight decay, device and frozen layers).
        config: the run (epochs, batch size, shuffle, seed, schedule, clipping, weight
            decay, accumulation, Nesterov, precision, compile); None: ``FitConfig()``.
        **compile_options: for a spec: ``loss``, ``optimizer``, ``learning_rate``,
            ``weight_decay``, ``device``, ``seed``; for a model only ``seed``. ``seed``
            initialises the weights as ``xb.compile(spec, seed=seed)`` does (None: unseeded).

    The script starts from fresh weights and a fresh optimizer (a model's trained weights
    and optimizer state are not in it), and trains on ``(x, y)`` in memory. Like ``fit``,
    it stops before a step whose loss or gradients are not finite (``terminate_on_nan``);
    ``fit``'s undoing of an update that overflows the weights (learning rates above 1) is
    left out.

    Raises:
        ValueError: for a layer kind the generator cannot write yet (naming the layer), a
            callable ``lr_schedule``, a model built from a ``torch.nn.Module``, or an option
            that does not fit.

    Example:
        >>> code = xb.to_torch_code(model, xb.FitConfig(epochs=5, seed=0), seed=0)  # doctest: +SKIP
        >>> open("train_digits.py", "w").write(code)  # doctest: +SKIP
    """
    spec, settings, frozen = _source(source, compile_options)
    if config is None:
        config = FitConfig()
    if not isinstance(config, FitConfig):
        raise ValueError(f"config must be an xb.FitConfig or None; got {type(config).__name__}")
    if callable(config.lr_schedule):
        raise ValueError("lr_schedule: a callable schedule cannot be written as code; use one "
                         "of ('step', base_lr, step_size, gamma), ('exponential', base_lr, "
                         "gamma) or ('cosine', base_lr, min_lr)")
    if config.nesterov and settings["optimizer"] != "sgd":
        raise ValueError(f"nesterov=True needs optimizer 'sgd'; this model uses "
                         f"{settings['optimizer']!r}")
    network = _network(spec)  # first: a layer it cannot write fails before anything else
    device = resolve_device(settings["device"])[1]
    weight_decay = (config.weight_decay if config.weight_decay is not None
                    else settings["weight_decay"])
    loss = Loss(settings["loss"], spec.output_activation)
    parts = [_HEADER.format(x_shape=_shape_text(spec.input_shape)),
             "import math\nimport sys\n\nimport numpy as np\nimport torch\n"
             "import torch.nn.functional as F\nfrom torch import nn\n",
             _constants(settings, config, weight_decay, device, frozen)]
    if any(la.kind == "dropout" for la in spec.layers):
        parts.append(_DROPOUT)
    parts += [network, _INIT, _loss_code(loss), _targets(loss, spec.output_shape),
              _schedule(config), _train(settings, config, device, frozen),
              _MAIN]
    return "".join(parts)


def _source(source: Spec | Model, options: dict) -> tuple[Spec, dict, list[str]]:
    """The spec, the compile settings and the frozen layers of ``source``."""
    if isinstance(source, Model):
        if source.spec is None:
            raise ValueError("source: this model was compiled from a torch.nn.Module, which is "
                             "PyTorch code already; to_torch_code writes a spec's network")
        given = [k for k in options if k != "seed"]
        if given:
            raise ValueError(f"{given[0]}: a compiled model's loss, optimizer, learning rate, "
                             "weight decay and device come from the model; pass only seed "
                             "(the weights' initialisation), or pass the spec instead")
        settings = {"loss": source.loss_function, "optimizer": source.optimizer,
                    "learning_rate": source.learning_rate,
                    "weight_decay": source.weight_decay, "device": source.device,
                    "seed": options.get("seed")}
        check_seed(settings["seed"])
        return source.spec, settings, sorted(source.frozen_layers)
    if isinstance(source, Spec):
        unknown = [k for k in options if k not in SPEC_COMPILE_OPTIONS]
        if unknown:
            raise ValueError(f"{unknown[0]}: not an option of to_torch_code; the options are "
                             f"{', '.join(SPEC_COMPILE_OPTIONS)}")
        return source, CompileConfig(**options).to_dict(), []
    raise ValueError("source must be an exburn_nb spec (xb.input(...)...) or a model compiled "
                     f"from one; got {type(source).__name__}")


def _shape_text(shape: tuple) -> str:
    return "(N, " + ", ".join(str(d) for d in shape[1:]) + ")"


def _constants(settings: dict, config: FitConfig, weight_decay: float,
               device: torch.device, frozen: list[str]) -> str:
    lines = [
        "",
        f"INIT_SEED = {settings['seed']!r}  # seeds the weights, as xb.compile(spec, seed=...)",
        f"SEED = {config.seed!r}  # the run's shuffle order and dropout, as FitConfig(seed=...)",
        f"EPOCHS = {config.epochs!r}",
        f"BATCH_SIZE = {config.batch_size!r}",
        f"SHUFFLE = {config.shuffle!r}",
        f"LEARNING_RATE = {settings['learning_rate']!r}",
        f"WEIGHT_DECAY = {float(weight_decay)!r}",
        f"ACCUMULATE = {config.accumulate_gradients!r}  # batches per optimizer step",
        f"CLIP_VALUE = {config.clip_value!r}  # each gradient element into [-v, v], first",
        f"CLIP_NORM = {config.clip_norm!r}  # then the global gradient norm at most this",
        f"DEVICE = torch.device({device.type!r})",
    ]
    if frozen:
        lines.append(f"FROZEN = {frozen!r}  # no training, inference mode while training")
    return "\n".join(lines) + "\n"


def _network(spec: Spec) -> str:
    """The ``Net`` class: one attribute per layer with weights or randomness."""
    init, forward = [], []
    shapes = [spec.input_shape] + [shape for _, shape in spec.layer_shapes]
    for i, layer in enumerate(spec.layers):
        module, expression = _layer(layer, shapes[i])
        if module is not None:
            init.append(f"        self.add_module({py_literal(layer.name)}, {module})"
                        if keyword.iskeyword(layer.name) else
                        f"        self.{layer.name} = {module}")
        forward.append(f"        x = {expression}  # {layer.name}: {_shape_text(shapes[i + 1])}")
    return (f'\n\nclass Net(nn.Module):\n    """The spec\'s layers, input '
            f'{_shape_text(spec.input_shape)}."""\n\n'
            "    def __init__(self):\n        super().__init__()\n"
            + "".join(line + "\n" for line in init)
            + "\n    def forward(self, x):\n" + "".join(line + "\n" for line in forward)
            + "        return x\n")


def _layer(layer: Layer, shape: tuple) -> tuple[str | None, str]:
    """The module a layer keeps (None: none) and the expression computing its output."""
    o = layer.options
    call = (f"getattr(self, {py_literal(layer.name)})(x)" if keyword.iskeyword(layer.name)
            else f"self.{layer.name}(x)")
    if layer.kind == "dense":
        return f"nn.Linear({shape[-1]}, {o['units']})", _activate(o["activation"], call)
    if layer.kind == "conv2d":
        pad = conv_padding(o["kernel_size"], o["stride"], o["padding"])
        module = (f"nn.Conv2d({shape[1]}, {o['filters']}, {o['kernel_size']}, "
                  f"stride={o['stride']}, padding={py_literal(pad)})")
        return module, _activate(o["activation"], call)
    if layer.kind == "dropout":
        return f"Dropout({o['rate']!r})", call
    if layer.kind == "batch_norm":
        return f"nn.BatchNorm{1 if len(shape) == 2 else 2}d({shape[1]})", call
    if layer.kind == "activation":
        return None, _activate(o["fn"], "x")
    if layer.kind == "flatten":
        return None, "torch.flatten(x, 1)"
    if layer.kind == "max_pool2d":
        return None, f"F.max_pool2d(x, {o['pool_size']})"
    raise ValueError(f"layer {layer.name!r} ({layer.type_name}): to_torch_code cannot write "
                     f"{layer.type_name} layers yet; it writes dense, conv2d, dropout, "
                     "batch_norm, activation, flatten and max_pool2d")


def _activate(fn: str | None, expression: str) -> str:
    return expression if fn is None else ACTIVATION_CODE[fn].format(expression)


def _loss_code(loss: Loss) -> str:
    body = "\n".join("    " + line for line in _LOSSES[(loss.name, loss.from_probs)])
    return (f'\n\ndef loss_fn(output, target):\n    """The mean {loss.name} loss of a batch."""\n'
            f"{body}\n")


def _targets(loss: Loss, output_shape: tuple) -> str:
    if loss.name == "cross_entropy":
        body = ["# class indices (N,) or one-hot / probability rows (N, classes)",
                "return y.long() if y.dim() == 1 else y.float()"]
    elif tuple(output_shape[1:]) == (1,):
        body = ["y = y.float()", "return y.unsqueeze(1) if y.dim() == 1 else y"]
    else:
        body = ["return y.float()"]
    lines = "\n".join("    " + line for line in body)
    return f'\n\ndef prepare_targets(y):\n    """The targets as the loss takes them."""\n{lines}\n'


def _schedule(config: FitConfig) -> str:
    if config.lr_schedule is None:
        return ""
    schedule = Schedule(config.lr_schedule, config.epochs)
    kind, base, *args = schedule.spec
    if kind == "step":
        formula = f"{base!r} * {args[1]!r} ** (epoch // {args[0]!r})"
    elif kind == "exponential":
        formula = f"{base!r} * {args[0]!r} ** epoch"
    else:
        low = float(args[0])
        formula = (f"{low!r} + ({base!r} - {low!r}) * "
                   f"(1 + math.cos(math.pi * epoch / {schedule.t_max!r})) / 2")
    return (f'\n\ndef lr_at(epoch):\n    """The learning rate of epoch ``epoch`` (from 0): '
            f'{py_literal(tuple(schedule.spec))}."""\n    return {formula}\n')


def _optimizer_code(settings: dict, config: FitConfig, device: torch.device) -> str:
    """``torch.optim.<Name>(...)`` with what the kit's optimizer holds that differs from
    the class's defaults (the learning rate and weight decay always)."""
    probe = make_optimizer(settings["optimizer"], [torch.nn.Parameter(torch.zeros(1))],
                           settings["learning_rate"], 0.0, device, config.nesterov)
    cls = type(probe)
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    args = ["model.parameters()", "lr=LEARNING_RATE", "weight_decay=WEIGHT_DECAY"]
    args += [f"{name}={value!r}" for name, value in probe.defaults.items()
             if name not in ("lr", "weight_decay") and name in defaults
             and value != defaults[name]]
    return f"torch.optim.{cls.__name__}({', '.join(args)})"


def _train(settings: dict, config: FitConfig, device: torch.device, frozen: list[str]) -> str:
    lines = [
        "", "", "def train(x, y):",
        '    """Build, initialise and train the network on (x, y) as xb.fit does; returns',
        '    (model, the last epoch\'s mean loss), or (model, None) after a non-finite step."""',
        "    if INIT_SEED is not None:",
        "        torch.manual_seed(INIT_SEED)",
        "    model = Net()",
        "    init_weights(model)",
        "    model.to(DEVICE)",
    ]
    if frozen:
        lines += ["    for name in FROZEN:",
                  "        for p in getattr(model, name).parameters():",
                  "            p.requires_grad_(False)"]
    lines += [
        f"    optimizer = {_optimizer_code(settings, config, device)}",
        "    x, y = x.to(DEVICE), y.to(DEVICE)",
        "    seed = SEED if SEED is not None else int(torch.randint(0, 2**62, (1,)))",
        "    shuffler = torch.Generator().manual_seed(seed)  # the sample order",
        "    if SEED is not None:",
        "        torch.manual_seed(SEED)  # dropout draws from the global generator",
    ]
    forward = "model"
    if config.compile:
        lines.append("    compiled = torch.compile(model)")
        forward = "compiled"
    lines.append("    model.train()")
    if frozen:
        lines += ["    for name in FROZEN:",
                  "        getattr(model, name).eval()"]
    lines += [
        "    n = x.shape[0]",
        "    epoch_loss = None",
        "    for epoch in range(EPOCHS):",
    ]
    if config.lr_schedule is not None:
        lines += ["        for param_group in optimizer.param_groups:",
                  "            param_group[\"lr\"] = lr_at(epoch)"]
    lines += [
        "        order = (torch.randperm(n, generator=shuffler).to(DEVICE) if SHUFFLE",
        "                 else torch.arange(n, device=DEVICE))",
        "        batches = [order[lo:lo + BATCH_SIZE] for lo in range(0, n, BATCH_SIZE)]",
        "        total = 0.0",
        "        for first in range(0, len(batches), ACCUMULATE):  # one optimizer step each",
        "            group = batches[first:first + ACCUMULATE]",
        "            samples = sum(len(idx) for idx in group)",
        "            for idx in group:",
        "                xb, yb = x.index_select(0, idx), y.index_select(0, idx)",
    ]
    if config.precision == "bf16":
        lines += ["                with torch.autocast(DEVICE.type, dtype=torch.bfloat16):",
                  f"                    loss = loss_fn({forward}(xb), yb)"]
    else:
        lines.append(f"                loss = loss_fn({forward}(xb), yb)")
    lines += [
        "                # a group's batches weigh by their samples",
        "                (loss * (len(idx) / samples) if len(idx) != samples else loss).backward()",
        "                value = loss.item()",
    ]
    if config.terminate_on_nan:
        lines += ["                if not math.isfinite(value):",
                  "                    print(f\"epoch {epoch + 1}: the loss is {value}; stopped\")",
                  "                    return model, None"]
    lines += [
        "                total += value * len(idx)",
        "            params = [p for p in model.parameters() if p.grad is not None]",
        "            if CLIP_VALUE is not None:",
        "                torch.nn.utils.clip_grad_value_(params, CLIP_VALUE)",
        "            if CLIP_NORM is not None:",
        "                torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)",
    ]
    if config.terminate_on_nan:
        lines += ["            if not all(bool(torch.isfinite(p.grad).all()) for p in params):",
                  "                print(f\"epoch {epoch + 1}: the gradients are not finite; stopped\")",
                  "                return model, None"]
    lines += [
        "            optimizer.step()",
        "            optimizer.zero_grad(set_to_none=True)",
        "        epoch_loss = total / n",
        "        print(f\"epoch {epoch + 1}/{EPOCHS}: loss {epoch_loss:.4f}\")",
        "    return model, epoch_loss",
    ]
    return "\n".join(lines) + "\n"


_MAIN = '''

def load_data(path):
    """x and y from an .npz file, as float features and prepared targets."""
    with np.load(path) as data:
        return torch.from_numpy(data["x"]).float(), prepare_targets(torch.from_numpy(data["y"]))


if __name__ == "__main__":
    x, y = load_data(sys.argv[1] if len(sys.argv) > 1 else "data.npz")
    model, loss = train(x, y)
    torch.save(model.state_dict(), sys.argv[2] if len(sys.argv) > 2 else "weights.pt")
'''
