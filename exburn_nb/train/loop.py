"""``fit``: the one training loop, shared by blocking calls and the dashboard's thread.

Every option is checked before the first step (one :class:`~exburn_nb.core.config.FitConfig`).
In-memory data moves to the model's device once and is batched by index; a
``DataLoader`` is read batch by batch. Each batch is recorded in the history as it
completes, so the history always describes the weights the model holds: after a stop, a
Ctrl-C (taken only at batch boundaries), a callback that raises, or a refused step.

Example:
    >>> model = xb.fit(model, (x, y), epochs=10, batch_size=32,
    ...                validation_data=(vx, vy), accuracy=True, seed=0)  # doctest: +SKIP
    >>> model.history.tail()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import torch

from ..base.checks import check_number
from ..base.vocabulary import RESERVED_NAMES
from ..core.config import FitConfig
from ..core.data import LoaderBatches, TensorBatches, is_loader
from ..core.model import Model
from ..core.optim import make_schedule, set_learning_rate
from . import checkpoints
from .callbacks import Callback, ProgressBar, as_callback, listens_to_batches
from .steps import (
    check_accuracy,
    evaluate_batches,
    guarded_step,
    prepare_pair,
)


def check_run_options(model: Model, config: FitConfig) -> None:
    """Raise naming the option when ``config`` cannot train ``model`` (the checks that
    need the model; :class:`FitConfig` checks the rest). Copies no data.

    Example:
        >>> check_run_options(model, FitConfig(nesterov=True))  # an adam model  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: nesterov=True needs optimizer 'sgd'; this model uses 'adam'
    """
    if config.nesterov and model.optimizer != "sgd":
        raise ValueError(f"nesterov=True needs optimizer 'sgd'; this model uses "
                         f"{model.optimizer!r}")
    check_accuracy(model, config.accuracy)


class Trainer:
    """One ``fit`` run: validated options, the loop, and thread-safe controls.

    ``fit`` builds one and calls :meth:`run`; the runner calls :meth:`run` in a
    background thread. Callbacks reach it as ``self.trainer`` and steer it with
    :meth:`stop`, :meth:`set_learning_rate` and :meth:`log`; other threads also use
    :meth:`pause`, :meth:`resume` and :meth:`call_at_next_batch`.

    Args:
        model: a compiled model.
        data: ``(x, y)`` in memory, or a ``torch.utils.data.DataLoader`` / ``Dataset``
            yielding ``(x, y)`` batches.
        config: a :class:`FitConfig`; ``options`` (its field names) override it.
        validation_data: ``(x, y)`` or a loader, evaluated after every epoch.
        callbacks: functions ``metrics -> metrics`` or :class:`Callback` objects.
        verbose: a progress bar and one line per epoch.
        resume_from: a checkpoint file, or a directory of them (its newest), written by
            :func:`exburn_nb.train.callbacks.checkpoint`: the interrupted run continues exactly.
    """

    def __init__(self, model: Model, data: Any, config: FitConfig | None = None, *,
                 validation_data: Any = None, callbacks: Sequence[Callable | Callback] = (),
                 verbose: bool = True, resume_from: str | Path | None = None,
                 **options: Any):
        if not isinstance(model, Model):
            hint = (" (a spec must be compiled first: xb.compile(spec, ...))"
                    if type(model).__name__ == "Spec" else "")
            raise ValueError(f"model must be a compiled exburn_nb Model{hint}; "
                             f"got {type(model).__name__}")
        if config is not None and not isinstance(config, FitConfig):
            if hasattr(config, "shape") or hasattr(config, "__array__"):
                raise ValueError("data must be one pair: call xb.fit(model, (x, y), ...), "
                                 "not xb.fit(model, x, y)")
            raise ValueError(f"config must be an xb.FitConfig (or pass the options as "
                             f"keywords); got {type(config).__name__}")
        self.model = model
        self._resume = (checkpoints.read(resume_from, model, options.get("lr_schedule"))
                       if resume_from is not None else None)
        if self._resume is not None and config is None:
            config = self._resume.config
        self.config = cfg = FitConfig.from_options(config, **options)
        check_run_options(model, cfg)
        if not isinstance(callbacks, (list, tuple)):
            raise ValueError(f"callbacks must be a list; got {type(callbacks).__name__}")
        self.callbacks = [as_callback(c, i) for i, c in enumerate(callbacks)]
        if verbose:
            self.callbacks.append(ProgressBar())
        self.source = self._batches(data, "data")
        self.val = (self._batches(validation_data, "validation_data", cfg.batch_size * 4)
                    if validation_data is not None else None)
        self.batches = self.source.batches
        self.schedule = make_schedule(cfg.lr_schedule, cfg.epochs)
        if self.schedule is not None and cfg.epochs > 0:
            self.schedule(0)  # a bad callable fails here, before any step
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._pending: deque[Callable[[], None]] = deque()
        self._pending_lock = threading.Lock()
        self._closed = False
        self._batch_logged: dict[str, float] = {}  # from on_batch_begin, for this batch's row
        self._epoch_logged: dict[str, float] = {}  # from epoch hooks, for this epoch's row
        self._phase = "epoch"
        self._checkpoints: list[tuple[Path, Callable[[], None] | None]] = []
        self.stop_reason: str | None = None
        self.messages: list[str] = []  # what the run warned about, for front ends
        self.emit_warnings = True  # False in background threads, which must not print
        self.step = model.recorder.last_step  # optimizer steps count on across runs
        self.epoch = model.epochs_trained
        self.epoch_index = 0  # epochs done in this run
        self.run_id = 0
        self.generator = torch.Generator()
        self._in_batch: bool | None = None  # None: Ctrl-C is not deferred (not the main thread)

    # ---------------------------------------------------------------- data
    def _batches(self, data: Any, argname: str,
                 batch_size: int | None = None) -> TensorBatches | LoaderBatches:
        model, check = self.model, self.config.check_data
        if is_loader(data):
            from torch.utils.data import DataLoader, IterableDataset

            if not isinstance(data, DataLoader):
                shuffle = (argname == "data" and self.config.shuffle
                           and not isinstance(data, IterableDataset))  # streams keep their order
                data = DataLoader(data, batch_size=batch_size or self.config.batch_size,
                                  shuffle=shuffle, pin_memory=model.torch_device.type == "cuda")
            return LoaderBatches(data, lambda x, y: prepare_pair(model, (x, y), argname, check))
        x, y = prepare_pair(model, data, argname, check)
        return TensorBatches(x, y, batch_size or self.config.batch_size)

    # ---------------------------------------------------------------- controls
    def stop(self) -> None:
        """Stop after the batch in progress (model and history stay consistent); nothing
        happens once the run has ended."""
        with self._pending_lock:
            if self._closed:
                return
            self.stop_reason = self.stop_reason or "stopped"
        self._stop.set()
        self._running.set()

    request_stop = stop  # the runner's name for it

    def pause(self) -> None:
        """Hold the loop after the batch in progress until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        """Continue a paused run."""
        self._running.set()

    @property
    def paused(self) -> bool:
        """Whether a pause has been requested and not resumed."""
        return not self._running.is_set()

    def call_at_next_batch(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` in the training thread at the next batch boundary (e.g. a freeze).

        Returns False, without queueing, once the run has ended: then call ``fn`` yourself.
        """
        with self._pending_lock:
            if self._closed:
                return False
            self._pending.append(fn)
            return True

    def _run_pending(self) -> None:
        while self._pending:
            self._pending.popleft()()

    def set_learning_rate(self, lr: float) -> bool:
        """Use ``lr`` from the next batch on (replaces any schedule for the rest of the run).

        Returns False once the run has ended (nothing changed).
        """
        lr = check_number("learning_rate", lr, positive=True)
        return self.call_at_next_batch(lambda: self._apply_lr(lr, manual=True))

    def log(self, name: str, value: float) -> None:
        """Record ``value`` under ``name``: in this batch's row from a batch hook, in this
        epoch's row from an epoch hook (a new history column)."""
        if not isinstance(name, str) or name in RESERVED_NAMES:
            raise ValueError(f"name must be a new column name; got {name!r}")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"the value logged as {name!r} must be a finite number; "
                             f"got {value!r}")
        value = float(value)
        if self._phase == "batch_end":
            self.model.recorder.update_last_batch({name: value})
        elif self._phase == "epoch_end":
            self.model.recorder.update_last_epoch({name: value})
        elif self._phase == "batch_begin":
            self._batch_logged[name] = value
        else:
            self._epoch_logged[name] = value

    def save_checkpoint(self, path: str | Path, then: Callable[[], None] | None = None) -> None:
        """Write a resumable checkpoint to ``path`` at the end of this epoch, after every
        callback (``then`` runs after it is written)."""
        self._checkpoints.append((Path(path), then))

    def _apply_lr(self, lr: float, manual: bool = False) -> None:
        set_learning_rate(self.model.torch_optimizer, lr)
        self.model.learning_rate = lr
        if manual:
            self.schedule = None

    def _warn(self, message: str) -> None:
        self.messages.append(message)
        if self.emit_warnings:
            warnings.warn(message, stacklevel=4)

    # ---------------------------------------------------------------- the loop
    def run(self) -> Model:
        """Train for ``epochs`` epochs (or until stopped) and return the model."""
        model, cfg = self.model, self.config
        self._start_run()  # a resume loads the model first (all or nothing)
        opt = model.torch_optimizer
        saved = [(g["weight_decay"], g.get("nesterov")) for g in opt.param_groups]
        for g in opt.param_groups:  # this run's settings; the model's come back at the end
            if cfg.weight_decay is not None:
                g["weight_decay"] = cfg.weight_decay
            if "nesterov" in g:
                g["nesterov"] = cfg.nesterov
        first = model.epochs_trained + 1 - self.epoch_index
        logs = {"model": model, "epochs": cfg.epochs, "batches": self.batches,
                "first_epoch": first, "validation": self.val is not None,
                "accuracy": cfg.accuracy, "trainer": self}
        error = None
        try:
            with _deferred_interrupts(self):
                for cb in self.callbacks:
                    cb.set_trainer(self)
                for cb in self.callbacks:
                    cb.on_train_begin(logs)
                if self._resume is not None:
                    self._resume.restore_callbacks(self.callbacks)
                while self.epoch_index < cfg.epochs and not self._stop.is_set():
                    if not self._run_epoch(model.epochs_trained + 1):
                        break
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
        except BaseException as exc:
            error = exc
            raise
        finally:
            if self.stop_reason == "interrupted":
                self._warn(f"training interrupted; the model and history hold everything up "
                           f"to the last completed batch (epoch {model.epochs_trained})")
            for g, (wd, nesterov) in zip(opt.param_groups, saved, strict=True):
                g["weight_decay"] = wd
                if nesterov is not None:
                    g["nesterov"] = nesterov
            opt.zero_grad(set_to_none=True)
            with self._pending_lock:
                self._closed = True
            # changes asked for during the last batch still happen, and every callback
            # ends: one failure does not skip the others (the first is raised after)
            failures = _call_all([*self._pending, *(lambda cb=cb: cb.on_train_end(logs)
                                                    for cb in self.callbacks)])
            self._pending.clear()
            if failures and error is None:
                raise failures[0]
        return model

    def _start_run(self) -> None:
        """Seed the run, or put back the state of the run being resumed."""
        cfg, history = self.config, self.model.recorder
        if self._resume is not None:
            self._resume.restore_run(self)
            return
        seed = cfg.seed
        if seed is None:  # still reproducible under torch.manual_seed
            seed = int(torch.randint(0, 2**62, (1,)))
        else:
            torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        self.run_id = history.start_run(cfg.to_dict())

    def _run_epoch(self, epoch: int) -> bool:
        """Train one epoch and record it; False when the run must end."""
        model = self.model
        self.epoch = epoch
        if self.schedule is not None:
            self._apply_lr(self.schedule(self.epoch_index))
        self._phase = "epoch"
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {"lr": model.torch_optimizer.param_groups[0]["lr"]})
        start = time.perf_counter()
        tally = _Tally()
        try:
            complete = self._train_batches(epoch, tally)
        except BaseException:  # a raising callback or an interrupt: record what was done
            if tally.done:
                self._record_epoch(epoch, tally, start, time.perf_counter() - start, False)
            raise
        train_seconds = time.perf_counter() - start
        if tally.done == 0:
            return False
        metrics = self._record_epoch(epoch, tally, start, train_seconds, validate=complete)
        if not complete or metrics is None:
            return False
        self.epoch_index += 1
        if self.schedule is not None:
            self.schedule.advance()
        metrics["model"] = model
        self._phase = "epoch_end"
        for cb in self.callbacks:
            out = cb.on_epoch_end(epoch, metrics)
            if out is not None:
                if not isinstance(out, dict):
                    raise ValueError(f"callback {cb!r} returned {type(out).__name__}; "
                                     "a callback returns the metrics dict or None")
                metrics = out
        go_on = self._after_callbacks(metrics)
        self._phase = "epoch"
        if not go_on:  # the run is over by its own rule (a stop asked for too changes nothing)
            self.stop_reason = "stop_training"
        self._write_checkpoints()
        return go_on and not self._stop.is_set()

    def _record_epoch(self, epoch: int, tally: _Tally, start: float, train_seconds: float,
                      validate: bool) -> dict | None:
        """Add the epoch's row (validation only after a complete epoch); the metrics dict,
        or None when validation gave a non-finite value (the row is recorded without it).
        The row is added however this ends (an interrupt while validating included)."""
        model, cfg = self.model, self.config
        metrics: dict[str, Any] = {"epoch": epoch, "loss": tally.loss_sum() / tally.done}
        if cfg.accuracy:
            metrics["accuracy"] = float(tally.correct) / tally.done
        metrics["lr"] = model.torch_optimizer.param_groups[0]["lr"]
        finite = True
        try:
            if validate and self.val is not None:
                val_loss, val_acc = evaluate_batches(model, self.val.epoch(None), cfg.accuracy)
                values = {"val_loss": val_loss,
                          **({"val_accuracy": val_acc} if cfg.accuracy else {})}
                finite = all(math.isfinite(v) for v in values.values())
                if finite:
                    metrics.update(values)
                else:
                    self.stop_reason = "non-finite"
                    self._warn(f"epoch {epoch}: validation gave a non-finite value {values}; "
                               "the epoch is recorded without it and training stopped")
            if validate:
                self._phase = "validation"
                for cb in self.callbacks:
                    cb.on_validation_end(epoch, metrics)
        finally:
            row = {**metrics, "run": self.run_id, **self._epoch_logged,
                   "seconds": time.perf_counter() - start,
                   "samples_per_s": tally.done / max(train_seconds, 1e-9)}
            self._epoch_logged = {}
            model.recorder.record_epoch(row)
        return metrics if finite else None

    def _after_callbacks(self, metrics: dict) -> bool:
        extras = {k: v for k, v in metrics.items() if k not in RESERVED_NAMES and
                  isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if extras:
            self.model.recorder.update_last_epoch(extras)
        lr = metrics.get("lr")
        if lr is not None and lr != self.model.torch_optimizer.param_groups[0]["lr"]:
            self._apply_lr(check_number("lr returned by a callback", lr, positive=True),
                           manual=True)
        return not metrics.get("stop_training")

    def _write_checkpoints(self) -> None:
        if self._checkpoints:
            with self.model.lock:
                self._run_pending()  # an epoch's end is a batch boundary: changes land first
        while self._checkpoints:
            path, then = self._checkpoints.pop(0)
            checkpoints.write(self, path)
            if then is not None:
                then()

    def _train_batches(self, epoch: int, tally: _Tally) -> bool:
        """The batches of one epoch, in accumulation groups, each recorded as it ends;
        True when the epoch ran to its end (a stop after its last batch included)."""
        model, cfg = self.model, self.config
        opt, lossfn, history = model.torch_optimizer, model.loss, model.recorder
        forward = model.compiled_module() if cfg.compile else model.module
        n = self.source.samples
        order = None
        if cfg.shuffle and n is not None:
            order = torch.randperm(n, generator=self.generator).to(self.source.x.device)
        batch_cbs = [cb for cb in self.callbacks if listens_to_batches(cb)]
        read_loss = cfg.terminate_on_nan or bool(batch_cbs)
        params = list(model.module.parameters())
        clip = cfg.clip_norm is not None or cfg.clip_value is not None
        model.train_mode()
        section = _BatchSection(self)
        b = 0
        for group in _groups(self.source.epoch(order), cfg.accumulate_gradients):
            total = sum(xb.shape[0] for xb, _ in group)
            for i, (xb, yb) in enumerate(group):
                b += 1
                size = xb.shape[0]
                if batch_cbs:
                    self._phase = "batch_begin"
                    logs = {"epoch": epoch, "batch": b, "batches": self.batches}
                    for cb in batch_cbs:
                        cb.on_batch_begin(b, logs)
                with model.lock, section:
                    self._run_pending()
                    with self._autocast():
                        out = forward(xb)
                        loss = lossfn(out, yb)
                    (loss * (size / total) if size != total else loss).backward()
                    value = loss.item() if read_loss else None
                    if value is not None and not math.isfinite(value) and cfg.terminate_on_nan:
                        self._refuse(epoch, b, f"the loss is {value}")
                        return False
                    if i == len(group) - 1:  # last batch of an accumulation group: step
                        refused = guarded_step(model, params, cfg.clip_norm if clip else None,
                                               cfg.clip_value if clip else None,
                                               cfg.terminate_on_nan)
                        if refused:
                            self._refuse(epoch, b, refused)
                            return False
                        self.step += 1
                    if cfg.accuracy:
                        tally.correct += lossfn.correct(out.detach(), yb)
                    lr = opt.param_groups[0]["lr"]
                    loss_value = value if value is not None else loss.detach()
                    tally.add(loss_value, size)
                    history.record_batch(self.run_id, epoch, b, self.step, loss_value, lr,
                                      self._batch_logged)
                    self._batch_logged = {}
                if batch_cbs:
                    self._phase = "batch_end"
                    logs = {"epoch": epoch, "batch": b, "batches": self.batches,
                            "step": self.step, "size": size, "loss": value, "lr": lr}
                    for cb in batch_cbs:
                        cb.on_batch_end(b, logs)
                    self._phase = "epoch"
                if not self._running.is_set():
                    self._running.wait()
                if self._stop.is_set():
                    return self.batches is not None and b == self.batches
        return True

    def _refuse(self, epoch: int, batch: int, what: str) -> None:
        """End the run before a step that would leave the weights non-finite."""
        self.model.torch_optimizer.zero_grad(set_to_none=True)
        self.stop_reason = "non-finite"
        self._stop.set()
        self._warn(f"epoch {epoch}, batch {batch}: {what}; the step was refused, training "
                   "stopped and the model keeps its last finite weights (try a lower "
                   "learning_rate or clip_norm)")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast(self.model.torch_device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


class _Tally:
    """An epoch's running sums: samples done, per-batch losses and sizes, correct count."""

    def __init__(self) -> None:
        self.done, self.correct, self.error = 0, 0.0, False
        self.losses: list = []
        self.sizes: list[int] = []

    def add(self, loss: float | torch.Tensor, size: int) -> None:
        self.losses.append(loss)
        self.sizes.append(size)
        self.done += size

    def loss_sum(self) -> float:
        losses = self.losses
        if losses and isinstance(losses[0], torch.Tensor):
            losses = torch.stack(losses).tolist()
        return sum(v * s for v, s in zip(losses, self.sizes, strict=True))


def _call_all(functions: list[Callable[[], None]]) -> list[BaseException]:
    """Call every function; the exceptions they raised, in order."""
    failures = []
    for fn in functions:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected, the first is re-raised
            failures.append(exc)
    return failures


def _groups(batches: Iterator, size: int) -> Iterator[list]:
    """Batches in lists of ``size`` (the last may be shorter): one optimizer step each."""
    group: list = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


@contextlib.contextmanager
def _deferred_interrupts(trainer: Trainer) -> Iterator[None]:
    """In the main thread, take Ctrl-C at batch boundaries: one arriving inside a batch's
    step-and-record section stops the run after that batch; elsewhere it raises at once."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    trainer._in_batch = False

    def handler(signum: int, frame: Any) -> None:
        if trainer._in_batch and trainer.stop_reason != "interrupted":
            trainer.stop_reason = "interrupted"  # a second Ctrl-C raises at once
            trainer._stop.set()
            trainer._running.set()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trainer._in_batch = None


class _BatchSection:
    """Marks a batch's step-and-record section (see :func:`_deferred_interrupts`); a
    plain object, not a generator, because it is entered for every batch."""

    __slots__ = ("trainer",)

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __enter__(self) -> None:
        if self.trainer._in_batch is not None:
            self.trainer._in_batch = True

    def __exit__(self, *exc: object) -> None:
        if self.trainer._in_batch is not None:
            self.trainer._in_batch = False


def fit(model: Model, data: Any, config: FitConfig | None = None, *,
        validation_data: Any = None, callbacks: Sequence[Callable | Callback] = (),
        verbose: bool = True, resume_from: str | Path | None = None, **options: Any) -> Model:
    """Train ``model`` on ``data = (x, y)``; returns the same, trained, model.

    Calling ``fit`` again continues: epochs are numbered on, the history grows and the
    optimizer state is kept. Each call is a *run*: its config is recorded
    (``model.runs``) and each history row names its run.

    Args:
        model: a compiled model (:func:`exburn_nb.compile`).
        data: ``(x, y)`` as tensors, NumPy arrays or pandas objects, or a
            ``torch.utils.data.DataLoader`` (or ``Dataset``) of ``(x, y)`` batches.
        config: a :class:`~exburn_nb.core.config.FitConfig` holding the options below.
        validation_data: ``(x, y)`` or a loader, evaluated after every epoch (``val_loss``).
        callbacks: functions ``metrics -> metrics`` or :class:`~exburn_nb.train.callbacks.Callback`.
        verbose: a progress bar and one line per epoch.
        resume_from: a checkpoint file or directory (:func:`~exburn_nb.train.callbacks.checkpoint`):
            continue that run exactly where it was saved, with its config (``options``
            given here override it).
        **options: any :class:`~exburn_nb.core.config.FitConfig` field: ``epochs`` (10),
            ``batch_size`` (32), ``shuffle`` (True), ``lr_schedule`` (the guide's tuples
            or a callable ``epoch -> lr``), ``clip_norm``, ``clip_value`` (values are
            clamped first, then the norm clipped), ``weight_decay`` (this run's L2),
            ``accumulate_gradients`` (1; a ragged last group steps on what it has, weighted
            as one batch of those samples), ``accuracy``, ``nesterov`` (sgd only),
            ``terminate_on_nan`` (True: refuse a step whose loss, gradients or updated
            weights are not finite), ``check_data`` (True: refuse NaN/inf data up front),
            ``compile`` (torch.compile), ``precision`` ("fp32" or "bf16"), ``seed``
            (the shuffle order and random draws: the same seed gives the same run).

    Returns:
        The model, trained in place. A ``KeyboardInterrupt`` also returns it, with a
        warning, holding everything up to the last completed batch.

    A run that ends mid-epoch (a stop, an interrupt, a refused step, a raising callback)
    still records that epoch: its row averages the batches done and has no validation
    values, so the history always describes the weights the model holds.

    Example:
        >>> xb.fit(model, (x, y), epochs=5, accuracy=True, seed=0)  # doctest: +SKIP
        >>> cfg = xb.FitConfig(epochs=5, batch_size=64)
        >>> xb.fit(model, (x, y), cfg, validation_data=(vx, vy))  # doctest: +SKIP
    """
    return Trainer(model, data, config, validation_data=validation_data, callbacks=callbacks,
                   verbose=verbose, resume_from=resume_from, **options).run()
