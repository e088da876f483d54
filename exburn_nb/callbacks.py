"""Callbacks: the guide's ``metrics -> metrics`` functions, and a small hook class.

A callback is either

- any callable ``metrics -> metrics`` (the guide's contract), called after each epoch with
  ``epoch`` (1-based, counting on across ``fit`` calls), ``loss``, ``val_loss``,
  ``accuracy``, ``val_accuracy`` (where computed), ``lr`` and ``model``. Return the dict
  with ``stop_training=True`` to halt after this epoch, with another ``lr`` to change the
  learning rate from the next epoch on, or with extra numbers to record them in the
  history. Returning None means "unchanged"; or
- a :class:`Callback` subclass, whose no-op hooks you override. Per-batch work (live
  plots, progress bars) goes in ``on_batch_end``; the loop skips batch dispatch entirely
  when no callback overrides it.

Example:
    >>> def converged(metrics):
    ...     if metrics["loss"] < 0.01:
    ...         return {**metrics, "stop_training": True}
    ...     return metrics
    >>> model = xb.fit(model, (x, y), callbacks=[converged, xb.callbacks.log])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

Metrics = dict[str, Any]


class Callback:
    """Base class with no-op hooks, named ``on_<phase>_<begin|end>``.

    ``logs`` for ``on_train_begin``/``on_train_end``: ``model``, ``epochs`` (this run),
    ``batches`` (per epoch), ``first_epoch``. ``on_batch_end`` gets ``epoch``, ``batch``
    (1-based in its epoch), ``batches``, ``step`` (optimizer steps so far), ``size``,
    ``loss`` (a float) and ``lr``. ``on_epoch_end`` gets the metrics dict and may return a
    changed one, exactly as a function callback.
    """

    def on_train_begin(self, logs: dict) -> None:
        """Called once before the first epoch of a ``fit`` run."""

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        """Called before each epoch; ``logs`` holds ``lr``."""

    def on_batch_end(self, batch: int, logs: dict) -> None:
        """Called after each batch (only dispatched when some callback overrides it)."""

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics | None:
        """Called after each complete epoch; may return changed metrics."""
        return None

    def on_train_end(self, logs: dict) -> None:
        """Called once when the run ends, however it ends (done, stopped, error)."""


class FunctionCallback(Callback):
    """Adapts the guide's ``metrics -> metrics`` function onto the hook class."""

    def __init__(self, fn: Callable[[Metrics], Metrics | None]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics | None:
        return self.fn(metrics)

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.fn, '__name__', self.fn)!r})"


def as_callback(obj: Any, index: int) -> Callback:
    """``obj`` as a :class:`Callback`, or a ``ValueError`` naming ``callbacks[index]``."""
    if isinstance(obj, Callback):
        return obj
    if isinstance(obj, type) and issubclass(obj, Callback):
        raise ValueError(f"callbacks[{index}] is the class {obj.__name__}; pass an instance: "
                         f"{obj.__name__}(...)")
    if callable(obj):
        return FunctionCallback(obj)
    raise ValueError(f"callbacks[{index}] must be a function metrics -> metrics or an "
                     f"xb.callbacks.Callback; got {type(obj).__name__}")


def listens_to_batches(callback: Callback) -> bool:
    """Whether ``callback`` overrides ``on_batch_end``."""
    return type(callback).on_batch_end is not Callback.on_batch_end


def format_metrics(metrics: Metrics) -> str:
    """``Epoch 3: loss=0.1234 val_loss=0.2345 accuracy=0.9712 lr=0.001``."""
    parts = [f"Epoch {metrics['epoch']}:"]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        if metrics.get(key) is not None:
            parts.append(f"{key}={metrics[key]:.4f}")
    if metrics.get("lr") is not None:
        parts.append(f"lr={metrics['lr']:.3g}")
    return " ".join(parts)


def log(metrics: Metrics) -> Metrics:
    """Print one line per epoch (the guide's ``LoggingCallback.log/1``)."""
    print(format_metrics(metrics))
    return metrics


