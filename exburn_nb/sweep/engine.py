"""The stacked step engine: M models of one network trained as one, under the one loop.

:class:`StackedEngine` is a step engine for :class:`~exburn_nb.train.loop.Trainer`
(see :mod:`exburn_nb.train.engine` for the interface): its members' weights are stacked
(:class:`~exburn_nb.sweep.stacked.StackedNet`), one batched forward and backward pass
serves all of them, and :class:`~exburn_nb.sweep.stacked.StackedOptimizer` updates each
with its own learning rate, weight decay, Nesterov flag and clipping thresholds. Member
``m`` draws its dropout masks from its own generator seeded with its run's seed, so it is
the same computation as its own ``xb.fit`` (to float32 round-off).

:class:`StackedTrainer` is that loop with this engine: seeding, schedules, stop and
``stop_member``, the batch and epoch rows of every member, validation, all come from the
loop. Weights and optimizer state are written back into the models when the run ends.

With ``compile=True`` a full batch of a network that draws nothing takes the whole step of
every member as one graph (forward, losses, gradients, clipping, the finite check and the
masked update), as the single model's captured step does on the CPU: traced once on fake
tensors, compiled by inductor with its C++ wrapper, and called without ``torch.compile``'s
guards (about 100 µs a call with 16 members); the last ``GRAPHS_KEPT`` built are kept, so
a study's later sweeps of the same shapes and settings reuse theirs. A network with
dropout keeps its forward eager (each member draws from its own generator) and captures
only the update.

Example:
    >>> import exburn_nb as xb
    >>> (x, y), _ = xb.datasets.digits()
    >>> spec = xb.input("input", shape=(None, 64)).dense(16, activation="relu").dense(10)
    >>> models = [xb.compile(spec, learning_rate=lr, seed=0) for lr in (1e-3, 3e-3)]
    >>> trainer = StackedTrainer(models, [xb.FitConfig(epochs=1, seed=0)] * 2, (x, y))
    >>> [len(m.history) for m in trainer.run()], trainer.stop_reasons
    ([1, 1], [None, None])
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from ..base.torch_internals import inductor_compile
from ..core.config import FitConfig
from ..core.layers import REGISTRY
from ..core.model import Model
from ..core.optim import OPTIMIZER_STATE
from ..train.captured import check_compilable, count_built_graph, warn_uncapturable
from ..train.engine import OVERFLOW_GUARD_LR, finite_rows
from ..train.loop import Trainer
from .planning import check_members, plan
from .stacked import (
    StackedNet,
    StackedOptimizer,
    clip_members,
    finite_members,
    member_correct,
    member_loss,
    update_members,
)

# the captured stacked steps built in this process, by what they bake in (the latest kept:
# a study's later sweeps of the same shapes reuse them)
_GRAPHS: OrderedDict[tuple, Callable] = OrderedDict()
GRAPHS_KEPT = 8


class StackedEngine:
    """The step engine for one stacked group (one :func:`~exburn_nb.sweep.plan` group).

    Args:
        models: fresh compiled models of one spec (dropout rates may differ).
        configs: one :class:`FitConfig` per model.
    """

    lock = contextlib.nullcontext()  # the models are written back only when the run ends

    def __init__(self, models: Sequence[Model], configs: Sequence[FitConfig]):
        self.models, self.configs = list(models), list(configs)
        self.size = len(self.models)
        self.guard = configs[0].terminate_on_nan
        self.accuracy = configs[0].accuracy
        self.loss, self.correct = member_loss(models[0]), member_correct(models[0])
        self.net: StackedNet | None = None
        self.opt: StackedOptimizer | None = None
        self.capture = configs[0].compile
        self._structure: tuple | None = None
        if self.capture:
            check_compilable(models[0].torch_device)
            # what a captured step bakes in besides shapes: the members' layers, the layer
            # kinds' code, the loss, the optimizer's kind, the guard, the counts, clipping
            self._structure = (repr([m.spec for m in models]), tuple(
                id(REGISTRY[la.kind]) for la in models[0].spec.layers), repr(
                models[0].loss_function), models[0].optimizer, str(models[0].torch_device),
                self.guard, self.accuracy, tuple((c.clip_norm, c.clip_value) for c in configs))

    def start(self, seeds: Sequence[int] | None) -> None:
        """Stack the weights, and seed each member's dropout generator with its seed."""
        models, cfgs = self.models, self.configs
        device = models[0].torch_device  # dropout draws on the device, as the model's own run
        self.dropout_gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.net = net = StackedNet(models)
        self.opt = opt = StackedOptimizer(models[0].optimizer, models, net.params)
        opt.weight_decay = [c.weight_decay if c.weight_decay is not None else m.weight_decay
                            for m, c in zip(models, cfgs, strict=True)]
        opt.nesterov = [c.nesterov for c in cfgs]
        self._ok: torch.Tensor | None = None  # a captured step's outcome, for step()
        self._whole: Callable | None = None  # the captured step, for self._whole_keys
        self._whole_keys: list[str] | None = None
        self._weights = [p.detach() for p in net.params]
        self._active: tuple[tuple, torch.Tensor] | None = None  # the flags, as a tensor
        self._traceable = self.capture and not any(
            REGISTRY[la.kind].draws for la in models[0].spec.layers)
        if self.capture:
            if self._traceable:
                opt.init_state()
            else:  # the members' generators stay eager: the update is captured
                opt.capture()

    def _whole_step(self, xb: torch.Tensor, yb: torch.Tensor, active: torch.Tensor,
                    keys: Sequence[str], values: Sequence[torch.Tensor],
                    params: Sequence[torch.Tensor], state: Sequence[dict[str, torch.Tensor]],
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step of every member as a function of its tensors: forward, losses,
        gradients (``torch.func``), clipping, the finite check and the masked update, in
        place on ``params`` and ``state``; ``(losses, correct, ok)`` (``correct`` zeros
        when the run does not count them)."""
        net, opt = self.net, self.opt

        def total(weights: list[torch.Tensor]) -> tuple[torch.Tensor, tuple]:
            out = net.forward_with(weights, xb, None)
            losses = self.loss(out, yb)
            return losses.sum(), (losses, out)

        grads, (losses, out) = torch.func.grad(total, has_aux=True)(list(params))
        clip_members(grads, [c.clip_norm for c in self.configs],
                     [c.clip_value for c in self.configs])
        with torch.no_grad():
            ok = torch.isfinite(losses)
            if self.guard:
                ok = ok & finite_rows(grads)
            update_members(opt.kind, keys, dict(zip(keys, values, strict=True)), params,
                           grads, state, ok & active)
        correct = (self.correct(out.detach(), yb).double() if self.accuracy
                   else losses.new_zeros(losses.shape, dtype=torch.float64))
        return losses.detach(), correct, ok

    def _build_whole(self, example: list[torch.Tensor], keys: list[str]) -> Callable:
        """:meth:`_whole_step` as one graph ``(x, y, active, *values, *weights, *state)``,
        traced on fake tensors and compiled by inductor (on the CPU C++ kernels and a C++
        wrapper: no ``torch.compile`` guards, no Python between the kernels); from the
        cache when a sweep of the same shapes and settings built it already."""
        n, slots = len(self.net.params), OPTIMIZER_STATE[self.opt.kind]
        key = (self._structure, tuple(keys), *(tuple(t.shape) for t in example[:2]),
               example[0].dtype, example[1].dtype)
        if key in _GRAPHS:
            _GRAPHS.move_to_end(key)
            return _GRAPHS[key]

        def step(xb: torch.Tensor, yb: torch.Tensor, active: torch.Tensor,
                 *tensors: torch.Tensor) -> tuple:
            values, rest = tensors[:len(keys)], tensors[len(keys):]
            state = [dict(zip(slots, rest[n + i * len(slots):n + (i + 1) * len(slots)],
                              strict=True)) for i in range(n)]
            return self._whole_step(xb, yb, active, keys, values, rest[:n], state)

        # the C++ wrapper on the CPU; on CUDA (never run here) inductor's usual one
        graph = inductor_compile(make_fx(step, tracing_mode="fake")(*example), example,
                                 cpp_wrapper=example[0].device.type == "cpu")
        _GRAPHS[key] = graph
        count_built_graph()
        if len(_GRAPHS) > GRAPHS_KEPT:
            _GRAPHS.popitem(last=False)
        return graph

    def _captured_step(self, xb: torch.Tensor, yb: torch.Tensor, active: Sequence[bool],
                       ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The whole captured step of every member (its update kept or withheld per
        member; :meth:`step` reports it), or None (with a warning) where the step cannot
        be traced: the run goes on eagerly."""
        opt = self.opt
        h = opt.hyper([s + bool(a) for s, a in zip(opt.steps, active, strict=True)])
        keys = opt.value_keys
        flags = tuple(active)
        if self._active is None or self._active[0] != flags:
            self._active = (flags, torch.tensor(flags, device=xb.device))
        tensors = [xb, yb, self._active[1], *(h[k] for k in keys), *self._weights,
                   *(s[k] for s in opt.state for k in OPTIMIZER_STATE[opt.kind])]
        if self._whole_keys is not keys:  # the first step, or the settings changed
            try:
                self._whole = self._build_whole(tensors, keys)
            except Exception as exc:  # noqa: BLE001 - any tracing failure: train eagerly
                self._traceable = False
                warn_uncapturable(exc)
                return None
            self._whole_keys = keys
        losses, correct, self._ok = self._whole(*tensors)
        return losses, correct if self.accuracy else None

    def forward_backward(self, xb: torch.Tensor, yb: torch.Tensor, scale: float,
                         active: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One batch ``(M, B, ...)`` for every member: losses ``(M,)`` and correct counts.
        With ``compile=True`` (a network that draws nothing) a full batch takes the whole
        captured step here (its update kept or withheld per member; :meth:`step`
        reports it)."""
        captured = self._captured_step(xb, yb, active) if self._captures(xb, scale) else None
        if captured is not None:
            return captured
        gens = [g if a else None for g, a in zip(self.dropout_gens, active, strict=True)]
        out = self.net.forward(xb, gens)
        loss = self.loss(out, yb)
        (loss.sum() * scale if scale != 1 else loss.sum()).backward()
        correct = self.correct(out.detach(), yb).double() if self.accuracy else None
        return loss.detach(), correct

    def samples(self, yb: torch.Tensor) -> int:
        """Each member's samples in batch ``yb`` (``(M, B, ...)``)."""
        return yb.shape[1]

    def step(self, active: Sequence[bool]) -> list[str | None]:
        """Clip, check and update the active members, guarded as ``guarded_step`` is, per
        member: a member whose gradients are not finite keeps its weights, and above a
        learning rate of ``OVERFLOW_GUARD_LR`` one whose update overflows gets its
        previous weights back (below it, finite gradients cannot overflow them)."""
        if self._ok is not None:
            ok, self._ok = self._ok.tolist(), None
            if all(ok):
                self.opt.count_steps(active)
                return [None] * self.size
            stepped = [a and o for a, o in zip(active, ok, strict=True)]
            self.opt.count_steps(stepped)
            return [None if o or not a else "the gradients are not finite"
                    for a, o in zip(active, ok, strict=True)]
        net, opt, cfgs = self.net, self.opt, self.configs
        grads = [p.grad for p in net.params]
        clip_members(grads, [c.clip_norm for c in cfgs], [c.clip_value for c in cfgs])
        reasons: list[str | None] = [None] * self.size
        stepping = list(active)
        overflow = self.guard and max(opt.lr) > OVERFLOW_GUARD_LR
        if self.guard:
            for m, ok in enumerate(finite_members(grads)):
                if stepping[m] and not ok:
                    stepping[m], reasons[m] = False, "the gradients are not finite"
        if overflow:
            before = [p.detach().clone() for p in net.params]
        opt.step(stepping)
        for p in net.params:
            p.grad = None
        if overflow:
            for m, ok in enumerate(finite_members([p.detach() for p in net.params])):
                if stepping[m] and not ok:
                    with torch.no_grad():
                        for p, old in zip(net.params, before, strict=True):
                            p[m] = old[m]
                    reasons[m] = ("the update overflowed the weights (the previous weights "
                                  "were put back)")
        return reasons

    def _captures(self, xb: torch.Tensor, scale: float) -> bool:
        """Whether this batch takes the whole captured step: a full batch, no
        accumulation, and no learning rate above the overflow guard's."""
        cfg = self.configs[0]
        return (self._traceable and cfg.accumulate_gradients == 1
                and xb.shape[1] == cfg.batch_size
                and not (self.guard and max(self.opt.lr) > OVERFLOW_GUARD_LR))

    def evaluate(self, batches: Iterable, accuracy: bool) -> list[tuple[float, float | None]]:
        """Mean loss (and accuracy) per member, in inference mode."""
        size, device = self.size, self.net.params[0].device
        total = torch.zeros(size, dtype=torch.float64, device=device)
        hits = torch.zeros(size, dtype=torch.float64, device=device)
        n = 0
        with torch.no_grad():
            for xb, yb in batches:
                out = self.net.forward(xb.expand(size, *xb.shape), None)
                ys = yb.expand(size, *yb.shape)
                total += self.loss(out, ys).double() * yb.shape[0]
                n += yb.shape[0]
                if accuracy:
                    hits += self.correct(out, ys).double()
        losses, accs = (total / max(n, 1)).tolist(), (hits / max(n, 1)).tolist()
        return [(loss, acc if accuracy else None) for loss, acc in zip(losses, accs,
                                                                       strict=True)]

    def learning_rate(self, member: int) -> float:
        """Member ``member``'s learning rate for the next step."""
        return self.opt.lr[member] if self.opt is not None else \
            self.models[member].torch_optimizer.param_groups[0]["lr"]

    def set_learning_rate(self, member: int, lr: float) -> None:
        """Use ``lr`` for member ``member`` from the next step on (its model records it)."""
        self.opt.lr[member] = lr
        self.models[member].learning_rate = lr

    def finish(self) -> None:
        """Each member's weights and optimizer state back into its own model."""
        if self.net is None:
            return
        for p in self.net.params:
            p.grad = None
        self.opt.write_back(self.net)


class StackedTrainer(Trainer):
    """The training loop over one stacked group: fit every member at once.

    Args:
        models: the group's models (one :func:`plan` group: fresh, same key).
        configs: one :class:`FitConfig` per model.
        data: ``(x, y)`` in memory (shared by every member, never copied per member).
        validation_data: ``(x, y)``, evaluated for every member after each epoch.

    ``stop_reasons`` holds per member None, ``"stopped"`` (:meth:`stop`),
    ``"interrupted"`` (Ctrl-C), ``"pruned"`` (:meth:`stop_member`) or ``"non-finite"``
    (frozen: its weights are the last finite ones); ``messages`` says what happened, by member; :meth:`on_epoch_end` watches.

    Example:
        >>> trainer = StackedTrainer(models, configs, (x, y))  # doctest: +SKIP
        >>> threading.Thread(target=trainer.run).start(); trainer.stop()  # doctest: +SKIP
    """

    def __init__(self, models: Sequence[Model], configs: Sequence[FitConfig], data: Any,
                 validation_data: Any = None):
        check_members(models, configs)
        result = plan(models, configs, memory_budget=None)  # the caller sized the group
        if result.groups != [list(range(len(models)))]:
            why = "; ".join(f"member {m}: {w}" for m, w in result.sequential.items())
            raise ValueError("models and configs must form one stacked group (see "
                             f"xb.sweep.plan); {why or result.describe()}")
        super().__init__(list(models), data, list(configs), validation_data=validation_data,
                         verbose=False, engine=StackedEngine(models, configs))
        self.emit_warnings = False  # what happened to each member is in ``messages``


def fit_stacked(models: Sequence[Model], configs: Sequence[FitConfig] | FitConfig, data: Any,
                validation_data: Any = None) -> list[Model]:
    """Train one stacked group (see :func:`plan`); returns the models, trained in place.

    Args:
        models: fresh compiled models of one spec (dropout rates may differ).
        configs: one :class:`FitConfig` per model, or one for all.
        data: ``(x, y)`` in memory, shared by every member.
        validation_data: ``(x, y)``, evaluated for every member after each epoch.

    Example:
        >>> fit_stacked(models, xb.FitConfig(epochs=1, seed=0), (x, y))  # doctest: +SKIP
    """
    if isinstance(configs, FitConfig):
        configs = [configs] * len(models)
    return StackedTrainer(models, configs, data, validation_data).run()
