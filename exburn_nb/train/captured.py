"""The captured step engine (``FitConfig(compile=True)``): a training step compiled once
and reused.

What one compiled graph does, :class:`~exburn_nb.train.engine.SingleEngine` does in a few
hundred eager dispatches: the forward pass, the loss, the backward pass (``torch.func``'s
``grad_and_value``, so no autograd tape at run time), clipping (values, then the norm, as
``torch.nn.utils`` does), the non-finite check and the optimizer's update, in place on
the model's weights and its optimizer's own state (so an eager step, a checkpoint or a
later fit carry on from them). The guard writes the update only where the loss and the
clipped gradients are finite (``torch.where``, fused into the update's kernels: no copy
of the weights), so a refused step changes nothing.

- **On the CPU** the graph is traced once (``make_fx``, on fake tensors: no real kernel
  runs and no random number is drawn) and inductor compiles it to C++ kernels and a C++
  wrapper that calls them (it needs a C++ compiler: without one the run is refused
  before any step). It is called directly, without ``torch.compile``'s frame hook and
  guards, which cost about 130 µs a call on the guide's MLP (the key under which a graph
  is kept, shapes, dtypes, the network and the settings, is what those guards would
  check), and without aot_autograd's run-time wrapper
  (:func:`~exburn_nb.base.torch_internals.inductor_compile`).
  The update is :func:`~exburn_nb.core.optim.update_rule`'s, with its few scalars (the
  rate, Adam's bias corrections) computed on the host in float64 for each step and
  passed in: inductor would otherwise recompute a scalar power in every iteration of
  the update's loop. They are written into one numpy-backed tensor, and the graph
  writes the loss and the guard's outcome into another, read back through numpy: a
  step runs no torch operator besides the graph (each costs 5-20 µs with the caches
  cold from the update).
- **On CUDA** the whole step is one ``torch.compile`` graph run as CUDA graphs
  (``mode="reduce-overhead"``); the update is torch's functional optimizer
  (``torch.optim.adam.adam`` and friends), its bias corrections computed on the device
  from the step counts, so no batch waits for the host.

Either way:

- **Ragged batches, accumulation, large rates, frozen layers.** The graph is captured
  for the run's full batch; the last, smaller batch of an epoch (eager rather than a
  second graph or a dynamic batch dimension: one eager batch per epoch costs less than a
  compile, and a dynamic graph runs slower), runs with ``accumulate_gradients > 1``, a
  model with frozen layers (which a dashboard may toggle between batches) and steps
  above the overflow guard's rate (:data:`~exburn_nb.train.engine.
  OVERFLOW_GUARD_LR`, whose undo needs a copy of the weights) take the eager step on the
  same weights and state. One compile per shape, no recompile per epoch.
- **Learning rate.** Passed to the graph as a tensor (the CPU rule's scalars, the CUDA
  graph's 0-d rate). A schedule does not recompile.
- **Random draws.** On the CPU dropout draws from torch's global generator in eager
  order (inductor's ``fallback_random``), so a seeded captured run draws the masks its
  eager run draws. On CUDA (``mode="reduce-overhead"``) inductor draws them from its own
  generator, seeded from torch's: a seeded run repeats itself, with other masks than
  eager's.
- **A network the tracer cannot follow** (a custom layer kind whose Python branches on
  its values, say) trains eagerly, with a warning saying why; nothing is lost.
- **Reuse.** The compiled step is kept per model and per (shape, settings): later epochs
  and later fits of the same shapes reuse it (:func:`graphs_built` counts the compiles).
  ``compile_seconds`` (also in the run's entry of ``model.runs``) is the first captured
  step's time, compile included.

Example:
    >>> model = xb.fit(model, (x, y), epochs=3, compile=True)  # doctest: +SKIP
    >>> model.runs[-1]["compile_seconds"]  # doctest: +SKIP
    4.2
"""

from __future__ import annotations

import shutil
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad_and_value
from torch.fx.experimental.proxy_tensor import make_fx

from ..base.torch_internals import inductor_compile, mark_static_address
from ..core.config import FitConfig
from ..core.model import Model
from ..core.optim import COUNTS_STEPS, OPTIMIZER_STATE, update_rule
from .engine import OVERFLOW_GUARD_LR, SingleEngine, finite_rows

_CACHE: weakref.WeakKeyDictionary[Model, dict[tuple, Callable]] = weakref.WeakKeyDictionary()
_BUILT = [0]  # graphs compiled in this process
_EAGER = object()  # no captured step is pending: the next step() is the eager one


