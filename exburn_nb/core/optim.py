"""Optimizers with the guide's constants, and learning-rate schedules.

Example:
    >>> sched = make_schedule(("step", 1e-3, 10, 0.5), epochs=30)
    >>> [sched(e) for e in (0, 9, 10, 25)]
    [0.001, 0.001, 0.0005, 0.00025]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable

import torch

from ..base.checks import check_int, check_number
from ..base.torch_internals import foreach_add_, fused_adam_, fused_kernel_devices
from ..base.vocabulary import OPTIMIZERS

SCHEDULES = {"step": ("base_lr", "step_size", "gamma"), "exponential": ("base_lr", "gamma"),
             "cosine": ("base_lr", "min_lr")}
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
SGD_MOMENTUM = 0.9
RMSPROP_DECAY, RMSPROP_EPS = 0.9, 1e-8
# the state each kind keeps per parameter besides its step count, in update_rule's order
OPTIMIZER_STATE = {"adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
                   "sgd": ("momentum_buffer",), "rmsprop": ("square_avg",)}
COUNTS_STEPS = ("adam", "adamw", "rmsprop")  # kinds that count steps in a 0-d "step" tensor


def fused_supported(device: torch.device) -> bool:
    """Whether torch has fused optimizer kernels for this device type."""
    return device.type in fused_kernel_devices()


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], learning_rate: float,
                   weight_decay: float = 0.0, device: torch.device | None = None,
                   nesterov: bool = False) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer with the guide's constants.

    adam: betas (0.9, 0.999), eps 1e-8, ``weight_decay`` as L2 (added to the gradient);
    adamw: the same with decoupled weight decay; sgd: momentum 0.9, optional Nesterov;
    rmsprop: decay (alpha) 0.9, eps 1e-8. Fused kernels are used where torch has them
    for the device (same math, fewer kernel launches).
    """
    check_optimizer(name)
    check_number("learning_rate", learning_rate, positive=True)
    check_number("weight_decay", weight_decay)
    fused = {"fused": True} if device is not None and fused_supported(device) else {}
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS,
                                weight_decay=weight_decay, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS,
                                 weight_decay=weight_decay, **fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=SGD_MOMENTUM,
                               nesterov=nesterov, weight_decay=weight_decay, **fused)
    return torch.optim.RMSprop(params, lr=learning_rate, alpha=RMSPROP_DECAY, eps=RMSPROP_EPS,
                               weight_decay=weight_decay)


