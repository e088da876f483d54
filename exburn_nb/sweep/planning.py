"""Train a sweep at once: many configurations of one network in one stacked pass.

:func:`plan` groups (model, config) pairs by what must be equal to share a step (the
architecture, loss, optimizer kind, epochs, batch size, ...); :func:`fit_stacked` (or a
:class:`StackedTrainer`, to watch or stop it from another thread) trains one group as one
stacked ensemble (:mod:`exburn_nb.sweep.stacked`). Inside a group each member keeps its own
learning rate, weight decay, schedule, clipping thresholds, Nesterov flag, dropout rates
and seed, and is the same computation as ``xb.fit(model, data, config)``: the same
initial weights, batch order, dropout masks and optimizer math, to float32 round-off.
Each model ends with its own weights, optimizer state, ``history``, ``batch_history``
and ``runs`` row, as a separate ``fit`` leaves them. A member whose loss, gradients or
update is not finite is frozen and marked (``stop_reasons``) while the others go on.

Scope: a member equals its own ``fit`` exactly (dropout masks included) when its config
has a ``seed``; without one, each member draws a seed from torch's generator as ``fit``
does, but its dropout masks then differ from a separate run's (which draws them from the
global generator). Histories grow live (rows are added as each batch ends, readable from
another thread); the models' weights and optimizer state are written back when the run
ends (however it ends), so a prediction made mid-run sees the initial weights. ``fit``'s
callbacks are not taken: watch with :meth:`StackedTrainer.on_epoch_end` and the
histories, steer with :meth:`StackedTrainer.stop` / :meth:`StackedTrainer.stop_member`.
Specs of dense, dropout, activation and flatten layers are stacked; other layers,
DataLoader data and bf16 run with ``xb.fit`` (:func:`plan` says why).

Example:
    >>> import exburn_nb as xb
    >>> (x, y), _ = xb.datasets.digits()
    >>> spec = xb.input("input", shape=(None, 64)).dense(32, activation="relu").dense(10)
    >>> models = [xb.compile(spec, learning_rate=lr, seed=0) for lr in (1e-3, 3e-3)]
    >>> configs = [xb.FitConfig(epochs=2, seed=0)] * 2
    >>> sweep_plan = plan(models, configs)
    >>> sweep_plan.groups, sweep_plan.sequential
    ([[0, 1]], {})
    >>> models = fit_stacked(models, configs, (x, y))
    >>> [len(m.history) for m in models]
    [2, 2]
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.config import FitConfig
from ..core.data import TensorBatches, check_finite, is_loader
from ..core.model import Model
from ..core.optim import make_schedule
from ..train.steps import check_accuracy, prepare_pair
from .stacked import (
    StackedNet,
    StackedOptimizer,
    clip_members,
    finite_members,
    member_bytes,
    member_correct,
    member_loss,
    unstackable_reason,
)

SHARED_OPTIONS = ("epochs", "batch_size", "shuffle", "accumulate_gradients", "accuracy",
                  "terminate_on_nan")


@dataclass
class SweepPlan:
    """Which members train together and why the others run alone.

    Attributes:
        groups: lists of member indices, each trained as one stacked ensemble.
        sequential: member index -> why it runs on its own (``xb.fit``).
        keys: for each group, what its members share (architecture, optimizer, ...).
    """

    groups: list[list[int]] = field(default_factory=list)
    sequential: dict[int, str] = field(default_factory=dict)
    keys: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        """One line per group and per member running alone, for the user."""
        lines = [f"stacked group {i + 1}: members {g} ({len(g)} at once; shared "
                 f"{', '.join(f'{k}={v}' for k, v in key.items() if k != 'spec')})"
                 for i, (g, key) in enumerate(zip(self.groups, self.keys, strict=True))]
        lines += [f"member {m} runs alone: {why}" for m, why in sorted(self.sequential.items())]
        return "\n".join(lines)


def group_key(model: Model, config: FitConfig) -> tuple[dict | None, str | None]:
    """What a member must share with the others of its group, or why it cannot be stacked."""
    why = unstackable_reason(model)
    if why is None and config.precision != "fp32":
        why = f"precision={config.precision!r} (the stacked engine trains in fp32)"
    if why is None and config.nesterov and model.optimizer != "sgd":
        why = f"nesterov=True needs optimizer 'sgd'; it uses {model.optimizer!r}"
    if why is not None:
        return None, why
    layers = [{**la.__dict__, "options": {k: v for k, v in la.options.items() if k != "rate"}}
              for la in model.spec.layers]
    key = {"spec": repr(layers) + repr(model.spec.input_shape), "loss": model.loss_function,
           "optimizer": model.optimizer, "device": model.device}
    key.update({name: getattr(config, name) for name in SHARED_OPTIONS})
    return key, None


def plan(models: Sequence[Model], configs: Sequence[FitConfig],
         memory_budget: int | None = None) -> SweepPlan:
    """Group members that can share a stacked step; split groups over ``memory_budget``.

    Args:
        models: compiled, untrained models built from specs (one per member).
        configs: one :class:`FitConfig` per member.
        memory_budget: bytes a group may use (parameters, gradients, optimizer state and
            one batch's activations per member; the data is shared); None: no limit.

    Returns:
        A :class:`SweepPlan`. A member alone in its group runs sequentially.

    Example:
        >>> spec = xb.input("input", shape=(None, 4)).dense(2)
        >>> ms = [xb.compile(spec), xb.compile(spec), xb.compile(spec, optimizer="sgd")]
        >>> plan(ms, [xb.FitConfig()] * 3).sequential  # doctest: +ELLIPSIS
        {2: 'no other member shares its ...'}
    """
    _check_members(models, configs)
    keyed: dict[str, list[int]] = {}
    keys: dict[str, dict] = {}
    result = SweepPlan()
    for i, (model, config) in enumerate(zip(models, configs, strict=True)):
        key, why = group_key(model, config)
        if key is None:
            result.sequential[i] = why
            continue
        keyed.setdefault(repr(key), []).append(i)
        keys[repr(key)] = key
    for name, members in keyed.items():
        if len(members) == 1:
            key = keys[name]
            result.sequential[members[0]] = (
                "no other member shares its architecture, loss, optimizer, device and "
                + ", ".join(f"{k}={key[k]}" for k in SHARED_OPTIONS))
            continue
        size = len(members)
        if memory_budget is not None:
            one = member_bytes(models[members[0]], configs[members[0]].batch_size)
            size = max(1, min(size, memory_budget // one))
        for lo in range(0, len(members), size):
            chunk = members[lo:lo + size]
            if len(chunk) == 1:
                result.sequential[chunk[0]] = (
                    f"the memory budget ({memory_budget:,} bytes) holds one member "
                    f"({member_bytes(models[chunk[0]], configs[chunk[0]].batch_size):,} bytes)")
            else:
                result.groups.append(chunk)
                result.keys.append(dict(keys[name]))
    return result


def _check_members(models: Sequence[Model], configs: Sequence[FitConfig]) -> None:
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError(f"models must be a non-empty list of compiled models; got {models!r}")
    if not isinstance(configs, (list, tuple)) or len(configs) != len(models):
        raise ValueError(f"configs must be a list of one FitConfig per model ({len(models)}); "
                         f"got {configs!r}")
    for i, (m, c) in enumerate(zip(models, configs, strict=True)):
        if not isinstance(m, Model):
            raise ValueError(f"models[{i}] must be a compiled exburn_nb Model; got "
                             f"{type(m).__name__}")
        if not isinstance(c, FitConfig):
            raise ValueError(f"configs[{i}] must be an xb.FitConfig; got {type(c).__name__}")


class StackedTrainer:
    """One stacked group's run: validated up front, then :meth:`run` (any thread).

    Args:
        models: the group's models (one :func:`plan` group: fresh, same key).
        configs: one :class:`FitConfig` per model.
        data: ``(x, y)`` in memory (shared by every member, never copied per member).
        validation_data: ``(x, y)``, evaluated for every member after each epoch.

    Attributes:
        stop_reasons: per member None, ``"stopped"`` (:meth:`stop`), ``"pruned"``
            (:meth:`stop_member`) or ``"non-finite"`` (frozen: its weights are the last
            finite ones); ``messages`` says what happened, by member.

    Example:
        >>> trainer = StackedTrainer(models, configs, (x, y))  # doctest: +SKIP
        >>> threading.Thread(target=trainer.run).start(); trainer.stop()  # doctest: +SKIP
    """

    def __init__(self, models: Sequence[Model], configs: Sequence[FitConfig], data: Any,
                 validation_data: Any = None):
        _check_members(models, configs)
        result = plan(models, configs)
        if result.groups != [list(range(len(models)))]:
            why = "; ".join(f"member {m}: {w}" for m, w in result.sequential.items())
            raise ValueError("models and configs must form one stacked group (see "
                             f"xb.sweep.plan); {why or result.describe()}")
        self.models, self.configs = list(models), list(configs)
        for model, cfg in zip(self.models, self.configs, strict=True):
            check_accuracy(model, cfg.accuracy)
        self.train = self._tensors(data, "data")
        self.val = self._tensors(validation_data, "validation_data") \
            if validation_data is not None else None
        self.schedules = [make_schedule(c.lr_schedule, c.epochs) for c in self.configs]
        for s in self.schedules:
            if s is not None and self.configs[0].epochs > 0:
                s(0)
        self.stop_reasons: list[str | None] = [None] * len(self.models)
        self.messages: list[str] = []
        self.epoch_listeners: list[Callable[[int, dict], None]] = []
        self._stop = threading.Event()
        self._pruned: set[int] = set()

    def _tensors(self, data: Any, argname: str) -> tuple[torch.Tensor, torch.Tensor]:
        if is_loader(data):
            raise ValueError(f"{argname} must be (x, y) in memory for a stacked sweep; got a "
                             f"{type(data).__name__} (run such configurations with xb.fit)")
        x, y = prepare_pair(self.models[0], data, argname)
        if self.configs[0].check_data:
            check_finite(x, f"{argname} x")
            check_finite(y, f"{argname} y")
        return x, y

    # ------------------------------------------------------------------ controls
    def stop(self) -> None:
        """Stop every member after the batch in progress."""
        self._stop.set()

    def stop_member(self, index: int) -> None:
        """Freeze member ``index`` after the batch in progress (e.g. a pruned trial)."""
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < len(self.models):
            raise ValueError(f"index must be a member index in [0, {len(self.models)}); "
                             f"got {index!r}")
        self._pruned.add(index)

    def on_epoch_end(self, fn: Callable[[int, dict], None]) -> None:
        """Call ``fn(member, metrics)`` after each member's epoch row is recorded."""
        self.epoch_listeners.append(fn)

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[Model]:
        """Train the group; returns the models, each trained as its own ``fit`` would."""
        models, cfgs, cfg = self.models, self.configs, self.configs[0]
        seeds = []
        for c in cfgs:  # as Trainer._start_run: a missing seed is drawn from torch's generator
            seeds.append(int(torch.randint(0, 2**62, (1,))) if c.seed is None else c.seed)
        self.shuffle_gens = [torch.Generator().manual_seed(s) for s in seeds]
        device = models[0].torch_device  # dropout draws on the device, as the model's own run
        self.dropout_gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.run_ids = [m.recorder.start_run(c.to_dict()) for m, c in zip(models, cfgs,
                                                                          strict=True)]
        self.net = net = StackedNet(models)
        self.opt = opt = StackedOptimizer(models[0].optimizer, models, net.params)
        opt.weight_decay = [c.weight_decay if c.weight_decay is not None else m.weight_decay
                            for m, c in zip(models, cfgs, strict=True)]
        opt.nesterov = [c.nesterov for c in cfgs]
        self.loss, self.correct = member_loss(models[0]), member_correct(models[0])
        self.active = [True] * len(models)
        self.step = [0] * len(models)
        try:
            for epoch_index in range(cfg.epochs):
                if self._stop.is_set() or not any(self.active) or \
                        not self._run_epoch(epoch_index + 1, epoch_index):
                    break
        finally:
            if self._stop.is_set():
                self.stop_reasons = [r or ("stopped" if a else None)
                                     for r, a in zip(self.stop_reasons, self.active, strict=True)]
            for p in net.params:
                p.grad = None
            opt.write_back(net)
            for m, model in enumerate(models):
                if self.schedules[m] is not None:  # as Trainer._apply_lr
                    model.learning_rate = opt.lr[m]
        return models

    def _freeze(self, m: int, reason: str, message: str) -> None:
        if self.active[m]:
            self.active[m] = False
            self.stop_reasons[m] = reason
            self.messages.append(f"member {m}: {message}")

    def _run_epoch(self, epoch: int, epoch_index: int) -> bool:
        """Train one epoch for every active member and record each; False to end."""
        cfg, opt, n = self.configs[0], self.opt, self.train[0].shape[0]
        for m, s in enumerate(self.schedules):
            if s is not None and self.active[m]:
                opt.lr[m] = s(epoch_index)
        running = list(self.active)
        x, y = self.train
        losses: list[list[tuple[float, int]]] = [[] for _ in self.models]
        correct = torch.zeros(len(self.models), dtype=torch.float64, device=x.device)
        start = time.perf_counter()
        batches = -(-n // cfg.batch_size)
        b = 0
        orders = (torch.stack([torch.randperm(n, generator=g) for g in self.shuffle_gens])
                  if cfg.shuffle else torch.arange(n).expand(len(self.models), n)).to(x.device)
        for lo in range(0, n, cfg.batch_size * cfg.accumulate_gradients):
            hi = min(n, lo + cfg.batch_size * cfg.accumulate_gradients)
            total = hi - lo
            for blo in range(lo, hi, cfg.batch_size):
                b += 1
                idx = orders[:, blo:min(hi, blo + cfg.batch_size)]
                size = idx.shape[1]
                pruned, self._pruned = self._pruned, set()  # another thread may add to it
                for m in sorted(pruned):
                    self._freeze(m, "pruned", f"stopped at epoch {epoch}, batch {b}")
                values, hits = self._forward_backward(x, y, idx, size / total)
                for m, v in enumerate(values):
                    if self.active[m] and cfg.terminate_on_nan and not math.isfinite(v):
                        self._refuse(m, epoch, b, f"the loss is {v}")
                if blo + cfg.batch_size >= hi:
                    self._step(epoch, b, cfg)
                for m, v in enumerate(values):
                    if self.active[m]:
                        losses[m].append((v, size))
                        self.models[m].recorder.record_batch(self.run_ids[m], epoch, b,
                                                          self.step[m], v, opt.lr[m])
                if hits is not None:
                    correct += hits * torch.tensor(self.active, dtype=torch.float64,
                                                   device=x.device)
                if self._stop.is_set():
                    self._end_epoch(epoch, running, losses, correct, start, b == batches)
                    return False
        self._end_epoch(epoch, running, losses, correct, start, True)
        for s in self.schedules:
            if s is not None:
                s.advance()
        return True

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                          scale: float) -> tuple[list[float], torch.Tensor | None]:
        """One batch for every member: losses (floats) and correct counts (or None)."""
        flat = idx.reshape(-1)
        xb = x.index_select(0, flat).view(idx.shape[0], idx.shape[1], *x.shape[1:])
        yb = y.index_select(0, flat).view(idx.shape[0], idx.shape[1], *y.shape[1:])
        gens = [g if a else None for g, a in zip(self.dropout_gens, self.active, strict=True)]
        out = self.net.forward(xb, gens)
        loss = self.loss(out, yb)
        (loss.sum() * scale if scale != 1 else loss.sum()).backward()
        hits = self.correct(out.detach(), yb).double() if self.configs[0].accuracy else None
        return loss.detach().tolist(), hits

    def _refuse(self, m: int, epoch: int, b: int, what: str) -> None:
        self._freeze(m, "non-finite", f"epoch {epoch}, batch {b}: {what}; the step was "
                     "refused and the member keeps its last finite weights")

    def _step(self, epoch: int, b: int, cfg: FitConfig) -> None:
        """Clip, check and update the active members (guarded as ``guarded_step``)."""
        net, opt, cfgs = self.net, self.opt, self.configs
        grads = [p.grad for p in net.params]
        clip_members(grads, [c.clip_norm for c in cfgs], [c.clip_value for c in cfgs])
        if cfg.terminate_on_nan:
            for m, ok in enumerate(finite_members(grads)):
                if self.active[m] and not ok:
                    self._refuse(m, epoch, b, "the gradients are not finite")
            before = [p.detach().clone() for p in net.params]
        opt.step(self.active)
        for p in net.params:
            p.grad = None
        if cfg.terminate_on_nan:
            for m, ok in enumerate(finite_members([p.detach() for p in net.params])):
                if self.active[m] and not ok:
                    with torch.no_grad():
                        for p, old in zip(net.params, before, strict=True):
                            p[m] = old[m]
                    self._refuse(m, epoch, b, "the update overflowed the weights (the "
                                 "previous weights were put back)")
        for m, a in enumerate(self.active):
            self.step[m] += a

    def _end_epoch(self, epoch: int, running: list[bool], losses: list, correct: torch.Tensor,
                   start: float, complete: bool) -> None:
        """Record each member's epoch row (validation after a complete epoch)."""
        seconds = time.perf_counter() - start
        cfg, opt = self.configs[0], self.opt
        val = self._validate() if complete and self.val is not None else None
        for m, model in enumerate(self.models):
            done = sum(s for _, s in losses[m])
            if not running[m] or done == 0:
                continue
            metrics: dict[str, Any] = {"epoch": epoch,
                                       "loss": sum(v * s for v, s in losses[m]) / done}
            if cfg.accuracy:
                metrics["accuracy"] = float(correct[m]) / done
            metrics["lr"] = opt.lr[m]
            ok = self.active[m]
            if val is not None and ok:
                values = {"val_loss": val[0][m]}
                if cfg.accuracy:
                    values["val_accuracy"] = val[1][m]
                if all(math.isfinite(v) for v in values.values()):
                    metrics.update(values)
                else:
                    self._freeze(m, "non-finite", f"epoch {epoch}: validation gave a "
                                 f"non-finite value {values}; training stopped")
            model.recorder.record_epoch({**metrics, "run": self.run_ids[m],
                                      "seconds": time.perf_counter() - start,
                                      "samples_per_s": done / max(seconds, 1e-9)})
            for fn in self.epoch_listeners:
                fn(m, metrics)

    def _validate(self) -> tuple[list[float], list[float]]:
        """Mean validation loss (and accuracy) per member, in inference mode."""
        x, y = self.val
        size = len(self.models)
        total = torch.zeros(size, dtype=torch.float64, device=x.device)
        hits = torch.zeros(size, dtype=torch.float64, device=x.device)
        with torch.no_grad():
            for xb, yb in TensorBatches(x, y, self.configs[0].batch_size * 4).epoch(None):
                out = self.net.forward(xb.expand(size, *xb.shape), None)
                ys = yb.expand(size, *yb.shape)
                total += self.loss(out, ys).double() * yb.shape[0]
                if self.configs[0].accuracy:
                    hits += self.correct(out, ys).double()
        n = x.shape[0]
        return (total / n).tolist(), (hits / n).tolist()


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
