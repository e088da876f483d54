"""Reading a run directory (written by ``fit(..., run_dir=...)``) from anywhere: as
DataFrames once (:func:`read_run`), or row by row as the run writes it
(:class:`RunFollower`, what ``xb.widgets.watch`` polls).

The rows go into a :class:`~exburn_nb.core.history.History`, so a watched run has the
same frames, columns and live figure as a run trained here.

Example:
    >>> record = xb.read_run("runs/mlp")  # doctest: +SKIP
    >>> record.status, record.history.tail(1)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..base.vocabulary import BATCH_COLUMNS, RunState
from ..io import rundir
from .history import History

GONE = "the process writing it is gone (killed?) without recording how the run ended"


class RunFollower:
    """Follows one run directory: each :meth:`poll` reads its header and the rows written
    since into :attr:`history`. A directory with no run yet is ``waiting``; a rewritten
    rows file (the run resumed from a checkpoint) is read again from its start.

    Args:
        run_dir: the run directory (it need not exist yet).

    Example:
        >>> follower = RunFollower("runs/mlp")  # doctest: +SKIP
        >>> follower.poll(), follower.status, follower.history.epochs_frame()  # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = rundir.check_run_dir(run_dir)
        self.history = History()
        self.header: dict | None = None
        self.restarts = 0  # times the rows file was replaced and the history read anew
        self._tail = rundir.RowTail(self.run_dir)

    def poll(self) -> int:
        """Read the header and the rows written since the last poll; how many rows came.
        The header is read first: once it says the run ended, every row is in."""
        self.header = rundir.read_header(self.run_dir)
        rows = self._tail.read()
        if self._tail.restarted:
            self._tail.restarted = False
            self.history.clear()
            self.restarts += 1
        for row in rows:
            if "batch" in row:
                values = {k: math.nan if v is None else v for k, v in row["batch"].items()}
                extras = {k: v for k, v in values.items() if k not in BATCH_COLUMNS}
                self.history.record_batch(
                    values.get("run", 0), values.get("epoch", 0), values.get("batch", 0),
                    values.get("step", 0), float(values.get("loss", math.nan)),
                    values.get("lr", math.nan), extras)
            else:
                self.history.record_epoch({k: v for k, v in row["epoch"].items()
                                           if v is not None})
        return len(rows)

    @property
    def status(self) -> str:
        """``waiting`` (no run yet), ``running``, or how it ended: ``finished``,
        ``stopped``, ``pruned``, ``failed`` (also for a run whose process on this host
        is gone without saying how it ended)."""
        if self.header is None:
            return str(RunState.WAITING)
        status = self.header.get("status", str(RunState.RUNNING))
        if status == RunState.RUNNING and rundir.writer_gone(self.header):
            return str(RunState.FAILED)
        return str(status)

    @property
    def messages(self) -> list[str]:
        """What the run warned about or failed with (and why a run is taken as failed)."""
        messages = list((self.header or {}).get("messages", []))
        if (self.header or {}).get("status") == RunState.RUNNING and \
                self.status == RunState.FAILED:
            messages.append(GONE)
        return messages

    @property
    def ended(self) -> bool:
        """Whether the run has ended (nothing more will be written)."""
        return self.status not in (RunState.WAITING, RunState.RUNNING)


@dataclass
class RunRecord:
    """A run directory read at one moment (:func:`read_run`).

    Attributes:
        status: ``waiting``, ``running``, ``finished``, ``stopped``, ``pruned`` or
            ``failed``.
        header: ``run.json`` (uid, config, epochs, batches, ...), None while waiting.
        history: one row per epoch (the columns of ``model.history``).
        batches: one row per batch (the columns of ``model.batch_history``).
        messages: what the run warned about or failed with.
    """

    status: str
    header: dict | None
    history: pd.DataFrame
    batches: pd.DataFrame
    messages: list[str]


def read_run(run_dir: str | Path) -> RunRecord:
    """What a run directory holds now, as DataFrames: the run may still be going, may have
    ended, or may not have started (``waiting``, empty frames). A half-written last line
    is left out; a damaged file is a ``ValueError`` naming it and its line.

    Example:
        >>> xb.fit(model, data, epochs=5, run_dir="runs/mlp")  # doctest: +SKIP
        >>> run = xb.read_run("runs/mlp")  # doctest: +SKIP
        >>> run.status, len(run.history)  # doctest: +SKIP
        ('finished', 5)
    """
    follower = RunFollower(run_dir)
    follower.poll()
    history = follower.history
    return RunRecord(follower.status, follower.header, history.epochs_frame(),
                     history.batches_frame(), follower.messages)