def optimizer_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """``optimizer.step()``, where ``params`` are the optimizer's parameters that have
    gradients (those ``step`` updates).

    A fused Adam or AdamW of one param group whose state exists (after its first step)
    takes the step through torch's fused kernel directly: exactly the calls its ``step``
    makes (the step counts, then ``_fused_adam_``/``_fused_adamw_`` with the group's
    values), without the Python around them (hooks, profiling, grouping by device), which
    costs ~100 µs a step: a third of a batch-32 step of a small MLP on the CPU. Step hooks
    registered on the optimizer run only on ``step()``; any other optimizer, and the
    first step (which creates the state), go through ``step()``.

    Example:
        >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
        >>> opt = make_optimizer("adam", [p], 0.1, device=torch.device("cpu"))
        >>> optimizer_step(opt, [p]); optimizer_step(opt, [p]); p.detach()
        tensor([0.8000, 0.8000])
    """
    groups = optimizer.param_groups
    g = groups[0]
    if (len(groups) != 1 or not isinstance(optimizer, torch.optim.Adam) or not g["fused"]
            or g["amsgrad"] or g["capturable"] or g["differentiable"]
            or any(isinstance(v, torch.Tensor) for v in (g["lr"], *g["betas"]))):
        optimizer.step()
        return
    state = optimizer.state
    states = [state.get(p) for p in params]  # .get: the defaultdict gains no entry
    if not params or not all(s and "step" in s for s in states):
        optimizer.step()
        return
    steps = [s["step"] for s in states]
    foreach_add_(steps, 1)
    beta1, beta2 = g["betas"]
    fused_adam_(g.get("decoupled_weight_decay", False), [p.detach() for p in params],
                [p.grad for p in params], [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=g["lr"],
                beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"], eps=g["eps"],
                maximize=g["maximize"])


def update_rule(kind: str, group: dict) -> tuple[Callable, Callable]:
    """One optimizer's update as a pure function of tensors, for a captured step:
    ``(rule, scalars)``.

    - ``scalars(lr, step)``: this step's numbers as Python floats, computed in float64 as
      torch's fused kernels compute them (Adam's bias corrections), for step number
      ``step`` (1 for the first). A graph takes them as a 1-d tensor ``h``, so a new rate
      or step count needs no new graph, and no scalar power is recomputed inside a
      kernel's loop.
    - ``rule(p, g, state, h) -> (p, state)``: the new weights and state (a tuple in
      :data:`OPTIMIZER_STATE` order) from the gradients ``g``, by :func:`adam_update`,
      :func:`sgd_update` or :func:`rmsprop_update` with ``group``'s constants (its betas,
      eps, momentum, alpha, weight decay, Nesterov flag).

    Example:
        >>> rule, scalars = update_rule("sgd", {"weight_decay": 0.0, "momentum": 0.0,
        ...                                     "nesterov": False})
        >>> h = torch.tensor(scalars(0.5, 1))
        >>> rule(torch.ones(2), torch.ones(2), (torch.zeros(2),), h)[0]
        tensor([0.5000, 0.5000])
    """
    wd = group["weight_decay"]
    if kind in ("adam", "adamw"):
        beta1, beta2 = group["betas"]
        constants = {"one_minus_beta1": 1 - beta1, "beta2": beta2, "one_minus_beta2": 1 - beta2,
                     "eps": group["eps"]}
        if kind == "adam":
            constants["weight_decay"] = wd

        def scalars(lr: float, step: int) -> list[float]:
            return [lr / (1 - beta1 ** step), 1 / math.sqrt(1 - beta2 ** step), 1 - lr * wd]

        def rule(p, g, state, h):
            c = {**constants, "step_size": h[0], "inv_bc2": h[1]}
            p, m, v = adam_update(p, g, *state, c | ({"decay": h[2]} if kind == "adamw" else {}))
            return p, (m, v)

        return rule, scalars
    if kind == "sgd":
        return _rate_rule(sgd_update, {"momentum": group["momentum"],
                                       "nesterov": group["nesterov"], "weight_decay": wd})
    return _rate_rule(rmsprop_update, {"alpha": group["alpha"],
                                       "one_minus_alpha": 1 - group["alpha"],
                                       "eps": group["eps"], "weight_decay": wd})


def _rate_rule(update: Callable, constants: dict) -> tuple[Callable, Callable]:
    """:func:`update_rule` for a kind with one slot of state whose only scalar is the rate."""

    def rule(p, g, state, h):
        p, slot = update(p, g, state[0], {**constants, "lr": h[0]})
        return p, (slot,)

    return rule, lambda lr, step: [lr]


def _l2(p: torch.Tensor, g: torch.Tensor, c: dict) -> torch.Tensor:
    """The gradient with L2 weight decay ``c["weight_decay"]`` added (torch's
    ``grad.add(param, alpha=wd)``); none when it is absent or a Python zero."""
    wd = c.get("weight_decay")
    return g if wd is None or (isinstance(wd, float) and not wd) else g + wd * p


def adam_update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                c: dict, out: tuple | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam's (and AdamW's) step: ``(p, m, v)`` after it, as new tensors, or written into
    ``out`` (``(p, m, v)`` themselves for an eager step in place).

    ``c`` holds Python floats or tensors that broadcast over ``p`` (a stacked sweep's
    per-member values): ``one_minus_beta1``, ``beta2``, ``one_minus_beta2``, ``eps``,
    ``step_size`` (``lr / (1 - beta1 ** step)``), ``inv_bc2`` (``1 / sqrt(1 - beta2 **
    step)``), and ``decay`` (AdamW: ``1 - lr * weight_decay``) or ``weight_decay``
    (Adam's L2). The arithmetic is torch's fused kernel's, op for op, but for the
    denominator: ``sqrt(v) * inv_bc2 + eps`` multiplies where torch divides (one
    division an element instead of two; the result differs in the last bit at most).
    Other in-place operations only touch tensors made here.

    Example (the first step, rate 0.1: every weight moves by the rate):
        >>> c = {"one_minus_beta1": 0.1, "beta2": 0.999, "one_minus_beta2": 0.001,
        ...      "eps": 1e-8, "step_size": 0.1 / 0.1, "inv_bc2": 1 / 0.001 ** 0.5}
        >>> adam_update(torch.ones(2), torch.ones(2), torch.zeros(2), torch.zeros(2), c)[0]
        tensor([0.9000, 0.9000])
    """
    o = out or (None, None, None)
    if "decay" in c:
        p_decayed = p * c["decay"]
    else:
        p_decayed, g = p, _l2(p, g, c)
    m = torch.lerp(m, g, c["one_minus_beta1"], out=o[1])
    v = torch.add(v * c["beta2"], (g * g).mul_(c["one_minus_beta2"]), out=o[2])
    denom = v.sqrt().mul_(c["inv_bc2"]).add_(c["eps"])
    return torch.sub(p_decayed, (c["step_size"] * m).div_(denom), out=o[0]), m, v


def sgd_update(p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor, c: dict,
               out: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SGD's step (dampening 0): ``(p, buf)`` after it, new or written into ``out``.
    ``c``: ``lr``, ``momentum`` (a Python zero: no buffer, ``buf`` comes back as it
    was), ``nesterov`` (a bool, or a bool tensor that broadcasts over ``p``),
    ``weight_decay``. The buffer starts as zeros: the first step makes it the gradient,
    as torch's clone does."""
    o = out or (None, None)
    g = _l2(p, g, c)
    momentum, nesterov = c["momentum"], c["nesterov"]
    if isinstance(momentum, torch.Tensor) or momentum:
        buf = torch.add(buf * momentum, g, out=o[1])
        nesterov_g = g + momentum * buf
        g = (torch.where(nesterov, nesterov_g, buf) if isinstance(nesterov, torch.Tensor)
             else nesterov_g if nesterov else buf)
    return torch.sub(p, c["lr"] * g, out=o[0]), buf


def rmsprop_update(p: torch.Tensor, g: torch.Tensor, square_avg: torch.Tensor, c: dict,
                   out: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSprop's step (not centered, no momentum): ``(p, square_avg)`` after it, new or
    written into ``out``. ``c``: ``lr``, ``alpha``, ``one_minus_alpha``, ``eps``,
    ``weight_decay``."""
    o = out or (None, None)
    g = _l2(p, g, c)
    square_avg = torch.add(square_avg * c["alpha"], (g * g).mul_(c["one_minus_alpha"]),
                           out=o[1])
    return torch.sub(p, (g / square_avg.sqrt().add_(c["eps"])).mul_(c["lr"]),
                     out=o[0]), square_avg


def check_optimizer(name: str) -> str:
    """Raise a clear error for an unknown optimizer name."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    return name


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every param group (takes effect at the next step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


class Schedule:
    """A learning-rate schedule with a position, so a saved run resumes where it was.

    Calling it gives the lr for an epoch index (from 0 within the run); :meth:`advance`
    moves its position one epoch on, and :meth:`state_dict` / :meth:`load_state_dict`
    carry the position and the run length (a cosine keeps the length it was made for).

    Example:
        >>> s = Schedule(("cosine", 1.0, 0.0), epochs=4)
        >>> [round(s(e), 3) for e in range(4)]
        [1.0, 0.854, 0.5, 0.146]
        >>> s.advance(); s.advance(); s.state_dict()
        {'position': 2, 't_max': 4}
    """

    def __init__(self, schedule: object, epochs: int):
        self.spec = check_schedule(schedule)  # plain floats and ints (NumPy values converted)
        self.t_max = max(int(epochs), 1)
        self.position = 0

    @property
    def lr(self) -> float:
        """The learning rate at the current position."""
        return self(self.position)

    def __call__(self, epoch: int) -> float:
        spec = self.spec
        if callable(spec):
            return check_number(f"lr_schedule({epoch})", spec(epoch), positive=True)
        kind, base = spec[0], float(spec[1])
        if kind == "step":
            return base * spec[3] ** (epoch // spec[2])
        if kind == "exponential":
            return base * spec[2] ** epoch
        min_lr = float(spec[2])
        return min_lr + (base - min_lr) * (1 + math.cos(math.pi * epoch / self.t_max)) / 2

    def advance(self) -> None:
        """Move on to the next epoch."""
        self.position += 1

    def state_dict(self) -> dict:
        """The position and run length (plain ints)."""
        return {"position": self.position, "t_max": self.t_max}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output (validated)."""
        for key in ("position", "t_max"):
            check_int(f"schedule state {key}", state.get(key) if isinstance(state, dict)
                      else None, int(key == "t_max"))
        self.position, self.t_max = state["position"], state["t_max"]


def default_schedule(kind: str | None, base_lr: float, epochs: int) -> tuple | None:
    """The guide's tuple for schedule ``kind`` (a key of :data:`SCHEDULES`, or None/"none")
    with default settings, for front ends that offer the schedules by name: step halves
    the rate three times over the run, exponential decays by 0.9 an epoch, cosine anneals
    to 1% of ``base_lr``.

    Example:
        >>> default_schedule("step", 0.1, 30)
        ('step', 0.1, 10, 0.5)
        >>> default_schedule("none", 0.1, 30) is None
        True
    """
    if kind in (None, "none"):
        return None
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of none, {', '.join(SCHEDULES)}; got {kind!r}")
    return {"step": ("step", base_lr, max(1, epochs // 3), 0.5),
            "exponential": ("exponential", base_lr, 0.9),
            "cosine": ("cosine", base_lr, base_lr / 100)}[kind]


def make_schedule(schedule: object, epochs: int) -> Schedule | None:
    """A :class:`Schedule` for ``schedule`` over a run of ``epochs`` epochs, or None.

    ``schedule`` is one of the guide's tuples, or any callable ``epoch -> lr``:

    - ``("step", base_lr, step_size, gamma)``: ``base_lr * gamma ** (epoch // step_size)``
      (``torch.optim.lr_scheduler.StepLR``);
    - ``("exponential", base_lr, gamma)``: ``base_lr * gamma ** epoch`` (``ExponentialLR``);
    - ``("cosine", base_lr, min_lr)``: cosine annealing from ``base_lr`` towards ``min_lr``
      over the run's epochs (``CosineAnnealingLR(T_max=epochs, eta_min=min_lr)``).
    """
    return None if schedule is None else Schedule(schedule, epochs)


def check_schedule(schedule: object) -> object:
    """``schedule`` if it is None, a callable ``epoch -> lr`` or a valid guide tuple."""
    if schedule is None:
        return None
    if callable(schedule):
        _check_callable(schedule)
        return schedule
    if not isinstance(schedule, (tuple, list)) or not schedule or schedule[0] not in SCHEDULES:
        raise ValueError("lr_schedule must be None, a callable epoch -> lr, or one of "
                         "('step', base_lr, step_size, gamma), ('exponential', base_lr, gamma), "
                         f"('cosine', base_lr, min_lr); got {schedule!r}")
    kind, args = schedule[0], tuple(schedule[1:])
    names = SCHEDULES[kind]
    if len(args) != len(names):
        raise ValueError(f"lr_schedule {kind!r} takes ({kind!r}, {', '.join(names)}): "
                         f"{len(names)} values after the name; got {schedule!r}")
    base = check_number("lr_schedule base_lr", args[0], positive=True)
    if kind == "step":
        return (kind, base, check_int("lr_schedule step_size", args[1], 1),
                check_number("lr_schedule gamma", args[2], positive=True))
    if kind == "exponential":
        return (kind, base, check_number("lr_schedule gamma", args[1], positive=True))
    return (kind, base, check_number("lr_schedule min_lr", args[1]))


def _check_callable(fn: Callable[[int], float]) -> None:
    try:
        inspect.signature(fn).bind(0)
    except TypeError:
        raise ValueError(f"lr_schedule must be callable with one argument, the epoch (from 0 "
                         f"within the run); {fn!r} cannot be called as lr_schedule(0)") from None
    except ValueError:  # no introspectable signature (some builtins): checked on first call
        pass
