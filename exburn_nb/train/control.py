"""Steering a running loop from other threads, callbacks and Ctrl-C, safely.

:class:`RunControl` holds the flags the loop checks at every batch boundary (stop,
pause), the work other threads queue for the next boundary (a learning-rate change, a
freeze), and takes Ctrl-C in the main thread at batch boundaries, so the model and its
history always agree.

Example:
    >>> control = RunControl()
    >>> control.call_at_next_batch(lambda: print("at the boundary"))
    True
    >>> control.run_pending()
    at the boundary
    >>> control.request_stop(); control.stopping
    True
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any


class RunControl:
    """The thread-safe controls of one run (see the module docstring).

    ``lock`` guards the decision that the run has ended (:meth:`close`): after it, work
    can no longer be queued and a stop changes nothing. It is reentrant, because Ctrl-C's
    handler runs in the thread that may hold it.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closed = False
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._pending: deque[Callable[[], None]] = deque()
        self._in_batch: bool | None = None  # None: Ctrl-C is not deferred

    # ---------------------------------------------------------------- flags
    @property
    def stopping(self) -> bool:
        """Whether the run must end after the batch in progress."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """End the run after the batch in progress (a paused run wakes up to end)."""
        self._stop.set()
        self._running.set()

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

    def wait_while_paused(self) -> None:
        """Block the loop while paused (returns at once otherwise)."""
        if not self._running.is_set():
            self._running.wait()

    # ---------------------------------------------------------------- queued work
    def call_at_next_batch(self, fn: Callable[[], None]) -> bool:
        """Queue ``fn`` for the next batch boundary; False once the run has ended."""
        with self.lock:
            if self.closed:
                return False
            self._pending.append(fn)
            return True

    def run_pending(self) -> None:
        """Run the queued work, oldest first (the loop calls this at a boundary)."""
        while self._pending:
            self._pending.popleft()()

    def close(self) -> list[Callable[[], None]]:
        """Mark the run ended; the work still queued (to be run once more, by the loop)."""
        with self.lock:
            self.closed = True
            left, self._pending = list(self._pending), deque()
            return left

    # ---------------------------------------------------------------- Ctrl-C
    @contextlib.contextmanager
    def deferred_interrupts(self, on_interrupt: Callable[[], None]) -> Iterator[None]:
        """In the main thread, take Ctrl-C at batch boundaries: one arriving inside a
        batch (:meth:`batch`) calls ``on_interrupt`` and ends the run after that batch;
        a second one, or one outside a batch, raises ``KeyboardInterrupt`` at once."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        self._in_batch = False
        deferred = []

        def handler(signum: int, frame: Any) -> None:
            if self._in_batch and not deferred:
                deferred.append(True)
                on_interrupt()
                self.request_stop()
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._in_batch = None

    def batch(self) -> _BatchSection:
        """A context marking one batch's step-and-record section (see
        :meth:`deferred_interrupts`)."""
        return _BatchSection(self)


class _BatchSection:
    """A plain object, not a generator, because it is entered for every batch."""

    __slots__ = ("control",)

    def __init__(self, control: RunControl):
        self.control = control

    def __enter__(self) -> None:
        if self.control._in_batch is not None:
            self.control._in_batch = True

    def __exit__(self, *exc: object) -> None:
        if self.control._in_batch is not None:
            self.control._in_batch = False
