"""Callbacks: the guide's ``metrics -> metrics`` functions, and a hook class that steers.

A callback is either

- any callable ``metrics -> metrics`` (the guide's contract), called after each epoch with
  ``epoch`` (1-based, counting on across ``fit`` calls), ``loss``, ``val_loss``,
  ``accuracy``, ``val_accuracy`` (where computed), ``lr`` and ``model``. Return the dict
  with ``stop_training=True`` to halt after this epoch, with another ``lr`` to change the
  learning rate from the next epoch on, or with extra numbers to record them in the
  history. Returning None means "unchanged"; or
- a :class:`Callback` subclass, whose no-op hooks you override. Every hook can reach the
  run through ``self.trainer``: ``self.trainer.stop()`` (after this batch),
  ``self.trainer.set_learning_rate(lr)`` (from the next batch) and
  ``self.trainer.log(name, value)`` (a column in the batch or epoch history, depending
  on the hook). The loop skips batch dispatch entirely when no callback overrides a
  batch hook.

Example:
    >>> def converged(metrics):
    ...     if metrics["loss"] < 0.01:
    ...         return {**metrics, "stop_training": True}
    ...     return metrics
    >>> class GradNoise(Callback):
    ...     def on_batch_end(self, batch, logs):
    ...         self.trainer.log("loss_x2", 2 * logs["loss"])
    >>> model = xb.fit(model, (x, y), callbacks=[converged, GradNoise()])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from ..base.checks import check_int, check_number
from ..base.vocabulary import METRICS, Event, RunState, end_state, run_metrics
from ..io import rundir
from . import checkpoints
from .tensorboard import RunBoard, is_number, summary_writer_class

Metrics = dict[str, Any]
BATCH_HOOKS = ("on_batch_begin", "on_batch_end")


class RunControls(Protocol):
    """What a callback may ask of the run it belongs to (``self.trainer``): the
    :class:`~exburn_nb.train.loop.Trainer` provides these."""

    run_uid: str | None  # the run's id, kept by a resumed run (its checkpoints name it)

    def stop(self) -> None:
        """End the run after the batch in progress."""

    def set_learning_rate(self, lr: float) -> bool:
        """Use ``lr`` from the next batch on."""

    def log(self, name: str, value: float) -> None:
        """Record ``value`` under ``name`` in this batch's or epoch's row."""

    def save_checkpoint(self, path: str | Path, then: Callable[[], None] | None = None) -> None:
        """Write a resumable checkpoint at the end of this epoch."""


class Callback:
    """Base class with no-op hooks, named ``on_<phase>_<begin|end>``.

    ``self.trainer`` is the running :class:`~exburn_nb.train.loop.Trainer` (set before
    ``on_train_begin``). ``logs`` for ``on_train_begin``/``on_train_end``: ``model``,
    ``epochs`` (this run), ``batches`` (per epoch; None when a loader has no length),
    ``first_epoch``. ``on_batch_begin`` gets ``epoch``, ``batch`` (1-based in its epoch)
    and ``batches``; ``on_batch_end`` also ``step`` (optimizer steps so far), ``size``,
    ``loss`` (a float, None when nothing asked the loop to read it) and ``lr``.
    ``on_validation_end`` gets the epoch's metrics before the callbacks see them.
    ``on_train_end``'s logs also hold ``error``: the exception the run raised, if any.
    ``on_epoch_end`` gets the metrics dict and may return a changed one, exactly as a
    function callback.

    A callback whose state matters for resuming a run (early stopping's patience, a
    plateau's best value) returns it from :meth:`state_dict` (JSON values and tensors)
    and takes it back in :meth:`load_state_dict`.
    """

    trainer: RunControls | None = None

    def set_trainer(self, trainer: RunControls) -> None:
        """Called by the loop before ``on_train_begin``."""
        self.trainer = trainer

    def claim(self, run_uid: str | None) -> None:
        """Called before the run changes anything (and again when a checkpoint's state is
        loaded): raise a ``ValueError`` to refuse run ``run_uid``, e.g. because a
        directory this callback writes holds another run's files."""

    def on_train_begin(self, logs: dict) -> None:
        """Called once before the first epoch of a ``fit`` run."""

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        """Called before each epoch; ``logs`` holds ``lr``."""

    def on_batch_begin(self, batch: int, logs: dict) -> None:
        """Called before each batch (only dispatched when some callback overrides it)."""

    def on_batch_end(self, batch: int, logs: dict) -> None:
        """Called after each batch (only dispatched when some callback overrides it)."""

    def on_validation_end(self, epoch: int, logs: dict) -> None:
        """Called after the epoch's validation pass (or after its batches, without one)."""

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics | None:
        """Called after each complete epoch; may return changed metrics."""
        return None

    def on_train_end(self, logs: dict) -> None:
        """Called once when the run ends, however it ends (done, stopped, error)."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this callback (JSON values, tensors)."""
        return {}

    def check_state_dict(self, state: dict) -> None:
        """Raise a ``ValueError`` unless :meth:`load_state_dict` takes ``state``; called
        before a resumed run changes anything, so override it where loading can fail."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output (called after ``on_train_begin``)."""


class FunctionCallback(Callback):
    """Adapts the guide's ``metrics -> metrics`` function onto the hook class."""

    def __init__(self, fn: Callable[[Metrics], Metrics | None]):
        self.fn = fn

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics | None:
        return self.fn(metrics)

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.fn, '__name__', self.fn)!r})"


