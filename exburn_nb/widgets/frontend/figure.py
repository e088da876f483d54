"""The live figure: plotly's ``FigureWidget``, without 5 MB of JavaScript in its state.

plotly's ``FigureWidget`` carries its whole front end (about 5 MB of JavaScript) in a synced
trait, so every figure added about 5 MB to a saved notebook and to each view's first
message. :class:`FigureWidget` keeps plotly's Python API and front end but stores a loader
of a few kilobytes instead: the first figure a page draws asks the kernel for plotly's
module (one binary message, handled on a kernel subshell even while a cell blocks, see
:mod:`~exburn_nb.widgets.frontend.comms`), and every later figure on the page reuses it. Where no
kernel answers (an HTML export with widget state) the loader draws the figure's saved state
once with plotly.js from its CDN; JupyterLab, Notebook and Voilà pages fetch nothing from
the internet and wait for the kernel.

Example:
    >>> fig = FigureWidget(layout={"height": 300})
    >>> len(fig._esm) < 10_000  # plotly's own: about 5,000,000
    True
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs_version
from traitlets import Int, Unicode

from .borrowed import (
    FIGURE_DATA_TRAIT,
    FIGURE_LAYOUT_TRAIT,
    copy_figure_state,
    dispatch_click,
    plotly_widget_module,
    set_traits_silently,
)
from .comms import serve_on_subshell

REQUEST, REPLY = "xb-plotly-bundle?", "xb-plotly-bundle"
SYNC = "xb-plotly-sync?"  # a front end that loaded plotly late asks for the current figure
FRAME, FRAME_DRAWN = "xb-frame?", "xb-frame"  # "say when you have drawn this" / "drawn"
CLICK = "xb-click"  # a click on a point, sent as a message of its own (see figure.js)
FRAME_TIMEOUT_S = 2.0  # the longest wait for a page to say it drew a frame (a closed view)


@functools.cache
def plotly_module() -> bytes:
    """plotly's widget front end (an ES module), encoded once per process."""
    return plotly_widget_module().encode()


