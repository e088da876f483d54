"""The one execution path of an experiment: train a group of prepared runs, end each one.

A group is one :class:`~exburn_nb.train.loop.Trainer` run, the loop of ``xb.fit``: a
group of one with the single-model engine, a larger group as one stacked ensemble
(:class:`~exburn_nb.sweep.StackedTrainer`). Either way every run reports its epochs (so
an Optuna pruner ends it with ``stop_member``), honours :meth:`Execution.stop` and
Ctrl-C, and ends in the state :func:`~exburn_nb.base.vocabulary.end_state` gives for how
it stopped.

Example:
    >>> execution = Execution((x, y), on_run_end=lambda run: print(run.run, run.state))
    ...     # doctest: +SKIP
    >>> execution.train([Run(0, {}, 1)], [space.prepare({}, 1)])  # doctest: +SKIP
    0 finished
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..base.vocabulary import RunState, StopReason, end_state
from ..core.config import FitConfig
from ..core.model import Model
from ..sweep import StackedTrainer
from ..train.loop import Trainer
from .runs import Run

INTERRUPTED = "interrupted (Ctrl-C) before it trained"


class Execution:
    """Trains groups of runs, one group at a time, and records how each run ended.

    Args:
        data: training data, as for ``xb.fit`` (``(x, y)`` in memory for stacked groups).
        validation_data: evaluated after every epoch.
        on_run_start: called with each run of a group before it trains.
        on_epoch_end: called with a run and its epoch's metrics after each of its epochs;
            returning True prunes the run (it ends after this epoch, ``"pruned"``).
        on_run_end: called with each run once its state, message, seconds and rows are set.

    Example:
        >>> execution = Execution((x, y), on_epoch_end=lambda run, m: m["loss"] > 10)
        ...     # doctest: +SKIP
        >>> execution.train(runs, [space.prepare(r.params, r.seed) for r in runs])
        ...     # doctest: +SKIP
    """

    def __init__(self, data: Any, validation_data: Any = None, *,
                 on_run_start: Callable[[Run], None] = lambda run: None,
                 on_epoch_end: Callable[[Run, dict], bool] = lambda run, metrics: False,
                 on_run_end: Callable[[Run], None] = lambda run: None):
        self.data, self.validation_data = data, validation_data
        self.on_run_start, self.on_epoch_end, self.on_run_end = (on_run_start, on_epoch_end,
                                                                 on_run_end)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._trainer: Trainer | None = None

    # ---------------------------------------------------------------- controls
    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called since the last :meth:`clear`."""
        return self._stop.is_set()

    def clear(self) -> None:
        """Forget an earlier :meth:`stop`, so later groups train."""
        self._stop.clear()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less when :meth:`stop` is called; True when stopped.

        Example:
            >>> Execution(None).pause(0.01)
            False
        """
        return self._stop.wait(seconds)

    def stop(self) -> None:
        """Stop the group in progress after its batch; later groups end ``"stopped"``
        before their first batch (until :meth:`clear`)."""
        with self._lock:
            self._stop.set()
            if self._trainer is not None:
                self._trainer.stop()

    # ---------------------------------------------------------------- training
    def train(self, runs: list[Run], prepared: list[tuple[Model, FitConfig]]) -> None:
        """Train ``runs`` together (``prepared``: each run's model and config): one run
        alone, more as one stacked ensemble; the same loop either way."""
        t0 = time.perf_counter()
        trainer: Trainer | None = None

        def report(member: int, metrics: dict) -> None:
            if self.on_epoch_end(runs[member], metrics):
                trainer.stop_member(member)

        error: Exception | None = None
        interrupted = False
        try:
            for run, (model, _) in zip(runs, prepared, strict=True):
                run.model = model
                self.on_run_start(run)
            models, configs = [m for m, _ in prepared], [c for _, c in prepared]
            trainer = (Trainer(models[0], self.data, configs[0], verbose=False,
                               validation_data=self.validation_data)
                       if len(runs) == 1 else
                       StackedTrainer(models, configs, self.data, self.validation_data))
            trainer.emit_warnings = False  # each run's message says what happened
            trainer.on_epoch_end(report)
            with self._lock:
                if self._stop.is_set():  # stopped before it began: it trains nothing
                    trainer = None
                else:
                    self._trainer = trainer
            if trainer is not None:
                trainer.run()  # Ctrl-C here ends the group "interrupted"...
                if StopReason.INTERRUPTED in trainer.stop_reasons:
                    self.stop()  # ... and the experiment with it
        except Exception as exc:  # the group fails, as each of its runs alone would
            error = exc
        except KeyboardInterrupt:  # Ctrl-C outside the loop's batches (building the group)
            interrupted = True
        finally:
            with self._lock:
                self._trainer = None
        if interrupted:
            self.interrupt(runs)
            return
        seconds = time.perf_counter() - t0  # runs of a group share its wall time
        if error is not None:
            ends = [(None, [])] * len(runs)
        elif trainer is None:
            ends = [(StopReason.STOPPED, [])] * len(runs)
        else:
            ends = [(trainer.stop_reasons[m], trainer.member_messages(m))
                    for m in range(len(runs))]
        # the trainer and ``report`` refer to each other: let go of the trainer so the
        # group's models are freed as their runs end, not at the next garbage collection
        trainer = None
        for run, (reason, messages) in zip(runs, ends, strict=True):
            self._end(run, reason, error, messages, seconds)

    def interrupt(self, runs: list[Run]) -> None:
        """Ctrl-C while ``runs`` were asked for, built or grouped: each of them still
        ``"running"`` ends ``"stopped"`` (interrupted; its Optuna trial is failed, a later
        ``run()`` trains it again) and the experiment stops."""
        self.stop()
        for run in runs:
            if run.state == RunState.RUNNING:
                if run.rows is None and run.model is None:  # not started: record it first
                    self.on_run_start(run)
                self._end(run, StopReason.INTERRUPTED, None, [INTERRUPTED], 0.0)

    def fail(self, run: Run, error: Exception) -> None:
        """Record ``run``, which could not be prepared (``error``), as failed."""
        self.on_run_start(run)
        self._end(run, None, error, [], 0.0)

    def _end(self, run: Run, reason: str | None, error: Exception | None,
             messages: list[str], seconds: float) -> None:
        run.state = end_state(reason, error)
        if error is not None:
            run.message = f"{type(error).__name__}: {error}"
        elif messages:
            run.message = messages[-1]
        elif reason == StopReason.NON_FINITE:
            run.message = "non-finite loss"
        run.seconds = seconds
        run.rows = run.history_rows()
        self.on_run_end(run)