_blocks = threading.local()  # .callbacks: those of this thread's open for_every_run blocks


@contextmanager
def for_every_run(*callbacks: Callback) -> Iterator[None]:
    """Give ``callbacks`` to every run of one model that starts in this thread inside the
    ``with`` block, as if each ``fit`` had been passed them (runs in other threads, such
    as a dashboard's, are left alone). What ``with xb.widgets.live_plot():`` runs on.

    Example:
        >>> with for_every_run(log()):  # doctest: +SKIP
        ...     xb.fit(model, (x, y), epochs=3)  # logs each epoch
    """
    stack = _blocks.__dict__.setdefault("callbacks", [])
    stack.extend(callbacks)
    try:
        yield
    finally:
        for callback in callbacks:
            stack.remove(callback)


def block_callbacks() -> list[Callback]:
    """The callbacks of this thread's open :func:`for_every_run` blocks, outermost first."""
    return list(getattr(_blocks, "callbacks", ()))


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
    """Whether ``callback`` overrides ``on_batch_begin`` or ``on_batch_end``."""
    return any(getattr(type(callback), hook) is not getattr(Callback, hook)
               for hook in BATCH_HOOKS)


def format_metrics(metrics: Metrics) -> str:
    """``Epoch 3: loss=0.1234 val_loss=0.2345 accuracy=0.9712 lr=0.001``."""
    parts = [f"Epoch {metrics['epoch']}:"]
    for key in METRICS:  # lr comes last
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{key}={value:.3g}" if key == "lr" else f"{key}={value:.4f}")
    return " ".join(parts)


def log(metrics: Metrics) -> Metrics:
    """Print one line per epoch (the guide's ``LoggingCallback.log/1``)."""
    print(format_metrics(metrics))
    return metrics


# --------------------------------------------------------------------- monitoring
MAXIMISED = ("accuracy", "acc", "auc", "precision", "recall", "f1")


