"""TensorBoard event files written from a run's history (``xb.callbacks.tensorboard``).

:class:`RunBoard` is one run's directory: the model's graph where torch can trace it, then
at each :meth:`RunBoard.flush` the history rows it has not written yet, read from the
model's recorder (:meth:`~exburn_nb.core.history.History.batch_rows_since` for batches):
``epoch/<column>`` at step ``epoch`` for every epoch column (learning rate, seconds and
callbacks' extras included) and ``batch/<column>`` at the optimizer step for every batch
column. The loop's batches pay nothing for it: the recorder is the buffer. TensorBoard is
imported only when a board is made (``pip install 'exburn_nb[export]'``).

Example:
    >>> board = RunBoard(summary_writer_class(), "tb/run", model)  # doctest: +SKIP
    >>> xb.fit(model, data, epochs=3); board.flush(); board.close()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from ..base.vocabulary import BATCH_COLUMNS
from ..core.model import Model

EPOCH_KEYS = ("epoch", "run")  # an epoch row's position, not scalars
BATCH_KEYS = ("run", "epoch", "batch", "step")  # a batch row's position, not scalars
HPARAM_TYPES = (bool, int, float, str)


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError that says what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError("xb.callbacks.tensorboard needs TensorBoard, an optional extra: "
                          "pip install 'exburn_nb[export]' (or pip install tensorboard)"
                          ) from exc
    return SummaryWriter


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (not a bool): a scalar TensorBoard can plot."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def hparam_value(value: Any) -> bool | int | float | str:
    """``value`` as TensorBoard's hparams plugin takes it (other types as their text).

    Example:
        >>> hparam_value(0.1), hparam_value((16, 8)), hparam_value(None)
        (0.1, '(16, 8)', 'None')
    """
    return value if isinstance(value, HPARAM_TYPES) else str(value)


class RunBoard:
    """One run's TensorBoard directory, filled from ``model``'s history rows recorded after
    the board was made (so a model's earlier ``fit`` runs are not repeated).

    Args:
        writer_class: :func:`summary_writer_class`'s result.
        log_dir: the run's directory (created).
        model: the compiled model whose history is written.
    """

    def __init__(self, writer_class: type, log_dir: str | Path, model: Model):
        self.writer = writer_class(log_dir=str(log_dir))
        self.recorder = model.recorder
        self.first_row = len(self.recorder.epoch_rows)
        self.row: int | None = None  # the latest epoch row written, and which of its keys
        self.row_keys: set[str] = set()
        self.written_epoch = self.recorder.last_epoch
        self.batch_cursor = self.recorder.batch_count
        self.closed = False

    def add_graph(self, model: Model) -> str | None:
        """Trace ``model`` on a zero input of its ``input_shape`` (in eval mode, weights and
        RNG untouched) into the graph tab; None, or the note why no graph was written
        (the note is also written to the text tab as ``graph``)."""
        if model.input_shape is None:
            note = "the model has no input_shape to trace it with"
        else:
            try:
                example = torch.zeros((1, *model.input_shape[1:]), device=model.torch_device)
                with model.lock, warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notices
                    self.writer.add_graph(model.module, example)
                return None
            except Exception as exc:  # tracing fails for some modules: the run goes on
                note = f"torch could not trace the model ({type(exc).__name__}: {exc})"
        self.writer.add_text("graph", f"no graph: {note}")
        return note

    @property
    def pending(self) -> bool:
        """Whether the history holds rows this board has not written."""
        return (self.recorder.batch_count > self.batch_cursor
                or self.recorder.last_epoch != self.written_epoch)

    def flush(self) -> None:
        """Write the rows (and an epoch row's late extras) not written yet, then flush the
        file so TensorBoard shows them."""
        rows = self.recorder.epoch_rows
        start = self.first_row if self.row is None else self.row
        for index in range(start, len(rows)):
            row = rows[index]
            done = self.row_keys if index == self.row else set()
            for key, value in row.items():
                if key not in done and key not in EPOCH_KEYS and is_number(value):
                    self.writer.add_scalar(f"epoch/{key}", value, row["epoch"])
        if len(rows) > start:
            self.row, self.row_keys = len(rows) - 1, set(rows[-1])
            self.written_epoch = rows[-1]["epoch"]
        batches = self.recorder.batch_rows_since(self.batch_cursor)
        steps = batches["step"]
        for column, values in batches.items():
            if column in BATCH_KEYS:
                continue
            for step, value in zip(steps, values, strict=True):
                # an extra column is NaN in the rows that did not log it
                if column in BATCH_COLUMNS or (is_number(value) and math.isfinite(value)):
                    self.writer.add_scalar(f"batch/{column}", value, step)
        self.batch_cursor += len(steps)
        self.writer.flush()

    def add_hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Record the run's ``params`` as hparams with ``metrics`` (``final/loss``...) as
        its hparam metrics, in this run's own directory."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {k: float(v) for k, v in metrics.items()}
        for summary in hparams({k: hparam_value(v) for k, v in params.items()}, metrics):
            self.writer.file_writer.add_summary(summary)
        step = self.recorder.last_epoch
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Write what is left and close the file (idempotent)."""
        if not self.closed:
            self.closed = True
            try:
                self.flush()
            finally:
                self.writer.close()
