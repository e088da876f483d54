"""The one rate limit every widget uses, and the one drawing thread.

A front end that redraws on every batch floods the browser: it falls seconds behind and
Stop answers late. Every live view asks a :class:`Throttle` whether it is time to draw
(a few times a second at most) and draws what has accumulated since, decimated to a fixed
budget, so its cost stays flat however long the run.

Where a redraw costs more than the training thread should pay (the playground's heatmap,
the run comparison's figures), a :class:`DrawingThread` sends it: the training thread only
asks, requests that arrive meanwhile are merged, and the thread draws at most
``per_second`` times a second and, given ``settle``, only once the front end has drawn the
frame before (see :meth:`~exburn_nb.widgets.frontend.figure.FigureWidget.wait_frame`).

Example:
    >>> throttle = Throttle(per_second=5)
    >>> throttle.ready(), throttle.ready()  # a second draw within 0.2 s waits
    (True, False)
    >>> throttle.ready(force=True)  # the end of a run always draws
    True
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Throttle:
    """Says yes at most ``per_second`` times a second.

    Args:
        per_second: the highest rate of yeses (> 0).
        ready_now: whether the first :meth:`ready` says yes at once (False: only after
            one interval).
        argname: the name the caller gave ``per_second``, for the error message.

    Example:
        >>> t = Throttle(2, ready_now=False)
        >>> t.ready()
        False
    """

    def __init__(self, per_second: float, ready_now: bool = True,
                 argname: str = "per_second"):
        if isinstance(per_second, bool) or not isinstance(per_second, (int, float)) \
                or not per_second > 0:
            raise ValueError(f"{argname} must be a number > 0; got {per_second!r}")
        self.interval = 1 / per_second
        self.restart(ready_now)

    def restart(self, ready_now: bool = True) -> None:
        """Start counting again (at a run's beginning, after a reset)."""
        self._last = -math.inf if ready_now else time.monotonic()

    def ready(self, force: bool = False) -> bool:
        """True (and the interval starts again) when one interval has passed since the last
        yes, or with ``force``."""
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            return True
        return False


def newest(_pending: Any, new: Any) -> Any:
    """The default way to merge two requests: the newest wins."""
    return new


class DrawingThread:
    """Runs ``draw(request)`` in a daemon thread of its own whenever asked, at most
    ``per_second`` times a second. The thread that asks (training, an event) never waits
    for a draw; requests that arrive while the thread draws or waits are merged, so it never
    falls behind.

    Args:
        draw: called in the drawing thread with the merged request. An exception (a widget
            closed meanwhile) is logged and drawing goes on.
        per_second: the highest drawing rate.
        name: the thread's name.
        merge: ``(pending, new) -> request`` for two requests not drawn yet (default: the
            newest wins).
        idle_s: with ``on_idle``, call it when nothing was asked for this long; what it
            returns (unless None) is drawn, as a request would be.
        on_idle: see ``idle_s`` (e.g. polling storage that other processes write).
        settle: called in the drawing thread after each draw; the next draw waits until it
            returns, e.g. until the page says it has drawn the frame (with a timeout), so
            frames go out at the pace the page can draw and Stop is not queued behind them.

    Example:
        >>> drawn = []
        >>> drawer = DrawingThread(drawn.append, per_second=100, name="doc-draw")
        >>> drawer.request(1); drawer.wait_drawn(5)
        True
        >>> drawer.close(); drawn
        [1]
    """

    def __init__(self, draw: Callable[[Any], None], per_second: float, name: str,
                 merge: Callable[[Any, Any], Any] = newest, idle_s: float | None = None,
                 on_idle: Callable[[], Any] | None = None,
                 settle: Callable[[], Any] | None = None):
        self.interval = Throttle(per_second).interval  # validated there
        self._draw, self._merge, self._on_idle, self._settle = draw, merge, on_idle, settle
        self._idle_s = idle_s if on_idle is not None else None
        self._lock = threading.Lock()
        self._wake, self._closed, self._drawn = (threading.Event(), threading.Event(),
                                                 threading.Event())
        self._drawn.set()
        self._pending: Any = None
        self._asked = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def request(self, value: Any = None) -> None:
        """Ask for a draw of ``value`` (merged with any request not drawn yet)."""
        with self._lock:
            self._pending = self._merge(self._pending, value) if self._asked else value
            self._asked = True
            self._drawn.clear()
            self._wake.set()

    @property
    def idle(self) -> bool:
        """Whether every request so far is drawn (and settled): a new one would go out at
        once, so a caller can skip computing requests that would only be merged away."""
        return self._drawn.is_set()

    def wait_drawn(self, timeout: float | None = None) -> bool:
        """Wait until every request so far is drawn; True if it is."""
        return self._drawn.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread (requests not drawn yet are dropped) and wait for it to end."""
        self._closed.set()
        self._wake.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def _loop(self) -> None:
        while True:
            asked = self._wake.wait(self._idle_s)
            if self._closed.is_set():
                return
            with self._lock:
                request, self._pending = self._pending, None
                asked, self._asked = self._asked, False
                self._wake.clear()
            if not asked:
                request = self._on_idle() if self._on_idle is not None else None
                if request is None:
                    continue
            started = time.monotonic()
            try:
                self._draw(request)
                if self._settle is not None:
                    self._settle()
            except Exception:  # noqa: BLE001 - a widget closed meanwhile: draw again next time
                log.debug("a draw failed", exc_info=True)
            with self._lock:
                if not self._asked:
                    self._drawn.set()
            self._closed.wait(max(0.0, self.interval - (time.monotonic() - started)))