def monitor_mode(monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"``: ``mode`` itself, or for ``"auto"`` what Keras decides
    (accuracy-like names are maximised, everything else minimised).

    Example:
        >>> monitor_mode("val_accuracy", "auto"), monitor_mode("val_loss", "auto")
        ('max', 'min')
    """
    if mode not in ("min", "max", "auto"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto'; got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if name in MAXIMISED or name.endswith(MAXIMISED) else "min"


class MonitorCallback(Callback):
    """Base for callbacks that watch one metric: early stopping, plateaus, best weights.

    ``monitor=None`` watches ``val_loss`` when the run has validation data, else
    ``loss`` (the guide's rule). A monitor the run never produces is reported by name:
    at the start for the built-in metrics, at the first epoch's end for callbacks' extras.
    """

    def __init__(self, monitor: str | None, mode: str, min_delta: float):
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"monitor must be a metric name such as 'val_loss'; got {monitor!r}")
        check_number("min_delta", min_delta)
        monitor_mode(monitor or "loss", mode)
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.best: float | None = None
        self.wait = 0

    def on_train_begin(self, logs: dict) -> None:
        validation, accuracy = logs.get("validation", False), logs.get("accuracy", False)
        self.watching = self.monitor or ("val_loss" if validation else "loss")
        produced = run_metrics(validation, accuracy)
        if self.watching in METRICS and self.watching not in produced:
            raise ValueError(f"monitor {self.watching!r} is not computed by this run; it "
                             f"computes {sorted(produced)}"
                             + ("" if validation else " (pass validation_data for val_ metrics)")
                             + ("" if accuracy else " (pass accuracy=True for accuracy)"))
        self.direction = monitor_mode(self.watching, self.mode)
        self.best, self.wait = None, 0

    def value(self, metrics: Metrics) -> float:
        """The watched value in ``metrics``; a ``ValueError`` naming it when absent."""
        value = metrics.get(self.watching)
        if value is None:
            available = sorted(k for k, v in metrics.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise ValueError(f"monitor {self.watching!r} is not in this run's metrics "
                             f"{available}")
        return float(value)

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta`` (and
        records it as the new best when it does)."""
        if self.best is None or (value < self.best - self.min_delta if self.direction == "min"
                                 else value > self.best + self.min_delta):
            self.best, self.wait = value, 0
            return True
        self.wait += 1
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def check_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"{type(self).__name__} state must be an object; got {state!r:.80}")
        best = state.get("best")
        if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
            raise ValueError(f"{type(self).__name__} state best must be a number; got {best!r}")
        check_int(f"{type(self).__name__} state wait", state.get("wait"), 0)

    def load_state_dict(self, state: dict) -> None:
        self.check_state_dict(state)
        self.best, self.wait = state.get("best"), state["wait"]




class EarlyStopping(MonitorCallback):
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` epochs.

    Watches ``monitor`` (``val_loss`` with validation data, else ``loss``, by default) in
    direction ``mode`` (``"auto"``: accuracy-like names are maximised). With
    ``restore_best=True`` the best epoch's weights are put back when the run ends.
    """

    def __init__(self, patience: int = 5, min_delta: float = 1e-4, monitor: str | None = None,
                 restore_best: bool = False, mode: str = "auto"):
        check_int("patience", patience, 0)
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, bool(restore_best)
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, logs: dict) -> None:
        super().on_train_begin(logs)
        self.best_epoch = self.stopped_epoch = self.best_state = None

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics:
        if self.improved(self.value(metrics)):
            self.best_epoch = epoch
            if self.restore_best:
                self.best_state = copy.deepcopy(metrics["model"].module.state_dict())
            return metrics
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return {**metrics, "stop_training": True}
        return metrics

    def on_train_end(self, logs: dict) -> None:
        if self.restore_best and self.best_state is not None:
            model = logs["model"]
            with model.lock, torch.no_grad():
                model.module.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_state": self.best_state}

    def check_state_dict(self, state: dict) -> None:
        super().check_state_dict(state)
        for key in ("best_epoch", "stopped_epoch"):
            if state.get(key) is not None:
                check_int(f"EarlyStopping state {key}", state[key], 1)
        best_state = state.get("best_state")
        if best_state is not None and not (isinstance(best_state, dict) and all(
                isinstance(v, torch.Tensor) for v in best_state.values())):
            raise ValueError("EarlyStopping state best_state must map names to tensors")

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)  # checks the whole state first
        self.best_epoch, self.stopped_epoch = state.get("best_epoch"), state.get("stopped_epoch")
        self.best_state = state.get("best_state")


def early_stopping(patience: int = 5, min_delta: float = 1e-4, monitor: str | None = None,
                   restore_best: bool = False, mode: str = "auto") -> EarlyStopping:
    """The guide's ``EarlyStoppingCallback.wait(patience, min_delta)``.

    Example:
        >>> xb.fit(model, data, callbacks=[xb.callbacks.early_stopping(5, 1e-4)])  # doctest: +SKIP
        >>> early_stopping(3, monitor="val_accuracy").mode  # maximised: accuracy-like
        'auto'
    """
    return EarlyStopping(patience, min_delta, monitor, restore_best, mode)


class Checkpoint(Callback):
    """Every ``every`` epochs, write a resumable checkpoint ``directory/epoch_0005.exburn``.

    Each file is a complete model (``xb.load`` reads it) that also holds what the run
    needs to continue exactly (``xb.fit(model, data, resume_from=directory)``): the
    optimizer and schedule state, RNG states, counters, callback states, the config and
    the run's id. Files are written atomically at the end of the epoch, after every
    callback. A directory belongs to one run: a run whose directory holds another run's
    checkpoints is refused before its first step (the run itself, resumed, goes on
    writing there). With ``keep=N`` only this run's newest N files are kept.
    """

    def __init__(self, every: int = 5, directory: str | Path = "checkpoints",
                 keep: int | None = None):
        check_int("every", every, 1)
        if keep is not None:
            check_int("keep", keep, 1)
        self.every, self.directory, self.keep = every, Path(directory), keep
        self._own: list[str] = []  # names of the files this run wrote here, oldest first

    def claim(self, run_uid: str | None) -> None:
        """Take the directory for run ``run_uid`` (see
        :func:`~exburn_nb.train.checkpoints.claim`); the loop calls this before the run
        changes anything."""
        self._own = [p.name for p in checkpoints.claim(self.directory, run_uid)]

    def on_train_begin(self, logs: dict) -> None:
        self.claim(self.trainer.run_uid)
        self.directory.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics:
        if epoch % self.every == 0:
            path = self.directory / f"epoch_{epoch:04d}.exburn"
            if path.exists() and path.name not in self._own:  # another run started here
                self.claim(self.trainer.run_uid)
            self.trainer.save_checkpoint(path, then=lambda: self._written(path.name))
        return metrics

    def _written(self, name: str) -> None:
        """Note the file written, and prune this run's oldest beyond ``keep``."""
        if name not in self._own:
            self._own.append(name)
        if self.keep is not None:
            for old in self._own[:-self.keep]:
                (self.directory / old).unlink(missing_ok=True)
            self._own = self._own[-self.keep:]


def checkpoint(every: int = 5, directory: str | Path = "checkpoints",
               keep: int | None = None) -> Checkpoint:
    """The guide's ``CheckpointCallback.every(n, dir)``; files load with ``xb.load`` and
    resume with ``xb.fit(..., resume_from=directory)``.

    Example:
        >>> xb.fit(model, data, epochs=50,
        ...        callbacks=[xb.callbacks.checkpoint(5, "ckpt", keep=3)])  # doctest: +SKIP
    """
    return Checkpoint(every, directory, keep)


def is_main_process() -> bool:
    """Whether this process writes a run's files: True unless it is a rank other than 0
    of an initialised ``torch.distributed`` process group."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class RunDirectory(Callback):
    """Write the run to a run directory as it goes, so it can be watched from elsewhere
    (``xb.widgets.watch(path)``, ``xb.read_run(path)``), and stop it from there.

    ``run.json`` says what the run is (uid, config, epochs and batches to come) and, at
    the end, how it ended (``finished``, ``stopped``, ``pruned``, ``failed``);
    ``history.jsonl`` gets the batch rows and each epoch row, once complete. A ``STOP``
    file (``touch path/STOP``) stops the run at the end of its batch in progress, as the
    dashboard's Stop does (a run started while one is there trains nothing; a resumed run
    removes it). A thread of this callback's does the batch work every ``every_s``
    seconds: it looks for the stop file (one ``stat``, which costs tens of microseconds
    on some file systems) and appends the new batch rows, so the training loop pays
    nothing per batch; epoch rows go out at the next epoch's start and the run's end.
    Rows are flushed, never fsynced. A directory belongs to one run: another run's is
    refused before the first step; the run itself, resumed from a checkpoint, goes on
    there (its rows rewritten to what the checkpoint holds). In a distributed run only
    rank 0 writes and reads the stop file.

    ``xb.fit(..., run_dir=path)`` adds one (it works under ``torchrun`` from a plain script).

    Example:
        >>> xb.fit(model, data, epochs=50, run_dir="runs/mlp")  # doctest: +SKIP
        >>> xb.fit(model, data, callbacks=[xb.callbacks.RunDirectory("runs/mlp")])  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, every_s: float = 0.2):
        self.path = rundir.check_run_dir(path)
        self.every_s = check_number("every_s", every_s, positive=True)
        self.writer: rundir.RowWriter | None = None
        self.header: dict = {}
        self._lock = threading.Lock()  # the writer: this thread's and the loop's writes
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, run_uid: str | None) -> None:
        rundir.claim(self.path, run_uid)

    def on_train_begin(self, logs: dict) -> None:
        self.writer = None
        if not is_main_process():
            return
        trainer, recorder = self.trainer, logs["model"].recorder
        before = rundir.claim(self.path, trainer.run_uid)
        if before is not None:  # this run, resumed: a stop asked of it then is done
            rundir.clear_stop(self.path)
        elif rundir.stop_requested(self.path):
            trainer.stop()
        run, batches, epochs = trainer.run_id, logs["batches"], logs["epochs"]
        self.header = {
            "uid": trainer.run_uid, "run": run, "status": str(RunState.RUNNING),
            "config": trainer.config.to_dict(), "first_epoch": logs["first_epoch"],
            "last_epoch": logs["first_epoch"] + epochs - 1, "batches": batches,
            "started": (before or {}).get("started", _now()),
            "resumed": (before or {}).get("resumed", -1) + 1 if before else 0,
            "host": socket.gethostname(), "pid": os.getpid()}
        rundir.write_header(self.path, self.header)
        # the run's rows so far (a resumed run's, from its checkpoint), then what comes
        self._recorder = recorder
        self._batches_read, self._epochs_read = recorder.batch_count, recorder.epoch_count
        rows = [] if before is None else [
            r for r in self._rows(recorder, 0, 0) if next(iter(r.values())).get("run") == run]
        self.writer = rundir.RowWriter(self.path, replace_with=rows)
        self._done.clear()
        self._thread = threading.Thread(target=self._every, name="exburn-run-dir",
                                        daemon=True)
        self._thread.start()

    def _every(self) -> None:
        """In this callback's thread: look for the stop file, write the new batch rows."""
        while not self._done.wait(self.every_s):
            if rundir.stop_requested(self.path):
                self.trainer.stop()  # thread-safe: the loop stops after its batch
            self._write(epochs=False)

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self._write(epochs=True)  # the last epoch's row, complete with callbacks' extras

    def on_train_end(self, logs: dict) -> None:
        if self.writer is None:
            return
        self._done.set()
        self._thread.join()
        try:
            self._write(epochs=True)
        finally:
            self.writer.close()
            self.writer = None
            error = logs.get("error")
            messages = list(self.trainer.messages) + ([f"{type(error).__name__}: {error}"]
                                                      if error is not None else [])
            self.header.update(status=str(end_state(self.trainer.stop_reason, error)),
                               ended=_now(), epochs_trained=logs["model"].epochs_trained,
                               messages=messages)
            rundir.write_header(self.path, self.header)

    def _write(self, epochs: bool) -> None:
        """Append the batch rows recorded since the last write (and the epoch rows)."""
        with self._lock:
            if self.writer is None:
                return
            rows = self._rows(self._recorder, self._batches_read,
                              self._epochs_read if epochs else None)
            self._batches_read += sum(1 for r in rows if "batch" in r)
            self._epochs_read += sum(1 for r in rows if "epoch" in r)
            self.writer.write(rows)

    @staticmethod
    def _rows(recorder: Any, batches_from: int, epochs_from: int | None) -> list[dict]:
        """The batch rows, then the epoch rows (None: none), from these positions on, as
        file rows in order."""
        columns = recorder.batch_rows_since(batches_from)
        rows = [{"batch": {k: rundir.json_ready(v) for k, v in zip(columns, values,
                                                                   strict=True)}}
                for values in zip(*columns.values(), strict=True)]
        if epochs_from is None:
            return rows
        epochs = [{"epoch": {k: rundir.json_ready(v) for k, v in row.items()}}
                  for row in recorder.epoch_rows_since(epochs_from)]
        return sorted(rows + epochs, key=lambda r: next(iter(r.values()))["epoch"])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class TensorBoard(Callback):
    """Write a run's history as TensorBoard event files in ``log_dir``.

    Every epoch column (``epoch/loss``, ``epoch/val_loss``, ``epoch/lr``, ``epoch/seconds``,
    callbacks' extras...) at step ``epoch``, every batch column (``batch/loss``,
    ``batch/lr``...) at the optimizer step, and the model's graph where torch can trace
    it (else a warning and a ``graph`` note in the text tab). Batches cost nothing: the
    rows are read from the history at each epoch's end, then the file is flushed; the
    file is closed however the run ends (done, stopped, error, Ctrl-C).

    Given to an experiment as a listener (``exp.add_listener(board)``), it writes one
    sub-directory per run (``run_0003``) with the run's params as hparams and its final
    metrics (``final/loss``, ``final/val_loss``...) as the hparam metrics.
    """

    def __init__(self, log_dir: str | Path):
        if not isinstance(log_dir, (str, Path)) or not str(log_dir):
            raise ValueError(f"log_dir must be a directory path (str or Path); got {log_dir!r}")
        self.writer_class = summary_writer_class()
        self.log_dir = Path(log_dir)
        self.board: RunBoard | None = None
        self.runs: list[tuple[Any, RunBoard]] = []  # an experiment's runs being written
        self.names: set[str] = set()

    def open(self, log_dir: Path, model: Any) -> RunBoard:
        """A board for ``model`` in ``log_dir``, with its graph (or a warning why not)."""
        board = RunBoard(self.writer_class, log_dir, model)
        note = board.add_graph(model)
        if note is not None:
            warnings.warn(f"TensorBoard: no graph in {log_dir}: {note}", stacklevel=2)
        return board

    def on_train_begin(self, logs: dict) -> None:
        self.board = self.open(self.log_dir, logs["model"])

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> None:
        self.board.flush()

    def on_train_end(self, logs: dict) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    # ------------------------------------------------------------ as an experiment listener
    def __call__(self, event: str, experiment: Any) -> None:
        """An :class:`~exburn_nb.experiment.Experiment` listener: a directory per run."""
        if event == Event.RUN_START and experiment.current.model is not None:
            run = experiment.current
            self.runs.append((run, self.open(self.log_dir / self.run_name(run.run),
                                             run.model)))
        elif event == Event.EPOCH:
            for _, board in self.runs:
                if board.pending:
                    board.flush()
        elif event in (Event.RUN_END, Event.END):
            for run, board in [item for item in self.runs
                               if event == Event.END or item[0].state != RunState.RUNNING]:
                self.runs.remove((run, board))
                self.end_run(run, board)

    def run_name(self, number: int) -> str:
        """``run_0003``; ``run_0003_2`` when this board already wrote that run (a stopped
        run trained again)."""
        name, again = f"run_{number:04d}", 1
        while name in self.names:
            again += 1
            name = f"run_{number:04d}_{again}"
        self.names.add(name)
        return name

    @staticmethod
    def end_run(run: Any, board: RunBoard) -> None:
        """Write the run's last rows, its params and final metrics as hparams; close."""
        try:
            board.flush()
            last = run.rows[-1] if run.rows else {}
            board.add_hparams(run.params, {f"final/{k}": last[k] for k in METRICS
                                           if k != "lr" and is_number(last.get(k))})
        finally:
            board.close()


def tensorboard(log_dir: str | Path = "runs") -> TensorBoard:
    """TensorBoard event files of a ``fit`` run, or of every run of an experiment.

    Open them with ``tensorboard --logdir runs``. Needs TensorBoard
    (``pip install 'exburn_nb[export]'``).

    Example:
        >>> xb.fit(model, data, epochs=5,
        ...        callbacks=[xb.callbacks.tensorboard("runs/mlp")])  # doctest: +SKIP
        >>> exp.add_listener(xb.callbacks.tensorboard("runs/search")); exp.run()  # doctest: +SKIP
    """
    return TensorBoard(log_dir)


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when the monitored metric stalls for more
    than ``patience`` epochs (never below ``min_lr``)."""

    def __init__(self, factor: float = 0.5, patience: int = 3, min_delta: float = 1e-4,
                 min_lr: float = 0.0, monitor: str | None = None, mode: str = "auto"):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"factor must be a number in (0, 1); got {factor!r}")
        check_int("patience", patience, 0)
        check_number("min_lr", min_lr)
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.min_lr = float(factor), patience, float(min_lr)

    def on_epoch_end(self, epoch: int, metrics: Metrics) -> Metrics:
        if self.improved(self.value(metrics)) or self.wait <= self.patience:
            return metrics
        self.wait = 0
        if metrics["lr"] <= self.min_lr:  # never raise it
            return metrics
        return {**metrics, "lr": max(metrics["lr"] * self.factor, self.min_lr)}


def reduce_lr_on_plateau(factor: float = 0.5, patience: int = 3, min_delta: float = 1e-4,
                         min_lr: float = 0.0, monitor: str | None = None,
                         mode: str = "auto") -> ReduceLROnPlateau:
    """Lower the learning rate when the monitored metric has stopped improving."""
    return ReduceLROnPlateau(factor, patience, min_delta, min_lr, monitor, mode)


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
