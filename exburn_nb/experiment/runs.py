"""Runs of an experiment as plain data: their numbers, seeds, params and histories."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..base.checks import MAX_SEED
from ..core.model import Model

HISTORY_SKIP = ("run",)  # the model's own run counter: always 1 for an experiment's run


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
    """One run: its number, params, seed, end state, and history (live while it trains)."""

    run: int
    params: dict
    seed: int | None
    state: str = "running"
    message: str = ""
    seconds: float = 0.0
    rows: list[dict] | None = None  # epoch rows, once ended (or loaded, or from a study)
    model: Model | None = field(default=None, repr=False)  # while it trains; kept if best
    trial: Any = field(default=None, repr=False)

    def history_rows(self) -> list[dict]:
        """The epoch rows: live from the model while the run trains."""
        if self.rows is not None:
            return self.rows
        if self.model is None:
            return []
        return [{k: v for k, v in r.items() if k not in HISTORY_SKIP}
                for r in self.model.recorder.epoch_rows]


class UsedNames(dict):
    """A dict that records which keys a ``build`` function reads."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.used.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)

    def _all(self) -> None:
        self.used.update(self.keys())

    def keys(self):  # noqa: ANN201 - ``**params`` and iteration read every name
        self.used.update(super().keys())
        return super().keys()

    def items(self):  # noqa: ANN201
        self._all()
        return super().items()

    def __iter__(self):  # noqa: ANN204
        self._all()
        return super().__iter__()


def best_value(rows: list[dict], metric: str, direction: str) -> tuple[float, int] | None:
    """``(best value, its epoch)`` of ``metric`` over ``rows``, or None."""
    pairs = [(r[metric], r["epoch"]) for r in rows
             if r.get(metric) is not None and math.isfinite(r[metric])]
    if not pairs:
        return None
    pick = min if direction == "minimize" else max
    return pick(pairs, key=lambda p: p[0])


def runs_frame(runs: list[Run], names: list[str]) -> pd.DataFrame:
    """The tidy frame: one row per run and epoch (one row for a run with no epoch)."""
    records = []
    for r in runs:
        head = {"run": r.run, **{n: r.params.get(n) for n in names}}
        rows = r.history_rows() or [{"epoch": None}]
        records.extend({**head, **row, "state": r.state} for row in rows)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=["run", *names, "epoch", "state"])
    frame["epoch"] = frame["epoch"].astype("Int64")
    return frame


def summary_frame(runs: list[Run], names: list[str], metric: str,
                  direction: str) -> pd.DataFrame:
    """One row per run: params, state, best metric and its epoch, final metrics, epochs,
    seconds, seed and message."""
    records = []
    for r in runs:
        rows = r.history_rows()
        best = best_value(rows, metric, direction)
        record = {"run": r.run, **{n: r.params.get(n) for n in names},
                  "state": r.state, f"best_{metric}": best[0] if best else math.nan,
                  "best_epoch": best[1] if best else None}
        last = rows[-1] if rows else {}
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            if key in last:
                record[f"final_{key}"] = last[key]
        record.update(epochs=len(rows), seconds=r.seconds, seed=r.seed, message=r.message)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if not frame.empty:
        frame["best_epoch"] = frame["best_epoch"].astype("Int64")
    return frame
