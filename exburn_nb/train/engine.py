"""Step engines: what the one training loop (:class:`~exburn_nb.train.loop.Trainer`)
asks of the thing it trains, and the engine for one model.

The loop owns the run: seeding, schedules, stop and pause, interrupts, the batch and
epoch rows, validation, callbacks and checkpoints. An engine owns the arithmetic of its
members (one model here; a stacked group of models in :mod:`exburn_nb.sweep.engine`):

- ``size``: the number of members; ``lock``: held by the loop around each batch.
- ``start(seeds)``: the run begins (per-member seeds for the engine's random draws).
- ``forward_backward(xb, yb, scale, active)``: one batch's losses ``(M,)`` (a 0-d loss
  for one model, which the loop reads or detaches; or a list of floats, where the engine
  has them on the host already, as the captured CPU step does), and correct counts
  ``(M,)`` when accuracy is on (else None); gradients accumulate.
- ``samples(yb)``: the samples a batch counts for in the epoch's sums.
- ``step(active)``: clip, check and update the members; per member None, or why its
  step was refused (its weights and optimizer state are then unchanged).
- ``evaluate(batches, accuracy)``: per member ``(mean loss, accuracy or None)``.
- ``learning_rate(m)`` / ``set_learning_rate(m, lr)``; ``finish()``: the run ended
  (drop gradients, hand the models back).

An engine of several members takes each batch as ``(M, B, ...)``: every member's own
samples (:class:`~exburn_nb.core.data.TensorBatches` with one order per member); an
engine of one takes ``(B, ...)`` and returns a 0-d loss. :class:`StepEngine` states it.

Example:
    >>> import exburn_nb as xb
    >>> model = xb.compile(xb.input("input", shape=(None, 2)).dense(2), seed=0)
    >>> engine = SingleEngine(model, xb.FitConfig())
    >>> engine.start([0])
    >>> losses, _ = engine.forward_backward(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]),
    ...                                     1.0, [True])
    >>> engine.step([True]), losses.shape
    ([None], torch.Size([]))
    >>> engine.finish()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import torch

from ..base.torch_internals import non_finite_check
from ..core.config import FitConfig
from ..core.model import Model
from ..core.optim import optimizer_step

OVERFLOW_GUARD_LR = 1.0  # above this learning rate a step is undone if it overflows


class StepEngine(Protocol):
    """What the training loop asks of a step engine (see the module docstring)."""

    size: int  # members
    lock: contextlib.AbstractContextManager  # held around each batch

    def start(self, seeds: Sequence[int] | None) -> None:
        """The run begins (None: a resumed run, whose RNG states are restored)."""

    def forward_backward(self, xb: torch.Tensor, yb: torch.Tensor, scale: float,
                         active: Sequence[bool]) -> tuple[torch.Tensor | list[float],
                                                          torch.Tensor | None]:
        """One batch's losses and correct counts; gradients accumulate (times ``scale``)."""

    def samples(self, yb: torch.Tensor) -> int:
        """The samples batch ``yb`` counts for (each member's)."""

    def step(self, active: Sequence[bool]) -> list[str | None]:
        """Update the active members; per member None or why its step was refused."""

    def evaluate(self, batches: Iterable, accuracy: bool) -> list[tuple[float, float | None]]:
        """Per member, the mean loss and accuracy over ``batches``."""

    def learning_rate(self, member: int) -> float:
        """The rate member ``member``'s next step uses."""

    def set_learning_rate(self, member: int, lr: float) -> None:
        """Use ``lr`` for member ``member`` from its next step on."""

    def finish(self) -> None:
        """The run ended, however it ended: drop gradients, hand the models back."""


def clip_gradients(params: list[torch.Tensor], clip_norm: float | None,
                   clip_value: float | None) -> None:
    """Clip by value first (each element into ``[-clip_value, clip_value]``), then rescale
    so the global L2 norm is at most ``clip_norm`` (``torch.nn.utils`` semantics)."""
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)


