"""Training history: the public recorder of runs, epochs and batches.

The loop writes each batch row as the batch completes and each epoch row as the epoch
ends; the live plot, the progress display and the dashboard all read this one source
(:meth:`History.batch_rows_since` gives the rows a reader has not seen yet).

The schema is stable: the epoch frame's columns come in the order of
:data:`EPOCH_COLUMNS` (optional ones only once some epoch has a value), followed by any
extra numbers that callbacks logged; the batch frame has :data:`BATCH_COLUMNS`, then
logged extras. ``run`` numbers the ``fit`` call a row belongs to; :attr:`History.runs`
holds each run's config. Values are plain Python scalars, so everything goes to JSON and
CSV untouched.

Example:
    >>> h = History()
    >>> h.record_epoch({"epoch": 1, "loss": 0.5, "lr": 0.001, "seconds": 1.0, "samples_per_s": 100.0})
    >>> h.epochs_frame().columns.tolist()
    ['epoch', 'loss', 'lr', 'seconds', 'samples_per_s']
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pandas as pd
import torch

from ..base.vocabulary import BATCH_COLUMNS, EPOCH_COLUMNS, OPTIONAL_COLUMNS

SMOOTHING = 0.9


def smooth(values: list[float], alpha: float = SMOOTHING, start: float | None = None
           ) -> list[float]:
    """Exponential moving average (``s = alpha * s + (1 - alpha) * v``), from ``start``.

    Example:
        >>> smooth([1.0, 0.0, 0.0], alpha=0.5)
        [1.0, 0.5, 0.25]
    """
    out, s = [], start
    for v in values:
        s = v if s is None else alpha * s + (1 - alpha) * v
        out.append(s)
    return out


class History:
    """Thread-safe store of epoch rows and batch rows (written by the loop, read by anyone)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: list[dict] = []
        self._batches: dict[str, list] = {c: [] for c in BATCH_COLUMNS}
        self._pending = self._pending_from = 0  # losses held as tensors, read lazily
        self.runs: list[dict] = []

    # -------------------------------------------------------------- writing
    def start_run(self, config: dict) -> int:
        """Register a new run with its config (plain JSON); returns its id (1, 2, ...)."""
        with self._lock:
            run = (self.runs[-1]["run"] if self.runs else 0) + 1
            self.runs.append({"run": run, "config": dict(config)})
            return run

    def note_run(self, run: int, **info: Any) -> None:
        """Add JSON-ready ``info`` to run ``run``'s entry (e.g. ``compile_seconds``).

        Example:
            >>> h = History(); h.note_run(h.start_run({}), compile_seconds=1.5); h.runs
            [{'run': 1, 'config': {}, 'compile_seconds': 1.5}]
        """
        with self._lock:
            for entry in self.runs:
                if entry["run"] == run:
                    entry.update(info)

    def record_batch(self, run: int, epoch: int, batch: int, step: int, loss: Any, lr: float,
                  extras: dict | None = None) -> None:
        """Append one batch row as it completes. ``loss`` may be a 0-d tensor: it is read
        (with every other pending one, one device sync) when someone reads the rows."""
        with self._lock:
            b = self._batches
            b["run"].append(run)
            b["epoch"].append(epoch)
            b["batch"].append(batch)
            b["step"].append(step)
            b["loss"].append(loss)
            b["lr"].append(lr)
            if not isinstance(loss, float):
                if not self._pending:
                    self._pending_from = len(b["loss"]) - 1
                self._pending += 1
            if extras or len(b) > len(BATCH_COLUMNS):
                self._pad_extras(extras or {})

    def update_last_batch(self, values: dict) -> None:
        """Add values to the latest batch row (numbers a callback logged)."""
        with self._lock:
            n = len(self._batches["epoch"])
            for k, v in values.items():
                column = self._batches.setdefault(k, [math.nan] * n)
                column[n - 1] = v

    def _pad_extras(self, extras: dict) -> None:
        n = len(self._batches["epoch"])
        for k, v in extras.items():
            self._batches.setdefault(k, [math.nan] * (n - 1)).append(v)
        for column in self._batches.values():
            if len(column) < n:
                column.append(math.nan)

    def _read_pending(self) -> None:
        """Turn tensor losses into floats, all in one go (caller holds the lock)."""
        if self._pending:
            losses = self._batches["loss"]
            idx = [i for i in range(self._pending_from, len(losses))
                   if not isinstance(losses[i], float)]
            for i, v in zip(idx, torch.stack([losses[i] for i in idx]).tolist(), strict=True):
                losses[i] = v
            self._pending = 0

    def record_epoch(self, row: dict) -> None:
        """Append one epoch's metrics (plain scalars)."""
        with self._lock:
            self._epochs.append(dict(row))

    def update_last_epoch(self, values: dict) -> None:
        """Add or change values in the latest epoch row (callbacks' extra metrics)."""
        with self._lock:
            self._epochs[-1].update(values)

    def clear(self) -> None:
        """Forget every row (a weight reset starts a fresh history)."""
        with self._lock:
            self._epochs.clear()
            self._batches = {c: [] for c in BATCH_COLUMNS}
            self._pending = 0
            self.runs = []

    # -------------------------------------------------------------- reading
    @property
    def last_epoch(self) -> int:
        """The number of the latest recorded epoch (0 before any)."""
        with self._lock:
            return self._epochs[-1]["epoch"] if self._epochs else 0

    @property
    def last_step(self) -> int:
        """The optimizer step count at the latest recorded batch (0 before any)."""
        with self._lock:
            steps = self._batches["step"]
            return steps[-1] if steps else 0

    @property
    def batch_count(self) -> int:
        """The number of batch rows recorded."""
        with self._lock:
            return len(self._batches["epoch"])

    @property
    def epoch_count(self) -> int:
        """The number of epoch rows recorded."""
        with self._lock:
            return len(self._epochs)

    def batch_rows_since(self, start: int) -> dict[str, list]:
        """The batch columns from row ``start`` on (what a reader has not seen yet).

        Example:
            >>> h = History(); h.record_batch(1, 1, 1, 1, 0.5, 1e-3)
            >>> h.batch_rows_since(0)["loss"]
            [0.5]
        """
        with self._lock:
            self._read_pending()
            return {c: v[start:] for c, v in self._batches.items()}

    @property
    def epoch_rows(self) -> list[dict]:
        """A copy of the epoch rows."""
        return self.epoch_rows_since(0)

    def epoch_rows_since(self, start: int) -> list[dict]:
        """Copies of the epoch rows from row ``start`` on (what a reader has not seen yet).

        Example:
            >>> h = History(); h.record_epoch({"epoch": 1, "loss": 0.5})
            >>> h.epoch_rows_since(0), h.epoch_rows_since(1)
            ([{'epoch': 1, 'loss': 0.5}], [])
        """
        with self._lock:
            return [dict(r) for r in self._epochs[start:]]

    def epochs_frame(self) -> pd.DataFrame:
        """One row per epoch, columns in the stable order described in the module doc."""
        rows = self.epoch_rows
        present = {k for r in rows for k in r}
        columns = [c for c in EPOCH_COLUMNS if c not in OPTIONAL_COLUMNS or c in present]
        columns += sorted(present - set(EPOCH_COLUMNS))
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({"epoch": "int64"}) if rows else frame

    def batches_frame(self) -> pd.DataFrame:
        """One row per batch: epoch, batch (1-based within its epoch), step, loss, lr."""
        with self._lock:
            self._read_pending()
            data = {c: list(v) for c, v in self._batches.items()}
        columns = list(BATCH_COLUMNS) + sorted(set(data) - set(BATCH_COLUMNS))
        return pd.DataFrame(data, columns=columns).astype(
            {"epoch": "int64", "batch": "int64", "step": "int64", "loss": "float64",
             "lr": "float64", "run": "int64"})

    def runs_frame(self) -> pd.DataFrame:
        """One row per run: its id and its config's values.

        Example:
            >>> h = History(); h.start_run({"epochs": 3, "seed": 0})
            1
            >>> h.runs_frame().to_dict("records")
            [{'run': 1, 'epochs': 3, 'seed': 0}]
        """
        with self._lock:
            rows = [{"run": r["run"], **{k: (str(v) if isinstance(v, (list, dict)) else v)
                                         for k, v in r["config"].items()}} for r in self.runs]
        return pd.DataFrame(rows)

    # -------------------------------------------------------------- persistence
    def to_state(self) -> dict:
        """Everything as plain JSON-ready data."""
        with self._lock:
            self._read_pending()
            return {"epochs": [dict(r) for r in self._epochs],
                    "batches": {c: list(v) for c, v in self._batches.items()},
                    "runs": [dict(r) for r in self.runs]}

    @classmethod
    def from_state(cls, state: dict) -> History:
        """Rebuild a history from :meth:`to_state` output."""
        history = cls()
        for row in state.get("epochs", []):
            history.record_epoch(row)
        batches = state.get("batches") or {}
        n = len(batches.get("epoch", []))
        history._batches = {c: list(batches.get(c, [0 if c == "run" else math.nan] * n))
                            for c in (*BATCH_COLUMNS, *sorted(set(batches) - set(BATCH_COLUMNS)))}
        history.runs = [dict(r) for r in state.get("runs", [])]
        return history
