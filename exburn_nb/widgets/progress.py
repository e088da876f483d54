"""``RunProgress``: a run's progress bar and label (epoch, batch, samples/s, ETA) and its
history table, fed by a training callback at a few updates a second.

Example:
    >>> progress = RunProgress(W.IntProgress(), W.Label(), lambda: None)
    >>> progress.throttle.interval
    0.125
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import ipywidgets as W

from ..train.callbacks import Callback
from .frontend.throttle import Throttle

PROGRESS_UPDATES_PER_S = 8
TABLE_REFRESH_S = 1.0  # the history table redraws at most this often (and at the end)


class RunProgress(Callback):
    """Feeds a progress bar and its label (epoch, batch, samples/s, ETA) and refreshes a
    history table, throttled; the clock stops while the run is paused.

    Args:
        bar: the progress bar (its ``max`` becomes the run's batches).
        label: the text beside it.
        refresh_table: redraws the history table (at most every :data:`TABLE_REFRESH_S`).

    Example:
        >>> progress = RunProgress(W.IntProgress(), W.Label(), lambda: None)
        >>> runner.add_callback(progress)  # doctest: +SKIP
    """

    def __init__(self, bar: W.IntProgress, label: W.Label, refresh_table: Callable[[], None],
                 until_stop_epochs: int | None = None):
        self.bar, self.label, self.refresh_table = bar, label, refresh_table
        # a run of this many epochs goes on until Stop: no total, no ETA, the bar per epoch
        self.until_stop_epochs = until_stop_epochs
        self.throttle = Throttle(PROGRESS_UPDATES_PER_S)
        self.table_throttle = Throttle(1 / TABLE_REFRESH_S)
        # Pause is clicked in another thread than the batches end in: the label it writes
        # must not be overwritten by the label of a batch that was ending meanwhile
        self._label_lock = threading.Lock()

    def on_train_begin(self, logs: dict) -> None:
        self.batches, self.first = logs["batches"], logs["first_epoch"]
        self.last = logs["first_epoch"] + logs["epochs"] - 1
        self.total = logs["batches"] * logs["epochs"]
        self.endless = logs["epochs"] == self.until_stop_epochs
        self.t0, self.samples, self.done = time.perf_counter(), 0, 0
        self.paused_s, self._paused_at = 0.0, None
        self.epoch, self.batch = logs["first_epoch"], 0
        self.throttle.restart()
        self.table_throttle.restart(ready_now=False)
        self.bar.max = max(1, self.batches if self.endless else self.total)
        self.bar.value = 0

    def pause(self) -> None:
        """The run holds: freeze the clock and say where it stands, without an ETA."""
        with self._label_lock:
            self._paused_at = time.perf_counter()
            self.label.value = self._paused_label()

    def resume(self) -> None:
        with self._label_lock:
            if self._paused_at is not None:
                self.paused_s += time.perf_counter() - self._paused_at
                self._paused_at = None

    def _paused_label(self) -> str:
        return f"paused at epoch {self.epoch}/{self.last} · batch {self.batch}/{self.batches}"

    def elapsed(self) -> float:
        """Seconds of training so far, paused time excluded."""
        held = time.perf_counter() - self._paused_at if self._paused_at is not None else 0.0
        return max(time.perf_counter() - self.t0 - self.paused_s - held, 1e-9)

    def on_batch_end(self, batch: int, logs: dict) -> None:
        self.samples += logs["size"]
        self.done += 1
        self.epoch, self.batch = logs["epoch"], batch
        # the batch that ends after Pause was clicked is where the run holds: always shown
        if self._paused_at is not None or self.throttle.ready(force=self.done == self.total):
            self.show(logs["epoch"], batch)

    def show(self, epoch: int, batch: int) -> None:
        with self._label_lock:
            if self._paused_at is not None:
                self.label.value = self._paused_label()
            else:
                self._show_running(epoch, batch)

    def _show_running(self, epoch: int, batch: int) -> None:
        elapsed = self.elapsed()
        rate = self.samples / elapsed
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        if self.endless:
            self.bar.value = batch
            self.label.value = (f"epoch {epoch} (until Stop) · batch {batch}/{self.batches} · "
                                f"{rate:,.0f} samples/s")
            return
        self.bar.value = min(self.done, self.bar.max)
        self.label.value = (
            f"epoch {epoch}/{self.last} · batch {batch}/{self.batches} · "
            f"{rate:,.0f} samples/s · ETA {eta:.1f}s")

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        if self.table_throttle.ready():  # pandas to_html costs ~5 ms
            self.refresh_table()

    def on_train_end(self, logs: dict) -> None:
        self.resume()
        elapsed = self.elapsed()
        self.bar.value = min(self.done, self.bar.max)
        of_total = "" if self.endless else f" of {self.total:,}"
        self.label.value = (
            f"{self.done:,}{of_total} batches in {elapsed:.1f}s · "
            f"{self.samples / elapsed:,.0f} samples/s")