def graphs_built() -> int:
    """How many captured steps this process has compiled (a reused one counts once; the
    stacked sweep's count too, :func:`count_built_graph`).

    Example:
        >>> before = graphs_built()  # doctest: +SKIP
        >>> xb.fit(model, data, epochs=2, compile=True); graphs_built() - before  # doctest: +SKIP
        1
    """
    return _BUILT[0]


def count_built_graph() -> None:
    """Count one more compiled step in :func:`graphs_built`."""
    _BUILT[0] += 1


def check_compilable(device: torch.device) -> None:
    """Raise a ``ValueError`` when ``torch.compile`` cannot build kernels for ``device``
    (on the CPU inductor compiles C++: it needs ``g++`` or another C++ compiler).

    Example:
        >>> check_compilable(torch.device("cpu"))  # doctest: +SKIP
    """
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ValueError("compile=True needs a C++ compiler on the CPU (torch.compile's "
                         "inductor builds C++ kernels) and none was found (g++, c++, clang++); "
                         "install one (apt-get install g++) or train with compile=False")


def warn_uncapturable(exc: Exception) -> None:
    """Say that the training step could not be captured (why, in a line) and trains
    eagerly; the caller goes on with the eager step.

    Example:
        >>> warn_uncapturable(TypeError("a branch on a value"))  # doctest: +SKIP
        RuntimeWarning: compile=True: this network's training step could not be captured ...
    """
    reason = (str(exc).strip().splitlines() or [""])[0][:300]
    warnings.warn(f"compile=True: this network's training step could not be captured "
                  f"({type(exc).__name__}: {reason}); it trains eagerly", RuntimeWarning,
                  stacklevel=4)


def _functional_update(kind: str, group: dict) -> Callable:
    """The optimizer's update as a function of lists of tensors and a 0-d rate tensor:
    torch's own functional optimizer (single-tensor form, which inductor fuses)."""
    common = {"weight_decay": group["weight_decay"], "maximize": False}
    if kind in ("adam", "adamw"):
        from torch.optim.adam import adam as update
        beta1, beta2 = group["betas"]
        return lambda p, g, s, steps, lr: update(
            p, g, s[0], s[1], [], steps, foreach=False, decoupled_weight_decay=kind == "adamw",
            amsgrad=False, beta1=beta1, beta2=beta2, lr=lr, eps=group["eps"], **common)
    if kind == "sgd":
        from torch.optim.sgd import sgd as update
        return lambda p, g, s, steps, lr: update(
            p, g, s[0], foreach=False, momentum=group["momentum"], lr=lr, dampening=0.0,
            nesterov=group["nesterov"], **common)
    from torch.optim.rmsprop import rmsprop as update
    return lambda p, g, s, steps, lr: update(
        p, g, s[0], [], [], steps, foreach=False, lr=lr, alpha=group["alpha"],
        eps=group["eps"], momentum=0.0, centered=False, **common)


def _clip(grads: list[torch.Tensor], clip_norm: float | None,
          clip_value: float | None) -> list[torch.Tensor]:
    """``clip_gradients``'s arithmetic on values (no in-place ``torch.nn.utils`` calls):
    clamp each element, then scale to the global L2 norm (same ``1e-6`` as torch)."""
    if clip_value is not None:
        grads = [g.clamp(-clip_value, clip_value) for g in grads]
    if clip_norm is not None:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                      for g in grads]))
        coef = torch.clamp(clip_norm / (total + 1e-6), max=1.0)
        grads = [g * coef for g in grads]
    return grads