class FigureWidget(go.FigureWidget):
    """plotly's ``FigureWidget`` whose front end is sent by the kernel when a page first
    draws one, not stored in every figure's widget state.

    Example:
        >>> fig = FigureWidget()
        >>> fig.add_scatter(y=[1, 3, 2]).data[0].y
        (1, 3, 2)
    """

    _esm = Path(__file__).with_name("figure.js")
    _xb_plotly = Unicode(plotly.__version__).tag(sync=True)  # the page's cache key
    _xb_plotlyjs = Unicode(get_plotlyjs_version()).tag(sync=True)  # for the CDN fallback
    _xb_synced = Int(0).tag(sync=True)  # counts save_state(send=True): "the state is current"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # held while a change goes out and while save_state copies and sends the figure
        # (see save_state); created first: plotly's __init__ already sends
        self._state_lock = threading.RLock()
        super().__init__(*args, **kwargs)
        self._frames = threading.Condition()
        self._frame_sent = self._frame_drawn = 0
        self._frame_marked_at = 0.0
        self._frames_acked = False  # a view has said it acknowledges drawn frames
        # plotly.js resizes a responsive figure (one without a fixed width) to its container;
        # figure.js asks it to whenever that container's size changes
        self._config = {"responsive": True, **self._config}
        self.on_msg(_answer)
        serve_on_subshell(self)

    def save_state(self, send: bool) -> bool:
        """Make the figure's current data and layout its synced state, which a new view
        draws (plotly itself sends only changes); ``send`` also sends them to the front end.

        Set without change events: a view that is open got the same data as changes.
        Returns False, keeping the state saved before, when another thread kept changing
        the figure while it was copied (the next save brings it up to date).

        A page applies the changes it receives after this state on top of it, so the copy
        and its sending hold the lock every change holds while it goes out
        (:meth:`send_state`), and adding, removing or reordering traces holds it from the
        change to its message: a change that went out before the copy is in it, and one
        made after is sent after it. A change of values made just before the copy and sent
        just after it arrives twice, which sets the same values again; a trace added
        or removed can never arrive twice or not at all.

        Example:
            >>> FigureWidget(layout={"height": 300}).save_state(send=False)
            True
        """
        with self._state_lock:
            state = copy_figure_state(self)
            if state is None:
                return False
            set_traits_silently(self, **{FIGURE_DATA_TRAIT: state[0],
                                         FIGURE_LAYOUT_TRAIT: state[1]})
            if send:
                set_traits_silently(self, _xb_synced=self._xb_synced + 1)
                self.send_state([FIGURE_DATA_TRAIT, FIGURE_LAYOUT_TRAIT, "_xb_synced"])
        return True

    def send_state(self, key: Any = None) -> None:
        """ipywidgets' ``send_state`` (every change plotly makes goes out through it),
        holding the lock :meth:`save_state` holds."""
        with self._state_lock:
            super().send_state(key)

    def add_traces(self, *args: Any, **kwargs: Any) -> Any:
        """plotly's ``add_traces`` (``add_trace`` and ``add_scatter`` and the like call
        it), holding the lock :meth:`save_state` holds from the change to its message."""
        with self._state_lock:
            return super().add_traces(*args, **kwargs)

    def _set_data(self, value: Any) -> None:
        with self._state_lock:  # removing and reordering traces: as add_traces
            go.FigureWidget.data.fset(self, value)

    data = property(go.FigureWidget.data.fget, _set_data, doc=go.FigureWidget.data.__doc__)

    def mark_frame(self) -> None:
        """After a change, ask the page to say when it has drawn it (see :attr:`frame_drawn`);
        nothing where no view has ever acknowledged a frame."""
        with self._frames:
            if not self._frames_acked:
                return
            self._frame_sent += 1
            self._frame_marked_at = time.monotonic()
            mark = self._frame_sent
        self.send({"type": FRAME, "id": mark})

    @property
    def frame_drawn(self) -> bool:
        """Whether the page has drawn the last marked frame (or gave up on it: no answer for
        :data:`FRAME_TIMEOUT_S`): a sender that must not wait skips a frame until then.

        Example:
            >>> FigureWidget().frame_drawn  # no page acknowledges frames: always
            True
        """
        with self._frames:
            return (self._frame_drawn >= self._frame_sent
                    or time.monotonic() - self._frame_marked_at > FRAME_TIMEOUT_S)

    def wait_frame(self, timeout: float = FRAME_TIMEOUT_S) -> bool:
        """After a change, wait (at most ``timeout`` s) until a page has drawn it: a live
        sender calls this between frames, so it sends at the pace the page draws and the
        page never queues frames (nor a Stop behind them). Returns at once, True, where no
        view has ever acknowledged a frame (no page, an old page, plain Python).

        Example:
            >>> FigureWidget().wait_frame()
            True
        """
        self.mark_frame()
        with self._frames:
            mark = self._frame_sent
            return self._frames.wait_for(lambda: self._frame_drawn >= mark, timeout)

    def _on_frame_drawn(self, mark: Any) -> None:
        if isinstance(mark, int) and not isinstance(mark, bool):
            with self._frames:
                self._frames_acked = True
                self._frame_drawn = max(self._frame_drawn, mark)
                self._frames.notify_all()


def _answer(widget: FigureWidget, content: Any, buffers: list) -> None:
    kind = content.get("type") if isinstance(content, dict) else None
    if kind == FRAME_DRAWN:
        widget._on_frame_drawn(content.get("id"))
    elif kind == REQUEST:
        widget.send({"type": REPLY}, buffers=[plotly_module()])
    elif kind == SYNC:
        widget.save_state(send=True)
    elif kind == CLICK:
        dispatch_click(widget, content.get("callback"))
