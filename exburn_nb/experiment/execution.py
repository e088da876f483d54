"""The one execution path of an experiment: train a group of prepared runs, end each one.

A group of one trains through :class:`~exburn_nb.train.runner.Runner` (the loop of
``xb.fit`` in a thread), a larger group as one stacked ensemble through
:class:`~exburn_nb.sweep.StackedTrainer`. Either way every run reports its epochs (so an
Optuna pruner can end it), honours :meth:`Execution.stop` and Ctrl-C, and ends in the
state :func:`~exburn_nb.base.vocabulary.end_state` gives for how it stopped.

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

from ..base.vocabulary import StopReason, end_state
from ..core.config import FitConfig
from ..core.model import Model
from ..sweep import StackedTrainer
from ..train.callbacks import Callback
from ..train.runner import Runner
from .runs import Run

EpochHook = Callable[[int, dict], None]  # (member index, the epoch's metrics)


class _EpochReport(Callback):
    """A runner's run reports its epochs as member 0 of a group."""

    def __init__(self, report: EpochHook):
        self.report = report

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.report(0, metrics)


class _Alone:
    """A group of one, trained through a :class:`Runner` (its own thread)."""

    def __init__(self, model: Model, config: FitConfig, data: Any, validation_data: Any,
                 report: EpochHook):
        self.runner = Runner(model, data, config, validation_data=validation_data,
                             callbacks=[_EpochReport(report)])

    def start(self) -> None:
        self.runner.start()

    def wait(self) -> None:
        """Until the run ends; raises what the run raised."""
        self.runner.wait()
        if self.runner.error is not None:
            raise self.runner.error

    def stop(self) -> None:
        self.runner.stop()

    def stop_member(self, member: int) -> None:
        self.runner.stop()

    def stop_reason(self, member: int) -> str | None:
        return self.runner.trainer.stop_reason

    def messages(self, member: int) -> list[str]:
        return list(self.runner.trainer.messages)


class _Stacked:
    """A stacked group, trained in this thread by a :class:`StackedTrainer`."""

    def __init__(self, models: list[Model], configs: list[FitConfig], data: Any,
                 validation_data: Any, report: EpochHook):
        self.trainer = StackedTrainer(models, configs, data, validation_data)
        self.trainer.on_epoch_end(report)
        self.pending = True

    def start(self) -> None:
        """Nothing yet: :meth:`wait` trains (a stop before then still counts)."""

    def wait(self) -> None:
        """Train the group (once); raises what training raised."""
        if self.pending:
            self.pending = False
            self.trainer.run()

    def stop(self) -> None:
        self.trainer.stop()

    def stop_member(self, member: int) -> None:
        self.trainer.stop_member(member)

    def stop_reason(self, member: int) -> str | None:
        return self.trainer.stop_reasons[member]

    def messages(self, member: int) -> list[str]:
        prefix = f"member {member}: "
        return [text[len(prefix):] for text in self.trainer.messages if text.startswith(prefix)]


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
        self._engine: _Alone | _Stacked | None = None

    # ---------------------------------------------------------------- controls
    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called since the last :meth:`clear`."""
        return self._stop.is_set()

    def clear(self) -> None:
        """Forget an earlier :meth:`stop`, so later groups train."""
        self._stop.clear()

    def stop(self) -> None:
        """Stop the group in progress after its batch; later groups end ``"stopped"``
        before their first batch (until :meth:`clear`)."""
        with self._lock:
            self._stop.set()
            if self._engine is not None:
                self._engine.stop()

    # ---------------------------------------------------------------- training
    def train(self, runs: list[Run], prepared: list[tuple[Model, FitConfig]]) -> None:
        """Train ``runs`` together (``prepared``: each run's model and config): one run
        through a :class:`Runner`, more as one stacked ensemble."""
        t0 = time.perf_counter()
        for run, (model, _) in zip(runs, prepared, strict=True):
            run.model = model
            self.on_run_start(run)
        pruned: set[int] = set()
        engine: _Alone | _Stacked | None = None

        def report(member: int, metrics: dict) -> None:
            if self.on_epoch_end(runs[member], metrics):
                pruned.add(member)
                engine.stop_member(member)

        error: Exception | None = None
        interrupted = False
        try:
            models, configs = [m for m, _ in prepared], [c for _, c in prepared]
            engine = (_Alone(models[0], configs[0], self.data, self.validation_data, report)
                      if len(runs) == 1 else
                      _Stacked(models, configs, self.data, self.validation_data, report))
            with self._lock:
                if self._stop.is_set():  # stopped before it began: it trains nothing
                    engine = None
                else:
                    self._engine = engine
                    engine.start()
            if engine is not None:
                try:
                    engine.wait()
                except KeyboardInterrupt:  # Ctrl-C in a blocking run(): stop, keep results
                    interrupted = True
                    self.stop()
                    engine.wait()
        except Exception as exc:  # the group fails, as each of its runs alone would
            error = exc
        finally:
            with self._lock:
                self._engine = None
        seconds = time.perf_counter() - t0  # runs of a group share its wall time
        for m, run in enumerate(runs):
            if m in pruned:
                reason = StopReason.PRUNED
            elif error is not None:
                reason = None
            elif engine is None:
                reason = StopReason.STOPPED
            else:
                reason = engine.stop_reason(m) or (StopReason.INTERRUPTED if interrupted
                                                   else None)
            messages = engine.messages(m) if engine is not None and error is None else []
            self._end(run, reason, error, messages, seconds)

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