def _loss_function(model: Model, config: FitConfig, device_type: str) -> Callable:
    """``(weights, x, y) -> (loss, output)``: the model's loss as a function of its
    weights (in ``named_parameters`` order), under the run's precision."""
    module, lossfn = model.module, model.loss
    names = [n for n, _ in module.named_parameters()]
    bf16 = config.precision == "bf16"

    def loss_of(weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            out = functional_call(module, dict(zip(names, weights, strict=True)), (x,))
            loss = lossfn(out, y)
        return loss, out

    return loss_of


def _clipped_gradients(loss_of: Callable, config: FitConfig, weights: Sequence[torch.Tensor],
                       x: torch.Tensor, y: torch.Tensor) -> tuple[list, torch.Tensor,
                                                                  torch.Tensor]:
    """``(gradients, loss, output)`` of :func:`_loss_function`'s ``loss_of`` at
    ``weights``, the gradients clipped as the run asks (``torch.func``: no autograd tape)."""
    grads, (loss, out) = grad_and_value(loss_of, has_aux=True)(list(weights), x, y)
    return _clip(grads, config.clip_norm, config.clip_value), loss, out


def _finite(loss: torch.Tensor, grads: list[torch.Tensor]) -> torch.Tensor:
    """Whether the loss and every gradient are finite, as a 0-d bool tensor
    (:func:`~exburn_nb.train.engine.finite_rows` on one row)."""
    return finite_rows([loss.reshape(1), *(g.reshape(1, -1) for g in grads)]).reshape(())


def _build_cpu_step(model: Model, config: FitConfig, group: dict,
                    example: list[torch.Tensor]) -> Callable:
    """The CPU graph of the whole step ``(x, y, h, out, *weights, *state, *steps) ->
    (correct,)``, traced on fake tensors and compiled by inductor (its C++ wrapper: no
    Python between the kernels).

    ``state`` is the optimizer's, slot by slot (:data:`OPTIMIZER_STATE` order), ``steps``
    its step counts (none for SGD), ``h`` the rule's scalars for this step
    (:func:`~exburn_nb.core.optim.update_rule`); weights, state and step counts are
    written in place, and with the guard only where the loss and every gradient are
    finite. ``out`` (two floats) receives the loss and whether the step was kept (1.0;
    always when the run has no guard), for the host to read without a torch call;
    ``correct`` is a 0-d zero when the run does not ask for it."""
    loss_of, lossfn = _loss_function(model, config, "cpu"), model.loss
    rule = update_rule(model.optimizer, group)[0]
    n, slots = len(model.torch_optimizer.param_groups[0]["params"]), len(
        OPTIMIZER_STATE[model.optimizer])
    guard, accuracy = config.terminate_on_nan, config.accuracy

    def step(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, out: torch.Tensor,
             *tensors: torch.Tensor):
        weights, steps = tensors[:n], tensors[n * (1 + slots):]
        state = [tensors[n * (1 + i):n * (2 + i)] for i in range(slots)]
        grads, loss, output = _clipped_gradients(loss_of, config, weights, x, y)
        correct = lossfn.correct(output.detach(), y) if accuracy else loss.new_zeros(())
        ok = _finite(loss, grads) if guard else loss.new_ones((), dtype=bool)
        for i, (p, g) in enumerate(zip(weights, grads, strict=True)):
            old = (p, *(slot[i] for slot in state))
            new_p, new_state = rule(p, g, old[1:], h)
            for t, new in zip(old, (new_p, *new_state), strict=True):
                if new is not t:
                    t.copy_(torch.where(ok, new, t) if guard else new)
        for t in steps:
            t.copy_(torch.where(ok, t + 1, t) if guard else t + 1)
        out.copy_(torch.stack([loss.detach().float(), ok.float()]))
        return (correct,)

    graph = make_fx(step, tracing_mode="fake")(*example)
    # dropout masks from torch's generator, in eager order
    return inductor_compile(graph, example, fallback_random=True, cpp_wrapper=True)


def _build_step(model: Model, config: FitConfig, group: dict) -> Callable:
    """The CUDA graph of the whole step
    ``(x, y, params, state, steps, lr) -> (loss, correct, ok)``."""
    loss_of, lossfn, kind = _loss_function(model, config, "cuda"), model.loss, model.optimizer
    update = _functional_update(kind, group)
    guard, accuracy = config.terminate_on_nan, config.accuracy

    def step(x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor],
             state: list[list[torch.Tensor]], steps: list[torch.Tensor], lr: torch.Tensor):
        grads, loss, out = _clipped_gradients(loss_of, config, [p.detach() for p in params],
                                              x, y)
        correct = lossfn.correct(out.detach(), y) if accuracy else None
        with torch.no_grad():
            if not guard:
                update(params, grads, state, steps, lr)
                return loss.detach(), correct, None
            ok = _finite(loss, grads)
            kept = [t.clone() for t in (*params, *(s for slot in state for s in slot),
                                        *steps)]
            update(params, grads, state, steps, lr)
            for t, old in zip((*params, *(s for slot in state for s in slot), *steps), kept,
                              strict=True):
                t.copy_(torch.where(ok, t, old))
        return loss.detach(), correct, ok

    return torch.compile(step, mode="reduce-overhead", dynamic=False)


