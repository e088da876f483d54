"""Single steps for custom loops: ``evaluate``, ``train_step``, ``compute_gradients``.

Example:
    >>> loss, model = xb.train_step(model, (bx, by), clip_norm=1.0)  # doctest: +SKIP
    >>> grads = xb.compute_gradients(model, (bx, by), grad_method="numerical")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
from torch.func import functional_call, vmap

from ..base.checks import check_int, check_optional_number
from ..core.data import TensorBatches
from ..core.inputs import check_accuracy, prepare_pair
from ..core.model import Model
from .engine import evaluate_batches, guarded_step

GRAD_METHODS = ("autograd", "numerical", "numerical_batch")
NUMERICAL_WARN_PARAMS = 10_000
NUMERICAL_STEP = 1e-6


def check_clip(clip_norm: float | None, clip_value: float | None) -> None:
    """Raise naming the argument when a clip threshold is not a number > 0."""
    check_optional_number("clip_norm", clip_norm, positive=True)
    check_optional_number("clip_value", clip_value, positive=True)


def evaluate_tensors(model: Model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
                     accuracy: bool = False) -> tuple[float, float | None]:
    """Mean loss (and accuracy) over prepared tensors, in inference mode; one host sync."""
    return evaluate_batches(model, TensorBatches(x, y, batch_size).epoch(None), accuracy)


def evaluate(model: Model, data: Any, accuracy: bool = False,
             batch_size: int = 1024) -> float | tuple[float, float]:
    """The mean loss on ``data = (x, y)``; ``(loss, accuracy)`` with ``accuracy=True``.

    Example:
        >>> loss, acc = xb.evaluate(model, (test_x, test_y), accuracy=True)  # doctest: +SKIP
    """
    check_accuracy(model, accuracy)
    check_int("batch_size", batch_size, 1)
    x, y = prepare_pair(model, data)
    loss, acc = evaluate_tensors(model, x, y, batch_size, accuracy)
    return (loss, acc) if accuracy else loss


def train_step(model: Model, batch: Any, clip_norm: float | None = None,
               clip_value: float | None = None, grad_method: str = "autograd",
               check_data: bool = True) -> tuple[float, Model]:
    """One optimizer step on one batch; returns ``(loss before the step, model)``.

    Gradients come from :func:`compute_gradients` with ``grad_method``; clipping is by
    value first, then by global norm. As in ``fit``, a batch holding NaN or inf is refused
    (a ``ValueError``, unless ``check_data=False``), and a step whose loss or gradients
    are not finite, or whose update would overflow the weights, is skipped with a
    warning: the weights keep their previous values.
    """
    check_clip(clip_norm, clip_value)
    x, y = prepare_pair(model, batch, "batch", check_data)
    with model.lock:
        grads, loss = _gradients(model, x, y, grad_method)
        params = [p for p in model.module.parameters() if p.requires_grad]
        for p, g in zip(params, grads.values(), strict=True):
            p.grad = g
        refused = ("the loss is not finite" if not math.isfinite(loss) else
                   guarded_step(model, params, clip_norm, clip_value))
        model.torch_optimizer.zero_grad(set_to_none=True)
    if refused:
        warnings.warn(f"train_step: {refused}; the step was skipped and the weights are "
                      "unchanged (try a lower learning_rate or clip_norm)", stacklevel=2)
    return loss, model


def compute_gradients(model: Model, batch: Any,
                      grad_method: str = "autograd") -> dict[str, torch.Tensor]:
    """The loss gradient for each trainable parameter, by name.

    ``"autograd"`` is backpropagation. ``"numerical"`` and ``"numerical_batch"`` are central
    finite differences in float64, one parameter at a time or vectorised across
    parameters (``torch.func.vmap``), for teaching and gradient checks. Dropout draws
    the same mask for every evaluation, so the numbers are consistent. The numerical
    methods warn above 10,000 parameters (two forward passes per parameter).
    """
    x, y = prepare_pair(model, batch, "batch")
    with model.lock:
        buffers = {n: b.clone() for n, b in model.module.named_buffers()}
        try:
            return _gradients(model, x, y, grad_method)[0]
        finally:  # looking at gradients must not move batch-norm statistics
            with torch.no_grad():
                for n, b in model.module.named_buffers():
                    b.copy_(buffers[n])


def _gradients(model: Model, x: torch.Tensor, y: torch.Tensor,
               grad_method: str) -> tuple[dict[str, torch.Tensor], float]:
    if grad_method not in GRAD_METHODS:
        raise ValueError(f"grad_method must be one of {', '.join(GRAD_METHODS)}; "
                         f"got {grad_method!r}")
    named = [(n, p) for n, p in model.module.named_parameters() if p.requires_grad]
    if grad_method == "autograd":
        model.train_mode()
        loss = model.loss(model.module(x), y)
        grads = torch.autograd.grad(loss, [p for _, p in named])
        return dict(zip([n for n, _ in named], grads, strict=True)), loss.item()
    count = sum(p.numel() for _, p in named)
    if count > NUMERICAL_WARN_PARAMS:
        warnings.warn(f"grad_method={grad_method!r} on {count:,} parameters takes "
                      f"{2 * count:,} forward passes; use 'autograd' for real training",
                      stacklevel=3)
    net = copy.deepcopy(model.module).double()
    torch.func.replace_all_batch_norm_modules_(net)  # no running-stat updates while probing
    net.train()
    for name in model.frozen_layers:
        getattr(net, name).eval()
    x64 = x.double() if x.is_floating_point() else x
    y64 = y.double() if y.is_floating_point() else y
    names = [n for n, _ in named]
    base = {n: p.detach().double() for n, p in net.named_parameters()}
    seed = int(torch.randint(0, 2**31 - 1, ()))

    def loss_at(flat: torch.Tensor) -> torch.Tensor:
        params, offset = dict(base), 0
        for n in names:
            numel = base[n].numel()
            params[n] = flat[offset:offset + numel].view_as(base[n])
            offset += numel
        return model.loss(functional_call(net, params, (x64,)), y64)

    flat0 = torch.cat([base[n].reshape(-1) for n in names])
    h = NUMERICAL_STEP
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loss0 = float(loss_at(flat0))
        grad = torch.empty_like(flat0)
        if grad_method == "numerical":
            for i in range(flat0.numel()):
                probe = flat0.clone()
                probe[i] += h
                torch.manual_seed(seed)
                plus = loss_at(probe)
                probe[i] -= 2 * h
                torch.manual_seed(seed)
                grad[i] = (plus - loss_at(probe)) / (2 * h)
        else:
            chunk = max(1, min(1024, 2**22 // max(flat0.numel(), 1)))
            batched = vmap(loss_at, randomness="same")
            for start in range(0, flat0.numel(), chunk):
                k = min(chunk, flat0.numel() - start)
                delta = torch.zeros(k, flat0.numel(), dtype=flat0.dtype, device=flat0.device)
                delta[torch.arange(k), start + torch.arange(k)] = h
                torch.manual_seed(seed)
                plus = batched(flat0 + delta)
                torch.manual_seed(seed)
                grad[start:start + k] = (plus - batched(flat0 - delta)) / (2 * h)
    out, offset = {}, 0
    for n, p in named:
        out[n] = grad[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
    return out, loss0
