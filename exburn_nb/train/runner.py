"""Run ``fit`` in a background thread: start, stop, pause, resume, and events.

The runner is UI-free: the dashboard is one listener among any others. It runs the very
loop that ``xb.fit`` runs (:class:`~exburn_nb.train.loop.Trainer`), with the runner's
callbacks added. Options are checked in the calling thread, so bad input raises at
``start()``, before any thread exists.

Example:
    >>> runner = Runner(model, (x, y), epochs=20, accuracy=True)  # doctest: +SKIP
    >>> runner.add_listener(lambda event, r: print(event, r.state))  # doctest: +SKIP
    >>> runner.start(); runner.wait()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Callable
from typing import Any

from ..base.checks import check_number
from ..base.vocabulary import Event, RunState, StopReason, end_state
from ..core.config import FitConfig
from ..core.model import Model
from .callbacks import Callback
from .launch import run_ranks
from .loop import Trainer

Listener = Callable[[str, "Runner"], None]


class Runner:
    """Trains ``model`` on ``data`` in a background thread, one run at a time.

    :attr:`state` is a :class:`~exburn_nb.base.vocabulary.RunState` (a ``str``):
    ``"idle"``, ``"running"``, ``"paused"``, then how the run ended: ``"finished"``,
    ``"stopped"``, ``"failed"`` (it diverged; see
    :func:`~exburn_nb.base.vocabulary.end_state`) or ``"error"`` (it raised, see
    :attr:`error`). Events sent to listeners (``fn(event, runner)``, called in the thread
    that caused them, :class:`~exburn_nb.base.vocabulary.Event`): ``"start"``, ``"pause"``,
    ``"resume"``, ``"end"``. Per-batch and
    per-epoch hooks come from :meth:`add_callback`.

    With ``processes=N`` (N > 1) the run is data-parallel (:mod:`~exburn_nb.train.
    launch`): the background thread starts the ranks and waits for them; rank 0's rows
    reach the model's history and the runner's callbacks here as they are recorded
    (:class:`~exburn_nb.train.launch.RankMirror`); stop, pause, resume and the learning
    rate travel to rank 0, which shares them with every rank in the next batch's
    reduction (so every rank acts on the same batch); at the end the model holds rank
    0's weights and history.
    Changes queued with :meth:`at_next_batch` happen in this process only.
    """

    def __init__(self, model: Model, data: Any, config: FitConfig | None = None,
                 **fit_options: Any):
        if not isinstance(model, Model):
            raise ValueError(f"model must be a compiled exburn_nb Model; got {type(model).__name__}")
        fit_options.setdefault("verbose", False)
        if config is not None:
            fit_options["config"] = config
        self.model, self.data, self.fit_options = model, data, fit_options
        self.state = RunState.IDLE
        self.error: BaseException | None = None
        self.error_traceback: str | None = None
        self._listeners: list[Listener] = []
        self._callbacks: list[Callback] = []
        self._trainer: Trainer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # every state change happens under it
        self._ranks: Any = None  # a data-parallel run's pipe to rank 0, once it runs
        self._commands: list[tuple] = []  # sent to rank 0 before that pipe existed

    # ---------------------------------------------------------------- listeners
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(event, runner)`` on each state event."""
        self._listeners.append(fn)

    def add_callback(self, callback: Callback) -> None:
        """Add a training hook (e.g. a live plot) to every run."""
        self._callbacks.append(callback)

    def _emit(self, event: str) -> None:
        for fn in list(self._listeners):
            fn(event, self)

    # ---------------------------------------------------------------- controls
    @property
    def running(self) -> bool:
        """Whether a run is in progress (paused counts as running)."""
        return self.state in (RunState.RUNNING, RunState.PAUSED)

    @property
    def trainer(self) -> Trainer | None:
        """The current (or last) run's trainer."""
        return self._trainer

    def start(self, **overrides: Any) -> bool:
        """Start a run with the fit options, ``overrides`` applied; False if one is running.

        All or nothing: bad options or data raise ``ValueError`` before any thread
        starts, and a listener that raises on ``"start"`` leaves the runner as it was.
        """
        with self._lock:
            if self.running:
                return False
            options = {**self.fit_options, **overrides}
            options["callbacks"] = list(options.get("callbacks", ())) + self._callbacks
            trainer = Trainer(self.model, self.data, **options)
            trainer.emit_warnings = False  # kept in trainer.messages instead
            previous = (self._trainer, self.state, self.error, self.error_traceback)
            self._trainer, self.state = trainer, RunState.RUNNING
            self.error = self.error_traceback = None
            try:
                self._emit(Event.START)  # before the thread: a run that fails at once ends after it
            except BaseException:
                self._trainer, self.state, self.error, self.error_traceback = previous
                raise
            parallel = trainer.config.processes > 1
            if parallel:  # the ranks train without this runner's callbacks: they run here
                options["callbacks"] = options["callbacks"][:-len(self._callbacks) or None]
                self._ranks, self._commands = None, []
            train = (lambda: self._train_ranks(options)) if parallel else trainer.run
            self._thread = threading.Thread(target=self._run, args=(train,),
                                            name="exburn-fit", daemon=True)
            self._thread.start()
        return True

    def _train_ranks(self, options: dict) -> None:
        """A data-parallel run: its ranks train; rank 0's end comes back to the trainer."""
        trainer = self._trainer
        outcome = run_ranks(Trainer, self.model, self.data, options,
                            on_started=self._connected, callbacks=self._callbacks)
        reason = outcome["stop_reason"]
        for m in trainer.members:
            m.stop_reason = None if reason is None else StopReason(reason)
        trainer.messages.extend(outcome["messages"])

    def _connected(self, pipe: Any) -> None:
        with self._lock:
            self._ranks = pipe
            for command in self._commands:
                pipe.send(command)
            self._commands = []

    def _to_ranks(self, *command: Any) -> bool:
        """Send ``command`` to rank 0 of a data-parallel run (held until the ranks run);
        False when this run is not one."""
        with self._lock:
            if self._trainer is None or self._trainer.config.processes == 1:
                return False
            if self._ranks is None:
                self._commands.append(command)
            else:
                with contextlib.suppress(OSError):
                    self._ranks.send(command)
            return True

    def _run(self, train: Callable[[], Any]) -> None:
        trainer = self._trainer
        error = tb = None
        try:
            train()
        except BaseException as exc:  # shown by listeners, never lost in the thread
            error, tb = exc, traceback.format_exc()
        with self._lock:
            self._ranks = None
            self.error, self.error_traceback = error, tb
            self.state = (RunState.ERROR if error is not None
                          else end_state(trainer.stop_reason))
        self._emit(Event.END)

    def stop(self) -> None:
        """Stop after the batch in progress; the model and history stay consistent."""
        with self._lock:
            if self._trainer is not None and self.running and not self._to_ranks("stop"):
                self._trainer.request_stop()

    def pause(self) -> None:
        """Hold the run after the batch in progress (nothing happens once it has ended)."""
        with self._lock:
            if self._trainer is None or self.state != RunState.RUNNING:
                return
            if not self._to_ranks("pause"):
                self._trainer.pause()
            self.state = RunState.PAUSED
        self._emit(Event.PAUSE)

    def resume(self) -> None:
        """Continue a paused run."""
        with self._lock:
            if self._trainer is None or self.state != RunState.PAUSED:
                return
            self.state = RunState.RUNNING
            if not self._to_ranks("resume"):
                self._trainer.resume()
        self._emit(Event.RESUME)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True when no run is in progress afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    # ---------------------------------------------------------------- live changes
    def at_next_batch(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at the next batch boundary in the training thread, or now when idle."""
        trainer = self._trainer
        if trainer is None or not self.running or not trainer.call_at_next_batch(fn):
            fn()

    def set_learning_rate(self, lr: float) -> None:
        """Change the learning rate: at the next batch of a run (recorded in the history's
        ``lr`` column), or right away when idle."""
        lr = check_number("learning_rate", lr, positive=True)
        trainer = self._trainer
        if self.running and self._to_ranks("lr", lr):
            return
        if trainer is None or not self.running or not trainer.set_learning_rate(lr):
            self.model.set_learning_rate(lr)