class CapturedEngine(SingleEngine):
    """The step engine of ``compile=True``: :class:`SingleEngine` with the step captured
    (see the module docstring for what runs eagerly, and why).

    Attributes:
        compiling: True until the run's first captured step is done (the dashboard says
            "compiling…" meanwhile); False from the start for a run that captures no step
            (``accumulate_gradients > 1``).
        compile_seconds: the first captured step's time (compile included; near zero
            when the step came from the cache), or None before it.

    Example:
        >>> engine = CapturedEngine(model, xb.FitConfig(compile=True))  # doctest: +SKIP
    """

    def __init__(self, model: Model, config: FitConfig):
        super().__init__(model, config)
        check_compilable(model.torch_device)
        self.compiling = config.accumulate_gradients == 1  # until the first captured step
        self.compile_seconds: float | None = None
        self._whole = model.torch_device.type == "cuda"  # the update inside the graph
        self._ok: Any = _EAGER  # the pending captured step's outcome, or _EAGER: none
        self._tensors: list[torch.Tensor] = []  # the CPU graph's weights, state, step counts
        self._scalars: Callable | None = None  # the CPU update rule's scalars
        self._h_values = np.zeros(0, dtype=np.float32)  # their values, rewritten in place
        self._h = torch.from_numpy(self._h_values)  # before each CPU step; the graph reads
        self._out_values = np.zeros(2, dtype=np.float32)  # the CPU step writes its loss
        self._out = torch.from_numpy(self._out_values)  # and its guard's outcome here
        self._steps_seen: Any = None  # a numpy view of the step count, kept with _tensors
        self._state0: dict | None = None  # the first weight's optimizer state, when gathered
        self._fn: Callable | None = None
        self._run: int | None = None
        self._lr = torch.zeros((), device=model.torch_device)
        self._weights: list[torch.Tensor] = []
        self._uncapturable = False  # the step could not be traced: eager from then on

    def start(self, seeds: Sequence[int] | None) -> None:
        """As :class:`SingleEngine` does; then the optimizer state (created as
        ``torch.optim`` creates it, so the first step is a fused one too) and the rate
        as a tensor for the CUDA graph."""
        super().start(seeds)
        opt, device = self.model.torch_optimizer, self.model.torch_device
        kind = self.model.optimizer
        for p in self.params:
            state = opt.state[p]
            for key in OPTIMIZER_STATE[kind]:
                if key not in state:
                    state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if kind in COUNTS_STEPS and "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=device)
        self._lr.fill_(self.learning_rate(0))
        if self._whole:  # CUDA graphs replay on fixed addresses: tell dynamo
            for t in (self._lr, *(v for p in self.params for v in opt.state[p].values())):
                mark_static_address(t)
        self._weights = [p.detach() for p in self.params]
        self._tensors = []  # gathered at the first captured step
        self._scalars = update_rule(kind, opt.param_groups[0])[1]
        self._h_values = np.array(self._scalars(self.learning_rate(0), 1), dtype=np.float32)
        self._h = torch.from_numpy(self._h_values)
        self._fn = None
        self._run = self.model.recorder.runs[-1]["run"] if self.model.recorder.runs else None

    def _captures(self, xb: torch.Tensor) -> bool:
        """Whether this batch takes the captured step (see the module docstring)."""
        cfg = self.config
        return (not self._uncapturable and cfg.accumulate_gradients == 1
                and xb.shape[0] == cfg.batch_size
                and (not cfg.terminate_on_nan or self.learning_rate(0) <= OVERFLOW_GUARD_LR)
                and not self.model.frozen_layers)

    def _step_fn(self, xb: torch.Tensor, yb: torch.Tensor) -> Callable:
        """The compiled step for this batch's shapes and the run's settings: from the
        cache, or built. The key holds all a graph depends on (the network's layers by
        identity and description; on CUDA the optimizer's settings, which the graph
        holds)."""
        cfg, model = self.config, self.model
        key = (tuple(xb.shape), xb.dtype, tuple(yb.shape), yb.dtype, id(model.module),
               repr(model.module), cfg.clip_norm, cfg.clip_value, cfg.terminate_on_nan,
               cfg.accuracy, cfg.precision)
        group = {k: v for k, v in model.torch_optimizer.param_groups[0].items()
                 if k not in ("params", "lr", "initial_lr")}
        key += (model.optimizer, repr(sorted(group.items())))
        steps = _CACHE.setdefault(model, {})
        if key not in steps:
            steps[key] = (_build_step(model, cfg, group) if self._whole else _build_cpu_step(
                model, cfg, group, [xb, yb, self._scalars_now(), self._out, *self._tensors]))
            count_built_graph()
        return steps[key]

    def forward_backward(self, xb: torch.Tensor, yb: torch.Tensor, scale: float,
                         active: Sequence[bool]) -> tuple[torch.Tensor | list[float],
                                                          torch.Tensor | None]:
        """A full batch: the captured step (the update is written, or withheld by the
        guard, here; on the CPU its loss comes back as ``[float]``, read with its guard's
        outcome in one numpy read). Other batches: the eager pass."""
        if not self._captures(xb):
            return super().forward_backward(xb, yb, scale, active)
        started = time.perf_counter() if self.compiling else None
        fn = self._fn if self._fn is not None else self._traced_step_fn(xb, yb)
        if fn is None:
            return super().forward_backward(xb, yb, scale, active)
        if self._whole:
            loss, correct, ok = self._whole_step(fn, xb, yb)
        else:
            h = self._scalars_now()  # gathers the tensors again after an eager step
            correct = fn(xb, yb, h, self._out, *self._tensors)[0]
            value, kept = self._out_values.tolist()
            loss, correct, ok = [value], correct if self.config.accuracy else None, kept == 1.0
        if started is not None:
            self._compiled(time.perf_counter() - started)
        self._fn, self._ok = fn, ok
        return loss, correct

    def _traced_step_fn(self, xb: torch.Tensor, yb: torch.Tensor) -> Callable | None:
        """:meth:`_step_fn`, or None (with a warning) where the step cannot be traced."""
        try:
            return self._step_fn(xb, yb)
        except Exception as exc:  # noqa: BLE001 - any tracing failure: train eagerly
            self._uncapturable, self.compiling = True, False
            warn_uncapturable(exc)
            return None

    def _gather(self) -> None:
        """The CPU graph's tensors: weights, the optimizer's state slot by slot, its step
        counts (kept until an eager step runs: an overflow guard's undo replaces them, or
        until the optimizer's state is replaced), and a numpy view of the first step
        count (read without a torch call; a step taken outside the engine shows in it)."""
        opt, kind = self.model.torch_optimizer, self.model.optimizer
        state = [opt.state[p] for p in self.params]
        self._tensors = [*self._weights, *(s[key] for key in OPTIMIZER_STATE[kind]
                                           for s in state),
                         *(s["step"] for s in state if kind in COUNTS_STEPS)]
        self._steps_seen = state[0]["step"].numpy() if kind in COUNTS_STEPS else None
        self._state0 = state[0]

    def _scalars_now(self) -> torch.Tensor:
        """The CPU update rule's scalars for the coming step (its rate and step count),
        written into the one tensor the graph reads (through numpy: no torch operator
        runs for them)."""
        if not self._tensors or self.model.torch_optimizer.state.get(
                self.params[0]) is not self._state0:
            self._gather()
        step = int(self._steps_seen) + 1 if self._steps_seen is not None else 1
        self._h_values[:] = self._scalars(self.learning_rate(0), step)
        return self._h

    def _whole_step(self, fn: Callable, xb: torch.Tensor, yb: torch.Tensor) -> tuple:
        opt, kind = self.model.torch_optimizer, self.model.optimizer
        state = [[opt.state[p][key] for p in self.params] for key in OPTIMIZER_STATE[kind]]
        steps = [opt.state[p]["step"] for p in self.params] if kind in COUNTS_STEPS else []
        loss, correct, ok = fn(xb, yb, self.params, state, steps, self._lr)
        # a CUDA graph's outputs are overwritten by its next replay, and the history
        # reads the losses later
        return loss.clone(), correct.clone() if correct is not None else None, ok

    def _compiled(self, seconds: float) -> None:
        self.compiling, self.compile_seconds = False, seconds
        if self._run is not None:
            self.model.recorder.note_run(self._run, compile_seconds=round(seconds, 3))

    def step(self, active: Sequence[bool]) -> list[str | None]:
        """After a captured step, its outcome; after an eager pass, the eager guarded step."""
        ok, self._ok = self._ok, _EAGER
        if ok is _EAGER:
            self._tensors = []  # gathered again at the next captured step
            return super().step(active)
        if ok is not None and not bool(ok):
            return ["the gradients are not finite"]
        return [None]

    def set_learning_rate(self, member: int, lr: float) -> None:
        """Use ``lr`` from the next step on (captured and eager steps alike)."""
        super().set_learning_rate(member, lr)
        self._lr.fill_(self.learning_rate(0))

    def finish(self) -> None:
        """As :class:`SingleEngine`; a captured step never ends with gradients held."""
        self._ok, self._tensors = _EAGER, []
        super().finish()


def make_engine(model: Model, config: FitConfig) -> Any:
    """The step engine ``config`` asks for: :class:`CapturedEngine` with
    ``compile=True``, else :class:`SingleEngine`.

    Example:
        >>> type(make_engine(model, xb.FitConfig())).__name__  # doctest: +SKIP
        'SingleEngine'
    """
    return CapturedEngine(model, config) if config.compile else SingleEngine(model, config)
