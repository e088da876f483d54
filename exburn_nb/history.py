"""Training history: one row per epoch and one per batch, as pandas DataFrames.

The schema is stable: the epoch frame's columns come in the order of
:data:`EPOCH_COLUMNS` (optional ones only once some epoch has a value), followed by any
extra numbers that callbacks added; the batch frame has :data:`BATCH_COLUMNS`. Values are
plain Python scalars, so both frames go to JSON and CSV untouched.

Example:
    >>> h = History()
    >>> h.add_epoch({"epoch": 1, "loss": 0.5, "lr": 0.001, "seconds": 1.0, "samples_per_s": 100.0})
    >>> h.epochs_frame().columns.tolist()
    ['epoch', 'loss', 'lr', 'seconds', 'samples_per_s']
"""

from __future__ import annotations

import threading

import pandas as pd

EPOCH_COLUMNS = ("epoch", "loss", "val_loss", "accuracy", "val_accuracy", "lr", "seconds",
                 "samples_per_s")
OPTIONAL_COLUMNS = ("val_loss", "accuracy", "val_accuracy")
BATCH_COLUMNS = ("epoch", "batch", "step", "loss", "lr")


class History:
    """Thread-safe store of epoch rows and batch rows (written by the loop, read by anyone)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: list[dict] = []
        self._batches: dict[str, list] = {c: [] for c in BATCH_COLUMNS}

    # -------------------------------------------------------------- writing
    def add_epoch(self, row: dict) -> None:
        """Append one epoch's metrics (plain scalars)."""
        with self._lock:
            self._epochs.append(dict(row))

    def update_last_epoch(self, values: dict) -> None:
        """Add or change values in the latest epoch row (callbacks' extra metrics)."""
        with self._lock:
            self._epochs[-1].update(values)

    def add_batches(self, rows: dict[str, list]) -> None:
        """Append batch rows given as columns (``{"epoch": [...], "loss": [...], ...}``)."""
        with self._lock:
            for column in BATCH_COLUMNS:
                self._batches[column].extend(rows[column])

    def clear(self) -> None:
        """Forget every row (a weight reset starts a fresh history)."""
        with self._lock:
            self._epochs.clear()
            for column in self._batches.values():
                column.clear()

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
    def epoch_rows(self) -> list[dict]:
        """A copy of the epoch rows."""
        with self._lock:
            return [dict(r) for r in self._epochs]

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
            data = {c: list(v) for c, v in self._batches.items()}
        return pd.DataFrame(data, columns=list(BATCH_COLUMNS)).astype(
            {"epoch": "int64", "batch": "int64", "step": "int64", "loss": "float64",
             "lr": "float64"})

    # -------------------------------------------------------------- persistence
    def to_state(self) -> dict:
        """Everything as plain JSON-ready data."""
        with self._lock:
            return {"epochs": [dict(r) for r in self._epochs],
                    "batches": {c: list(v) for c, v in self._batches.items()}}

    @classmethod
    def from_state(cls, state: dict) -> History:
        """Rebuild a history from :meth:`to_state` output."""
        history = cls()
        for row in state.get("epochs", []):
            history.add_epoch(row)
        batches = state.get("batches") or {c: [] for c in BATCH_COLUMNS}
        history.add_batches({c: list(batches.get(c, [])) for c in BATCH_COLUMNS})
        return history