def all_finite(tensors: list[torch.Tensor],
               scratch: tuple[torch.Tensor, torch.Tensor] | None = None) -> bool:
    """Whether every element of ``tensors`` is finite: one fused pass, one host sync.

    Uses the check ``torch.amp.GradScaler`` uses (exact, unlike a sum, which can overflow;
    it multiplies by 1 in place, which changes nothing). An infinity-norm per tensor gives
    the same answer at 20x the cost (0.7 ms a step on the guide's MLP). ``scratch``:
    two 1-element tensors on the tensors' device that the caller reuses, instead of two
    allocations a call.

    Example:
        >>> all_finite([torch.ones(3)]), all_finite([torch.tensor([1.0, float("nan")])])
        (True, False)
    """
    if not tensors:
        return True
    if scratch is None:
        device = tensors[0].device
        scratch = torch.zeros(1, device=device), torch.ones(1, device=device)
    else:
        scratch[0].zero_()
    if any(t.requires_grad for t in tensors):  # weights: an in-place op needs no_grad
        with torch.no_grad():
            non_finite_check(tensors, *scratch)
    else:  # gradients: no grad-mode switch (2-3 µs a call)
        non_finite_check(tensors, *scratch)
    return not bool(scratch[0])


def finite_rows(tensors: list[torch.Tensor]) -> torch.Tensor:
    """For each row (dimension 0: a stacked run's member), whether all its elements of
    ``tensors`` are finite, as a bool tensor, for a captured graph: the largest ``|t|``
    is below infinity exactly where every element is finite (a NaN propagates through
    the max). Inductor vectorises this max; ``isfinite(t).all(dim=1)`` compiles to mask
    conversions at 4x its cost (measured: half the captured update's time for 64 digits
    MLPs; 1-3% of a guide-MLP step for one model). ``tensors``: a non-empty list of
    floating tensors with at least one element per row.

    Example:
        >>> finite_rows([torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [-float("inf"), 1.0]])])
        tensor([ True, False, False])
    """
    ok = None
    for t in tensors:
        row = t.reshape(t.shape[0], -1).abs().amax(dim=1) < math.inf
        ok = row if ok is None else ok & row
    return ok


def clear_gradients(params: list[torch.Tensor]) -> None:
    """Drop the gradients of ``params``: what ``optimizer.zero_grad(set_to_none=True)``
    does for the optimizer's parameters, without its wrapper (15 µs a call).

    Example:
        >>> p = torch.nn.Parameter(torch.ones(1)); p.grad = torch.ones(1)
        >>> clear_gradients([p]); p.grad is None
        True
    """
    for p in params:
        p.grad = None


def guarded_step(model: Model, params: list[torch.nn.Parameter], clip_norm: float | None,
                 clip_value: float | None, guard: bool = True,
                 scratch: tuple[torch.Tensor, torch.Tensor] | None = None) -> str | None:
    """Clip, then take one optimizer step and clear the gradients. With ``guard``, a step
    whose gradients are not finite is refused (nothing changes), and above a learning
    rate of :data:`OVERFLOW_GUARD_LR` a step that leaves a weight non-finite (an update
    that overflows float32) is undone: weights and optimizer state are put back.

    Below that rate a step with finite gradients cannot overflow the weights (Adam's and
    RMSprop's updates are bounded by a few times the rate, SGD's by the rate times the
    gradients), so the common path pays one fused check and no copy.

    Returns None after a step, or the reason the step was refused. The caller holds
    ``model.lock``; ``scratch`` is passed on to :func:`all_finite`.
    """
    opt = model.torch_optimizer
    moving = [p for p in params if p.grad is not None]
    if clip_norm is not None or clip_value is not None:
        clip_gradients(moving, clip_norm, clip_value)
    if guard and not all_finite([p.grad for p in moving], scratch):
        clear_gradients(params)
        return "the gradients are not finite"
    if not guard or all(g["lr"] <= OVERFLOW_GUARD_LR for g in opt.param_groups):
        optimizer_step(opt, moving)
        clear_gradients(moving)
        return None
    weights = [p.detach().clone() for p in moving]
    states = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v
                  for k, v in opt.state[p].items()} for p in moving if p in opt.state}
    optimizer_step(opt, moving)
    clear_gradients(moving)
    if all_finite(moving, scratch):
        return None
    with torch.no_grad():
        for p, w in zip(moving, weights, strict=True):
            p.copy_(w)
            if p in states:
                opt.state[p] = states[p]
            else:
                opt.state.pop(p, None)
    return ("the update overflowed the weights (the weights and the optimizer state were "
            "put back)")


def evaluation_sums(model: Model, batches: Iterable, accuracy: bool = False) -> torch.Tensor:
    """``[loss summed over the samples, correct count, samples]`` over prepared
    ``(x, y)`` batches (float64, on the model's device), in inference mode: what
    :func:`evaluate_batches` divides, and what data-parallel ranks add up."""
    sums = torch.zeros(3, device=model.torch_device, dtype=torch.float64)
    with model.lock, model.eval_mode():
        for xb, yb in batches:
            out = model.module(xb)
            sums[0] += model.loss(out, yb).double() * yb.shape[0]
            sums[2] += yb.shape[0]
            if accuracy:
                sums[1] += model.loss.correct(out, yb)
    return sums


