"""What callers, callbacks and other threads can ask of a running loop.

:class:`Steering` is the part of :class:`~exburn_nb.train.loop.Trainer` that is not the
loop itself: stop the run (or one member of it), pause and resume, change the learning
rate, queue work for the next batch boundary, log a value into the history, ask for a
checkpoint, and read how each member ended and what the run warned about. Every change
lands at a batch boundary, in the training thread (:class:`~exburn_nb.train.control.
RunControl`), so the model and its history always agree.

Example:
    >>> trainer = xb.Trainer(model, (x, y), epochs=100, verbose=False)  # doctest: +SKIP
    >>> threading.Thread(target=trainer.run).start()  # doctest: +SKIP
    >>> trainer.set_learning_rate(1e-4); trainer.pause(); trainer.resume()  # doctest: +SKIP
    >>> trainer.stop(); trainer.stop_reason  # doctest: +SKIP
    <StopReason.STOPPED: 'stopped'>
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from numbers import Real
from pathlib import Path

from ..base.checks import check_number
from ..base.vocabulary import RESERVED_NAMES, StopReason
from ..core.optim import Schedule
from .control import RunControl
from .engine import StepEngine
from .members import Member


class Steering:
    """A run's members and their controls (the base of
    :class:`~exburn_nb.train.loop.Trainer`).

    Args:
        members: one :class:`~exburn_nb.train.members.Member` per model the run trains.
        engine: the step engine that trains them.
    """

    def __init__(self, members: list[Member], engine: StepEngine):
        self.members, self.engine = members, engine
        self.model = members[0].model
        self.control = RunControl()
        self.messages: list[str] = []  # what the run warned about, for front ends
        self._member_messages: list[list[str]] = [[] for _ in members]
        self.emit_warnings = True  # False in background threads, which must not print
        self._epoch_listeners: list[Callable[[int, dict], None]] = []
        self._batch_logged: dict[str, float] = {}  # from on_batch_begin, for this batch's row
        self._epoch_logged: dict[str, float] = {}  # from epoch hooks, for this epoch's row
        self._phase = "epoch"
        self._checkpoints: list[tuple[Path, Callable[[], None] | None]] = []
        self._pruning = False  # stop_member was called: apply it at the next batch

    # ---------------------------------------------------------------- the run's members
    @property
    def stop_reason(self) -> StopReason | None:
        """Why the run ended early (the first member's, for a run of several)."""
        return self.members[0].stop_reason

    @property
    def stop_reasons(self) -> list[StopReason | None]:
        """Each member's stop reason, None for a member that ran all its epochs."""
        return [m.stop_reason for m in self.members]

    @property
    def run_id(self) -> int:
        """The first member's run id (the ``run`` column of its history)."""
        return self.members[0].run_id

    @property
    def step(self) -> int:
        """The first member's optimizer steps so far (counting on across runs)."""
        return self.members[0].step

    @property
    def schedule(self) -> Schedule | None:
        """The first member's learning-rate schedule (None: constant, or replaced)."""
        return self.members[0].schedule

    def on_epoch_end(self, fn: Callable[[int, dict], None]) -> None:
        """Call ``fn(member, metrics)`` after each member's epoch row is recorded."""
        self._epoch_listeners.append(fn)

    # ---------------------------------------------------------------- controls
    def stop(self) -> None:
        """Stop after the batch in progress (model and history stay consistent); nothing
        happens once the run has ended."""
        with self.control.lock:
            if self.control.closed:
                return
            for m in self.members:
                if m.active and m.stop_reason is None:
                    m.stop_reason = StopReason.STOPPED
        self.control.request_stop()

    request_stop = stop  # the runner's name for it

    def stop_member(self, index: int) -> None:
        """End member ``index`` after the batch in progress (e.g. a pruned trial); the
        others go on. Its stop reason is ``"pruned"``."""
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < len(self.members):
            raise ValueError(f"index must be a member index in [0, {len(self.members)}); "
                             f"got {index!r}")
        with self.control.lock:
            member = self.members[index]
            if self.control.closed or not member.active or member.stop_reason is not None:
                return
            member.stop_reason = StopReason.PRUNED
            self._pruning = True
            if all(m.stop_reason is not None or not m.active for m in self.members):
                self.control.request_stop()

    def pause(self) -> None:
        """Hold the loop after the batch in progress until :meth:`resume`."""
        self.control.pause()

    def resume(self) -> None:
        """Continue a paused run."""
        self.control.resume()

    @property
    def paused(self) -> bool:
        """Whether a pause has been requested and not resumed."""
        return self.control.paused

    def call_at_next_batch(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` in the training thread at the next batch boundary (e.g. a freeze).

        Returns False, without queueing, once the run has ended: then call ``fn`` yourself.
        """
        return self.control.call_at_next_batch(fn)

    def set_learning_rate(self, lr: float) -> bool:
        """Use ``lr`` from the next batch on (replaces any schedule for the rest of the run).

        Returns False once the run has ended (nothing changed).
        """
        lr = check_number("learning_rate", lr, positive=True)
        return self.call_at_next_batch(lambda: self._set_lr(lr))

    def _set_lr(self, lr: float) -> None:
        for i, m in enumerate(self.members):
            self.engine.set_learning_rate(i, lr)
            m.schedule = None

    def log(self, name: str, value: float) -> None:
        """Record ``value`` under ``name``: in this batch's row from a batch hook, in this
        epoch's row from an epoch hook (a new history column)."""
        if not isinstance(name, str) or name in RESERVED_NAMES:
            raise ValueError(f"name must be a new column name; got {name!r}")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"the value logged as {name!r} must be a finite number; "
                             f"got {value!r}")
        value = float(value)
        recorder = self.model.recorder
        if self._phase == "batch_end":
            recorder.update_last_batch({name: value})
        elif self._phase == "epoch_end":
            recorder.update_last_epoch({name: value})
        elif self._phase == "batch_begin":
            self._batch_logged[name] = value
        else:
            self._epoch_logged[name] = value

    def save_checkpoint(self, path: str | Path, then: Callable[[], None] | None = None) -> None:
        """Write a resumable checkpoint to ``path`` at the end of this epoch, after every
        callback (``then`` runs after it is written)."""
        self._checkpoints.append((Path(path), then))

    def member_messages(self, member: int) -> list[str]:
        """What the run warned about member ``member``, oldest first."""
        return list(self._member_messages[member])

    def _warn(self, message: str, member: int = 0) -> None:
        self._member_messages[member].append(message)
        self.messages.append(message if len(self.members) == 1 else f"member {member}: "
                             f"{message}")
        if self.emit_warnings:
            warnings.warn(message, stacklevel=4)

    def _end_member(self, index: int, reason: StopReason, message: str) -> None:
        """Member ``index`` takes no more steps: its weights are the last it stepped to."""
        member = self.members[index]
        with self.control.lock:
            ended = member.active
            member.active = False
            if ended and member.stop_reason != StopReason.INTERRUPTED:
                member.stop_reason = reason
        if ended:
            self._warn(message, index)
        if not any(m.active for m in self.members):
            self.control.request_stop()
