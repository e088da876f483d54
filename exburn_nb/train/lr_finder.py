"""The learning-rate finder: a short exponential sweep on a copy of the model.

The rate grows from ``start_lr`` to ``end_lr`` by the same factor every batch while the
copy trains; the loss is recorded at every step, smoothed with a debiased exponential
moving average, and the sweep stops early once the smoothed loss passes ``diverge``
times its best value (as fastai's and Lightning's finders do). The model itself, its
optimizer state and the global random state are untouched.

Example:
    >>> frame, lr = xb.lr_find(model, (x, y))  # doctest: +SKIP
    >>> model.set_optimizer(model.optimizer, learning_rate=lr)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pandas as pd
import torch

from ..core.model import Model
from ..core.optim import make_optimizer
from .steps import prepare_pair

SUGGESTION_FACTOR = 10.0  # the suggestion is the rate at the smoothed loss's minimum / 10


def _check(name: str, value: Any, kind: type, low: float, high: float | None = None) -> None:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if ok and kind is float:
        ok = math.isfinite(value)
    if not ok or value < low or (high is not None and value >= high):
        expected = f"{'a number' if kind is float else 'an integer'} >= {low}"
        expected += f" and < {high}" if high is not None else ""
        raise ValueError(f"{name} must be {expected}; got {value!r}")


def sweep_rates(start_lr: float, end_lr: float, num_iter: int) -> list[float]:
    """The ``num_iter`` rates of the sweep: ``start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))``."""
    return [start_lr * (end_lr / start_lr) ** (i / (num_iter - 1)) for i in range(num_iter)]


def lr_find(model: Model, data: Any, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_iter: int = 100, batch_size: int = 32, smoothing: float = 0.98,
            diverge: float = 4.0, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """Sweep the learning rate exponentially on a copy of ``model`` and suggest one.

    Each of the ``num_iter`` steps trains the copy on one batch (a seeded shuffle of
    ``data``, cycled when the sweep is longer than an epoch) with the model's optimizer
    kind and weight decay, at the rate given by :func:`sweep_rates`. The loss is the
    batch's loss before its update, as in fastai.

    Args:
        model: a compiled model; it, its optimizer state and its history are unchanged.
        data: ``(x, y)`` training data.
        start_lr: the first rate (> 0).
        end_lr: the last rate (> start_lr).
        num_iter: the number of steps (>= 2).
        batch_size: samples per step.
        smoothing: the moving-average factor ``beta`` in [0, 1): ``avg = beta * avg + (1 -
            beta) * loss``, reported debiased as ``avg / (1 - beta ** (i + 1))``.
        diverge: stop once the smoothed loss exceeds this multiple of its best value
            (or the loss is not finite); the diverging step is the frame's last row.
        seed: the shuffle order and the random state (dropout) of the sweep.

    Returns:
        ``(frame, suggested_lr)``: the frame has columns ``lr``, ``loss`` and
        ``smoothed_loss``, one row per step; the suggestion is the rate at the smoothed
        loss's minimum divided by 10.

    Example:
        >>> frame, lr = xb.lr_find(model, (x, y), num_iter=80)  # doctest: +SKIP
        >>> xb.fit(model, (x, y), epochs=5)  # after model.set_optimizer(..., lr)  # doctest: +SKIP
    """
    _check("start_lr", start_lr, float, 0.0)
    if start_lr == 0:
        raise ValueError(f"start_lr must be a number > 0; got {start_lr!r}")
    _check("end_lr", end_lr, float, start_lr)
    if end_lr <= start_lr:
        raise ValueError(f"end_lr must be greater than start_lr ({start_lr!r}); got {end_lr!r}")
    _check("num_iter", num_iter, int, 2)
    _check("batch_size", batch_size, int, 1)
    _check("smoothing", smoothing, float, 0.0, 1.0)
    _check("diverge", diverge, float, 1.0)
    _check("seed", seed, int, 0)
    x, y = prepare_pair(model, data)
    with model.lock:
        net = copy.deepcopy(model.module)
        frozen = sorted(model.frozen_layers)
    net.train()
    for name in frozen:
        net.get_submodule(name).eval()
    optimizer = make_optimizer(model.optimizer, net.parameters(), start_lr, model.weight_decay,
                               model.torch_device)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    rows: list[tuple[float, float, float]] = []
    average, best = 0.0, math.inf
    order = torch.empty(0, dtype=torch.long)
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        for i, lr in enumerate(sweep_rates(float(start_lr), float(end_lr), num_iter)):
            if order.numel() == 0:
                order = torch.randperm(n, generator=generator)
            index, order = order[:batch_size], order[batch_size:]
            index = index.to(x.device)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = model.loss(net(x[index]), y[index])
            value = loss.item()
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (i + 1))
            rows.append((lr, value, smoothed))
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                break
            best = min(best, smoothed)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    frame = pd.DataFrame(rows, columns=["lr", "loss", "smoothed_loss"])
    finite = frame[frame["smoothed_loss"].map(math.isfinite)]
    if finite.empty:
        raise ValueError(f"lr_find: the loss was not finite at start_lr={start_lr!r}; check "
                         "the data and the model")
    at_min = float(finite["lr"].iloc[int(finite["smoothed_loss"].to_numpy().argmin())])
    return frame, at_min / SUGGESTION_FACTOR