def evaluate_batches(model: Model, batches: Iterable, accuracy: bool = False
                     ) -> tuple[float, float | None]:
    """Mean loss (and accuracy) over prepared ``(x, y)`` batches, in inference mode; one
    host sync."""
    return mean_metrics(evaluation_sums(model, batches, accuracy), accuracy)


def mean_metrics(sums: torch.Tensor, accuracy: bool) -> tuple[float, float | None]:
    """Mean loss and accuracy from :func:`evaluation_sums` (one host sync)."""
    loss, correct, n = sums.tolist()
    return loss / max(n, 1), correct / max(n, 1) if accuracy else None


class SingleEngine:
    """The engine for one model: its module, its optimizer,
    the run's clipping, weight decay, Nesterov flag and precision, and the guarded step.

    The run's weight decay and Nesterov flag go into the optimizer's param groups at
    :meth:`start` and the model's own come back at :meth:`finish`.

    Args:
        model: the compiled model to train.
        config: the run's :class:`FitConfig`.
    """

    size = 1

    def __init__(self, model: Model, config: FitConfig):
        self.model, self.config = model, config
        self.lock = model.lock
        self.params = list(model.module.parameters())
        clip = config.clip_norm is not None or config.clip_value is not None
        self.clip = (config.clip_norm, config.clip_value) if clip else (None, None)
        self.autocast = (torch.autocast(model.torch_device.type, dtype=torch.bfloat16)
                         if config.precision == "bf16" else contextlib.nullcontext())
        self.forward = model.module
        self.scratch = (torch.zeros(1, device=model.torch_device),
                        torch.ones(1, device=model.torch_device))
        self._saved: list[tuple[Any, Any]] = []

    def start(self, seeds: Sequence[int] | None) -> None:
        """Seed the global generator (dropout draws from it) when the config has a seed
        (``seeds`` is None for a resumed run: its RNG states are restored), put this run's
        settings into the optimizer and switch to training mode."""
        model, cfg = self.model, self.config
        if seeds is not None and cfg.seed is not None:
            torch.manual_seed(seeds[0])
        opt = model.torch_optimizer
        self._saved = [(g["weight_decay"], g.get("nesterov")) for g in opt.param_groups]
        for g in opt.param_groups:  # this run's settings; the model's come back at the end
            if cfg.weight_decay is not None:
                g["weight_decay"] = cfg.weight_decay
            if "nesterov" in g:
                g["nesterov"] = cfg.nesterov
        model.train_mode()

    def forward_backward(self, xb: torch.Tensor, yb: torch.Tensor, scale: float,
                         active: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's loss, 0-d (gradients scaled by ``scale`` for accumulation), and
        its correct count when the run computes accuracy."""
        lossfn = self.model.loss
        with self.autocast:
            out = self.forward(xb)
            loss = lossfn(out, yb)
        (loss * scale if scale != 1 else loss).backward()
        correct = lossfn.correct(out.detach(), yb) if self.config.accuracy else None
        return loss, correct

    def samples(self, yb: torch.Tensor) -> int:
        """The samples in batch ``yb`` (the run's count: a data-parallel rank's batch is a
        slice of the global one)."""
        return yb.shape[0]

    def step(self, active: Sequence[bool]) -> list[str | None]:
        """One guarded optimizer step (see :func:`guarded_step`)."""
        return [guarded_step(self.model, self.params, *self.clip, self.config.terminate_on_nan,
                             self.scratch)]

    def evaluate(self, batches: Iterable, accuracy: bool) -> list[tuple[float, float | None]]:
        """The model's mean loss and accuracy over ``batches``."""
        return [evaluate_batches(self.model, batches, accuracy)]

    def learning_rate(self, member: int) -> float:
        """The learning rate the next step uses."""
        return self.model.torch_optimizer.param_groups[0]["lr"]

    def set_learning_rate(self, member: int, lr: float) -> None:
        """Use ``lr`` from the next step on (the model records it too)."""
        self.model.set_learning_rate(lr)

    def finish(self) -> None:
        """Put the model's own weight decay and Nesterov flag back; drop gradients."""
        opt = self.model.torch_optimizer
        for g, (wd, nesterov) in zip(opt.param_groups, self._saved, strict=False):
            g["weight_decay"] = wd
            if nesterov is not None:
                g["nesterov"] = nesterov
        self._saved = []
        clear_gradients(self.params)
