"""``watch(run_dir)``: a run trained elsewhere (a script under ``torchrun`` on a GPU
server, another kernel), shown live from its run directory.

The run writes its rows with ``fit(..., run_dir=...)``; the widget tails them on a
drawing thread (:class:`~exburn_nb.widgets.frontend.throttle.DrawingThread`, polling
every ``poll_s`` seconds, drawing a few times a second at most) into the same live figure
as the dashboard, with the run's progress, its status, and a Stop button that writes the
run's stop file. It shows a run that has ended, one in progress, and one that has not
started yet (waiting); polling ends when the run ends or the widget is closed.

Example:
    >>> xb.widgets.watch("runs/mlp")  # the cell's last expression shows it  # doctest: +SKIP
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..base.checks import check_int, check_number
from ..base.vocabulary import RunState
from ..core.runs import RunFollower
from ..io import rundir
from .controls import error_html
from .frontend.comms import serve_on_subshell
from .frontend.throttle import DrawingThread
from .plot import MAX_UPDATES_PER_S, LivePlot, make_figure

POLL_S = 0.5  # how often the run directory is read while nothing else is drawn


class RunWatch(W.VBox):
    """A run directory shown live: status, progress, Stop and the training curves.

    Args:
        run_dir: the run directory (``fit(..., run_dir=...)``); it need not exist yet.
        poll_s: read the directory this often while the run goes on.
        height: the figure's height in pixels.

    Example:
        >>> view = RunWatch("runs/mlp")  # doctest: +SKIP
        >>> view.stop()  # as the Stop button: the run stops at the end of its batch  # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path, poll_s: float = POLL_S, height: int = 380):
        self._drawer: DrawingThread | None = None  # close() may run before it exists
        check_number("poll_s", poll_s, positive=True)
        check_int("height", height, 100)
        self.follower = RunFollower(run_dir)
        self.run_dir = self.follower.run_dir
        self.plot = LivePlot(make_figure(height), display=False)
        self.plot.follow(self.follower.history)
        self._shown: tuple | None = None  # (uid, restarts): the history the plot was set for
        self.status = W.HTML("")
        self.status.add_class("xb-status")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    layout=W.Layout(width="auto"))
        self.stop_button.add_class("xb-stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.progress = W.IntProgress(value=0, min=0, max=1,
                                      layout=W.Layout(width="40%", min_width="160px"))
        self.progress.add_class("xb-progress")
        self.progress_label = W.Label("")
        self.progress_label.add_class("xb-progress-label")
        self.error_box = W.HTML("")
        self.error: Exception | None = None  # what made polling end early (a damaged file)
        self.stopping = False
        super().__init__([W.HBox([self.stop_button, self.status]),
                          W.HBox([self.progress, self.progress_label]), self.plot.view,
                          self.error_box], layout=W.Layout(width="100%"))
        self.add_class("xb-watch")
        serve_on_subshell(self.stop_button)
        self.follower.poll()
        self._show(force=True)
        if not self.follower.ended:
            self._drawer = DrawingThread(self._draw, MAX_UPDATES_PER_S, name="exburn-watch",
                                         idle_s=poll_s, on_idle=self._poll)

    def _ipython_display_(self) -> None:
        """The widget, then an export-only copy of its figure (brought up to date when the
        run ends) for exports, which cannot draw widgets."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        self.plot.display_snapshot()

    # ---------------------------------------------------------------- Python twins
    def stop(self) -> None:
        """Ask the run to stop at the end of its batch in progress (its stop file)."""
        if self.follower.ended:
            return
        rundir.request_stop(self.run_dir)
        self.stopping = True
        self.status.value = "stop asked: the run stops at the end of its batch in progress…"

    @property
    def polling(self) -> bool:
        """Whether the directory is still read (the run has not ended, the widget is open)."""
        return self._drawer is not None and not self._drawer.closed

    def wait(self, timeout: float | None = None) -> bool:
        """Block until polling has ended (the run ended and is drawn); True if it has."""
        if self._drawer is None:
            return True
        self._drawer.thread.join(timeout)
        return not self._drawer.thread.is_alive()

    def close(self) -> None:
        """Stop polling, then close the widgets."""
        if self._drawer is not None:
            self._drawer.close()
        super().close()

    # ---------------------------------------------------------------- the drawing thread
    def _poll(self) -> bool | None:
        """Read what the run wrote; a draw request when something changed."""
        before = self.follower.status
        try:
            came = self.follower.poll()
        except (OSError, ValueError) as exc:  # a damaged file: say so, stop polling
            self.error = exc
            return True
        return True if came or before != self.follower.status or self.follower.ended else None

    def _draw(self, _request: Any) -> None:
        ended = self.follower.ended or self.error is not None
        self._show(force=ended)
        if ended:
            self.plot.finish()
            if self.error is not None:
                self.error_box.value = error_html(self.error)
            self._drawer.close()  # from its own thread: it ends after this draw

    def _show(self, force: bool) -> None:
        """Status, progress and curves as the follower has them."""
        header = self.follower.header
        if header is not None and self._shown != (header["uid"], self.follower.restarts):
            self._shown = (header["uid"], self.follower.restarts)
            self.plot.follow(self.follower.history, {header.get("run", 0): header.get(
                "batches") or 1})
        self.plot.draw(force=force)
        self._show_progress(header)
        self._show_status(header)

    def _show_progress(self, header: dict | None) -> None:
        history = self.follower.history
        if header is None or not history.batch_count:
            self.progress.value, self.progress_label.value = 0, ""
            return
        last = history.batch_rows_since(history.batch_count - 1)
        epoch, batch = last["epoch"][0], last["batch"][0]
        first, final, batches = header["first_epoch"], header["last_epoch"], header["batches"]
        epoch_rows = history.epoch_rows
        rate = epoch_rows[-1].get("samples_per_s") if epoch_rows else None
        speed = f" · {rate:,.0f} samples/s" if isinstance(rate, (int, float)) else ""
        if batches:
            self.progress.max = max(1, (final - first + 1) * batches)
            self.progress.value = min(self.progress.max, (epoch - first) * batches + batch)
            self.progress_label.value = (f"epoch {epoch}/{final} · batch {batch}/{batches}"
                                         f"{speed}")
        else:
            self.progress.max = max(1, final - first + 1)
            self.progress.value = min(self.progress.max, epoch - first)
            self.progress_label.value = f"epoch {epoch}/{final} · batch {batch}{speed}"

    def _show_status(self, header: dict | None) -> None:
        status, where = self.follower.status, html.escape(str(self.run_dir))
        self.stop_button.disabled = status != RunState.RUNNING or self.stopping
        if header is None:
            self.status.value = f"waiting for a run to start in <code>{where}</code>…"
            return
        trained = self.follower.history.last_epoch
        text = {RunState.RUNNING: "stop asked: the run stops at the end of its batch…"
                if self.stopping else "training…"}.get(
            status, f"{status} · {trained} epoch{'s' if trained != 1 else ''} trained")
        messages = "".join(f"<br><span style='color:#c00'>{html.escape(m)}</span>"
                           for m in self.follower.messages)
        self.status.value = (f"{text} · <code>{where}</code> · uid {html.escape(header['uid'])}"
                             f"{messages}")


def watch(run_dir: str | Path, poll_s: float = POLL_S, height: int = 380) -> RunWatch:
    """Show the run that writes ``run_dir`` (``xb.fit(..., run_dir=...)``, e.g. a script
    under ``torchrun`` on a GPU server whose disk the notebook sees), live: its curves,
    progress and status, and a Stop that stops it at the end of its batch in progress.

    Example:
        >>> xb.widgets.watch("runs/mlp")  # doctest: +SKIP
    """
    return RunWatch(run_dir, poll_s, height)
