"""Runs of an experiment as plain data: their numbers, seeds, params, histories and end
states, and the tidy frames made of them.

Example:
    >>> run = Run(0, {"learning_rate": 0.1}, seed=1, state=RunState.FINISHED,
    ...           rows=[{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.4}])
    >>> run.state is RunState.FINISHED, best_value(run.rows, "loss", "minimize")
    (True, (0.4, 2))
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..base.checks import MAX_SEED
from ..base.vocabulary import EPOCH_COLUMNS, METRICS, RunState
from ..core.model import Model

HISTORY_SKIP = ("run",)  # the model's own run counter: always 1 for an experiment's run
FINAL_COLUMNS = ("loss", "val_loss", "accuracy", "val_accuracy")
DIRECTIONS = ("minimize", "maximize")
# names a param may not take: the columns of a run's history (``EPOCH_COLUMNS``) and the
# other columns of the runs and summary frames (``epochs`` stays a param: the fit option)
RESERVED_PARAMS = tuple(dict.fromkeys((
    *EPOCH_COLUMNS, "state", "seed", "message", "best_epoch",
    *(f"best_{m}" for m in METRICS), *(f"final_{c}" for c in FINAL_COLUMNS))))


def run_seed(seed: int, run: int) -> int:
    """The seed of run ``run`` of an experiment seeded ``seed`` (weights, order, dropout).

    Example:
        >>> run_seed(0, 3) == run_seed(0, 3) != run_seed(0, 4)
        True
    """
    words = np.random.SeedSequence([seed, run]).generate_state(2, dtype=np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & MAX_SEED


@dataclass
class Run:
    """One run: its number, params, seed, state, and history (live while it trains).

    ``state`` is a :class:`~exburn_nb.base.vocabulary.RunState` (a plain string such as
    ``"finished"`` is converted, and an unknown one refused).

    Example:
        >>> Run(3, {"units": 8}, seed=5).state
        <RunState.RUNNING: 'running'>
    """

    run: int
    params: dict
    seed: int | None
    state: RunState = RunState.RUNNING
    message: str = ""
    seconds: float = 0.0
    rows: list[dict] | None = None  # epoch rows, once ended (or loaded, or from a study)
    model: Model | None = field(default=None, repr=False)  # while it trains
    trial: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.state = RunState(self.state)

    def history_rows(self) -> list[dict]:
        """The epoch rows: live from the model while the run trains."""
        if self.rows is not None:
            return self.rows
        if self.model is None:
            return []
        return [{k: v for k, v in r.items() if k not in HISTORY_SKIP}
                for r in self.model.recorder.epoch_rows]


def best_value(rows: list[dict], metric: str, direction: str) -> tuple[float, int] | None:
    """``(best value, its epoch)`` of ``metric`` over ``rows``, or None.

    Example:
        >>> best_value([{"epoch": 1, "acc": 0.5}, {"epoch": 2, "acc": 0.7}], "acc", "maximize")
        (0.7, 2)
    """
    pairs = [(r[metric], r["epoch"]) for r in rows
             if r.get(metric) is not None and math.isfinite(r[metric])]
    if not pairs:
        return None
    pick = min if direction == "minimize" else max
    return pick(pairs, key=lambda p: p[0])


def check_metric(metric: Any, available: tuple | list) -> str:
    """``metric`` if it is one of ``available``, else a ``ValueError`` with a "did you mean".

    Example:
        >>> check_metric("val_los", METRICS)
        Traceback (most recent call last):
        ...
        ValueError: metric must be one of loss, val_loss, accuracy, val_accuracy, lr; got 'val_los' (did you mean 'val_loss'?)
    """
    if isinstance(metric, str) and metric in available:
        return metric
    close = difflib.get_close_matches(str(metric), list(available), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"metric must be one of {', '.join(available)}; got {metric!r}{hint}")


def runs_frame(runs: list[Run], names: list[str]) -> pd.DataFrame:
    """The tidy frame: one row per run and epoch (one row for a run with no epoch).

    Example:
        >>> runs_frame([Run(0, {"units": 8}, 1, rows=[{"epoch": 1, "loss": 0.5}])],
        ...            ["units"]).values.tolist()
        [[0, 8, 1, 0.5, 'running']]
    """
    records = []
    for r in runs:
        head = {"run": r.run, **{n: r.params.get(n) for n in names}}
        rows = r.history_rows() or [{"epoch": None}]
        records.extend({**head, **row, "state": r.state.value} for row in rows)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=["run", *names, "epoch", "state"])
    frame["epoch"] = frame["epoch"].astype("Int64")
    return frame


def summary_frame(runs: list[Run], names: list[str], metric: str,
                  direction: str) -> pd.DataFrame:
    """One row per run: params, state, best metric and its epoch, final metrics, epochs,
    seconds, seed and message.

    Example:
        >>> summary_frame([Run(0, {"units": 8}, 1, RunState.FINISHED, rows=[{"epoch": 1, "loss": 0.5}])],
        ...               ["units"], "loss", "minimize").best_loss.tolist()
        [0.5]
    """
    records = []
    for r in runs:
        rows = r.history_rows()
        best = best_value(rows, metric, direction)
        record = {"run": r.run, **{n: r.params.get(n) for n in names},
                  "state": r.state.value, f"best_{metric}": best[0] if best else math.nan,
                  "best_epoch": best[1] if best else None}
        last = rows[-1] if rows else {}
        for key in FINAL_COLUMNS:
            if key in last:
                record[f"final_{key}"] = last[key]
        record.update(epochs=len(rows), seconds=r.seconds, seed=r.seed, message=r.message)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if not frame.empty:
        frame["best_epoch"] = frame["best_epoch"].astype("Int64")
    return frame
