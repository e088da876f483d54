"""Callbacks for every ``fit`` in a ``with`` block: what ``with xb.widgets.live_plot():``
runs on.

While a block is open, each :class:`~exburn_nb.train.loop.Trainer` that starts in the
thread that opened it (``xb.fit`` in the same cell) gets the block's callbacks added to its
own; runs in other threads (a dashboard's) are left alone. The last block to close puts
``Trainer.run`` back as it was.

Example:
    >>> with xb.widgets.live_plot():  # doctest: +SKIP
    ...     xb.fit(model, (x, y), epochs=20)
"""

from __future__ import annotations

import functools
import threading

from ..train.callbacks import Callback
from ..train.loop import Trainer

_lock = threading.Lock()
_local = threading.local()  # .callbacks: this thread's open blocks, outermost first
_open = 0  # blocks open in every thread
_run = Trainer.run  # Trainer.run as it is without blocks


@functools.wraps(_run)
def _run_with_block_callbacks(trainer: Trainer) -> object:
    for callback in getattr(_local, "callbacks", ()):
        if callback not in trainer.callbacks:
            trainer.callbacks.append(callback)
    return _run(trainer)


def enter(callback: Callback) -> None:
    """Add ``callback`` to every run this thread starts until :func:`leave`.

    Example:
        >>> enter(plot); xb.fit(model, (x, y)); leave(plot)  # doctest: +SKIP
    """
    global _open
    with _lock:
        _local.callbacks = [*getattr(_local, "callbacks", []), callback]
        _open += 1
        Trainer.run = _run_with_block_callbacks


def leave(callback: Callback) -> None:
    """Undo :func:`enter` for ``callback`` (runs started after this do not get it)."""
    global _open
    with _lock:
        callbacks = getattr(_local, "callbacks", [])
        if callback in callbacks:
            callbacks.remove(callback)
            _open -= 1
        if _open == 0:
            Trainer.run = _run