def _monitored(metrics: Metrics, monitor: str) -> tuple[str, float]:
    key = monitor if metrics.get(monitor) is not None else "loss"
    return key, metrics[key]


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` epochs.

    Watches ``monitor`` (``val_loss`` by default), falling back to ``loss`` when the run has
    no validation data. With ``restore_best=True`` the best epoch's weights are put back
    when the run ends.
    """

    def __init__(self, patience: int = 5, min_delta: float = 1e-4, monitor: str = "val_loss",
                 restore_best: bool = False):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0; got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"min_delta must be a number >= 0; got {min_delta!r}")
        self.patience, self.min_delta, self.monitor = patience, float(min_delta), monitor
        self.restore_best = restore_best

    def on_train_begin(self, logs: dict) -> None:
        self.best, self.best_epoch, self.wait, self.best_state = math.inf, None, 0, None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics:
        _, value = _monitored(metrics, self.monitor)
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(metrics["model"].module.state_dict())
            return metrics
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return {**metrics, "stop_training": True}
        return metrics

    def on_train_end(self, logs: dict) -> None:
        if self.restore_best and self.best_state is not None:
            model = logs["model"]
            with model.lock, torch.no_grad():
                model.module.load_state_dict(self.best_state)


def early_stopping(patience: int = 5, min_delta: float = 1e-4, monitor: str = "val_loss",
                   restore_best: bool = False) -> EarlyStopping:
    """The guide's ``EarlyStoppingCallback.wait(patience, min_delta)``.

    Example:
        >>> xb.fit(model, data, callbacks=[xb.callbacks.early_stopping(5, 1e-4)])  # doctest: +SKIP
    """
    return EarlyStopping(patience, min_delta, monitor, restore_best)


class Checkpoint(Callback):
    """Save the model every ``every`` epochs to ``directory/epoch_0005.exburn`` (atomic)."""

    def __init__(self, every: int = 5, directory: str | Path = "checkpoints"):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1; got {every!r}")
        self.every, self.directory = every, Path(directory)

    def on_train_begin(self, logs: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics:
        if epoch % self.every == 0:
            metrics["model"].save(self.directory / f"epoch_{epoch:04d}.exburn")
        return metrics


def checkpoint(every: int = 5, directory: str | Path = "checkpoints") -> Checkpoint:
    """The guide's ``CheckpointCallback.every(n, dir)``; files load with ``xb.load``."""
    return Checkpoint(every, directory)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when the monitored metric stalls."""

    def __init__(self, factor: float = 0.5, patience: int = 3, min_delta: float = 1e-4,
                 min_lr: float = 0.0, monitor: str = "val_loss"):
        if not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"factor must be a number in (0, 1); got {factor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0; got {patience!r}")
        self.factor, self.patience, self.min_delta = float(factor), patience, float(min_delta)
        self.min_lr, self.monitor = float(min_lr), monitor

    def on_train_begin(self, logs: dict) -> None:
        self.best, self.wait = math.inf, 0

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics:
        _, value = _monitored(metrics, self.monitor)
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return metrics
        self.wait += 1
        if self.wait > self.patience:
            self.wait = 0
            return {**metrics, "lr": max(metrics["lr"] * self.factor, self.min_lr)}
        return metrics


def reduce_lr_on_plateau(factor: float = 0.5, patience: int = 3, min_delta: float = 1e-4,
                         min_lr: float = 0.0, monitor: str = "val_loss") -> ReduceLROnPlateau:
    """Lower the learning rate when the monitored metric has stopped improving."""
    return ReduceLROnPlateau(factor, patience, min_delta, min_lr, monitor)


class ProgressBar(Callback):
    """``verbose=True``: one progress bar for the whole run and one line per epoch.

    In Jupyter the bar is a widget that stays (``leave=True``) with the run's final count,
    so a saved, reloaded or Voilà-rendered notebook shows a finished bar and the epoch
    lines, never a closed widget's "model not found"; in a terminal it is a text bar.
    """

    def on_train_begin(self, logs: dict) -> None:
        from tqdm.auto import tqdm  # imported here: tqdm.auto pulls in IPython in notebooks

        self.batches, self.first = logs["batches"], logs["first_epoch"]
        self.last_epoch = logs["first_epoch"] + logs["epochs"] - 1
        self._write = tqdm.write
        self.bar = tqdm(total=logs["batches"] * logs["epochs"], unit="batch", leave=True,
                        dynamic_ncols=True, mininterval=0.2,
                        desc=f"Epoch {self.first}/{self.last_epoch}")
        self._ema = None

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self.bar.set_description(f"Epoch {epoch}/{self.last_epoch}", refresh=False)

    def on_batch_end(self, batch: int, logs: dict) -> None:
        loss = logs["loss"]
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        self.bar.update(1)
        if batch % 16 == 0 or batch == self.batches:
            self.bar.set_postfix(loss=f"{self._ema:.4f}", refresh=False)

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None:
        self._write(format_metrics(metrics))

    def on_train_end(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.close()  # leave=True: the bar stays, showing where the run ended
            self.bar = None
