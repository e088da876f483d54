"""The learning-rate finder: a short exponential sweep on a copy of the model.

The rate grows from ``start_lr`` to ``end_lr`` by the same factor every batch while the
copy trains through the one training loop (a callback sets each batch's rate and stops
the run); the loss is recorded at every step, smoothed with a debiased exponential
moving average, and the sweep stops early once the smoothed loss passes ``diverge``
times its best value (as fastai's and Lightning's finders do). The model itself, its
optimizer state and the global random state are untouched.

Example:
    >>> frame, lr = xb.lr_find(model, (x, y))  # doctest: +SKIP
    >>> model.set_optimizer(model.optimizer, learning_rate=lr)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from ..base.checks import check_int, check_number
from ..base.vocabulary import StopReason
from ..core.model import Model
from .callbacks import Callback
from .loop import Trainer

SUGGESTION_FACTOR = 10.0  # the suggestion is the rate where the smoothed loss bottoms out / 10
# The first tenth of the sweep is left out of the suggestion: the debiased average is only a
# handful of batches there, and on a trained model (a flat curve) its noise made the first
# rows the minimum, suggesting 1e-8.
NOISY_START = 0.1
# Where the smoothed loss bottoms out: the largest rate, at or past the minimum, whose
# smoothed loss is within this share of the minimum (a trained model's curve is flat up to
# where it rises; its minimum is anywhere on that plateau).
PLATEAU = 0.01


def sweep_rates(start_lr: float, end_lr: float, num_iter: int) -> list[float]:
    """The ``num_iter`` rates of the sweep: ``start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))``.

    Example:
        >>> sweep_rates(1e-3, 1e-1, 3)
        [0.001, 0.01, 0.1]
    """
    return [start_lr * (end_lr / start_lr) ** (i / (num_iter - 1)) for i in range(num_iter)]


class _Sweep(Callback):
    """Sets each batch's rate, records ``(lr, loss, smoothed loss)`` and stops the run
    after the last rate or once the smoothed loss diverges."""

    def __init__(self, rates: list[float], smoothing: float, diverge: float):
        self.rates, self.smoothing, self.diverge = rates, smoothing, diverge
        self.rows: list[tuple[float, float, float]] = []
        self.average, self.best = 0.0, math.inf

    def on_batch_begin(self, batch: int, logs: dict) -> None:
        self.trainer.set_learning_rate(self.rates[len(self.rows)])

    def on_batch_end(self, batch: int, logs: dict) -> None:
        i, value = len(self.rows), logs["loss"]
        self.average = self.smoothing * self.average + (1 - self.smoothing) * value
        smoothed = self.average / (1 - self.smoothing ** (i + 1))
        self.rows.append((logs["lr"], value, smoothed))
        if (not math.isfinite(smoothed) or smoothed > self.diverge * self.best
                or len(self.rows) == len(self.rates)):
            self.trainer.stop()
        self.best = min(self.best, smoothed)


def suggest_rate(frame: pd.DataFrame) -> float:
    """The suggested rate for a sweep's ``frame`` (columns ``lr`` and ``smoothed_loss``):
    the largest rate where the smoothed loss bottoms out, divided by
    :data:`SUGGESTION_FACTOR`.

    The first :data:`NOISY_START` share of the rows is left out; of the rest (finite values),
    the minimum is found, and the rate taken is the last one past it whose smoothed loss is
    within :data:`PLATEAU` of that minimum, just before the loss rises. A fresh model's curve
    falls steeply and rises again (this is its minimum, as fastai's ``minimum`` suggestion);
    a trained model's curve is flat until it rises, and this is the end of the flat part.

    Raises:
        ValueError: when no smoothed loss is finite.

    Example:
        >>> frame = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2, 1e-1],
        ...                       "smoothed_loss": [2.0, 1.0, 1.005, 3.0]})
        >>> round(suggest_rate(frame), 6)
        0.001
    """
    finite = frame[frame["smoothed_loss"].map(math.isfinite)]
    finite = finite.iloc[int(len(finite) * NOISY_START):]
    if finite.empty:
        raise ValueError("lr_find: the loss was not finite; check the data and the model")
    losses = finite["smoothed_loss"].to_numpy()
    at_min = int(losses.argmin())
    near = losses[at_min:] <= losses[at_min] + PLATEAU * abs(losses[at_min])
    last = at_min + int(near.nonzero()[0][-1])
    return float(finite["lr"].iloc[last]) / SUGGESTION_FACTOR


def lr_find(model: Model, data: Any, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_iter: int = 100, batch_size: int = 32, smoothing: float = 0.98,
            diverge: float = 4.0, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """Sweep the learning rate exponentially on a copy of ``model`` and suggest one.

    Each of the ``num_iter`` steps trains the copy on one batch (a seeded shuffle of
    ``data``, reshuffled every epoch when the sweep is longer than one) with the model's
    optimizer kind, weight decay and frozen layers, at the rate given by
    :func:`sweep_rates`. The loss is the batch's loss before its update, as in fastai.

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
        ``smoothed_loss``, one row per step; the suggestion is :func:`suggest_rate`'s: the
        rate where the smoothed loss bottoms out (past the noisy start) divided by 10, so a
        trained model gets a rate it can keep training at, not the 1e-8 of a noise dip.

    Example:
        >>> frame, lr = xb.lr_find(model, (x, y), num_iter=80)  # doctest: +SKIP
        >>> xb.fit(model, (x, y), epochs=5)  # after model.set_optimizer(..., lr)  # doctest: +SKIP
    """
    start_lr = check_number("start_lr", start_lr, positive=True)
    end_lr = check_number("end_lr", end_lr, positive=True)
    if end_lr <= start_lr:
        raise ValueError(f"end_lr must be greater than start_lr ({start_lr!r}); got {end_lr!r}")
    check_int("num_iter", num_iter, 2)
    check_int("batch_size", batch_size, 1)
    if check_number("smoothing", smoothing) >= 1:
        raise ValueError(f"smoothing must be a number in [0, 1); got {smoothing!r}")
    if check_number("diverge", diverge) < 1:
        raise ValueError(f"diverge must be a number >= 1; got {diverge!r}")
    check_int("seed", seed, 0)
    probe = model.copy(learning_rate=start_lr)
    sweep = _Sweep(sweep_rates(start_lr, end_lr, num_iter), smoothing, diverge)
    samples = len(data[0]) if isinstance(data, (tuple, list)) and data else 0
    epochs = -(-num_iter // max(1, -(-samples // batch_size)))
    device = probe.torch_device
    trainer = Trainer(probe, data, epochs=max(epochs, 1), batch_size=batch_size, seed=seed,
                      terminate_on_nan=False, check_data=False, verbose=False,
                      callbacks=[sweep])
    trainer.emit_warnings = False  # a copy trains: its warnings are not the user's
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        trainer.run()
    if trainer.stop_reason == StopReason.INTERRUPTED:
        raise KeyboardInterrupt  # the sweep was cut short: no suggestion
    frame = pd.DataFrame(sweep.rows, columns=["lr", "loss", "smoothed_loss"])
    if not frame["smoothed_loss"].map(math.isfinite).any():
        raise ValueError(f"lr_find: the loss was not finite at start_lr={start_lr!r}; check "
                         "the data and the model")
    return frame, suggest_rate(frame)
