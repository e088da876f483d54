"""``ExperimentResults``: an experiment's runs and what they say, whole and on their own.

A live :class:`~exburn_nb.experiment.Experiment` fills one as its runs train (its
``runs``, ``summary`` and ``best`` are this object's); :meth:`ExperimentResults.load`
(and ``xb.Experiment.load``) reads one back from a directory. Ranking runs happens here
and nowhere else.

Example:
    >>> results = ExperimentResults(
    ...     {"learning_rate": [0.1, 0.01]}, metric="loss",
    ...     runs=[Run(0, {"learning_rate": 0.1}, 1, RunState.FINISHED, rows=[{"epoch": 1, "loss": 0.5}]),
    ...           Run(1, {"learning_rate": 0.01}, 2, RunState.FINISHED, rows=[{"epoch": 1, "loss": 0.3}])])
    >>> results.best, results.best_run
    ({'learning_rate': 0.01}, 1)
    >>> results.summary[["run", "state", "best_loss"]].values.tolist()
    [[0, 'finished', 0.5], [1, 'finished', 0.3]]
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from ..base.vocabulary import RunState
from ..core.model import Model
from . import files
from .runs import DIRECTIONS, Run, best_value, runs_frame, summary_frame
from .space import check_candidates


class ExperimentResults:
    """The runs of an experiment: tidy frames, histories, the best run and its model.

    Args:
        params: the searched space, name -> candidates (a list or an ``xb.space`` range);
            its names are the params columns of the frames (not one of theirs:
            :data:`~exburn_nb.experiment.runs.RESERVED_PARAMS`).
        metric: the history column that ranks runs, e.g. ``"val_loss"``.
        direction: ``"minimize"`` or ``"maximize"``.
        runs: the runs so far (:class:`~exburn_nb.experiment.Run` objects).
        models: trained models by run number; the best run's is :attr:`best_model`.
        settings: how the experiment was set up, as JSON values (``search``, ``n_trials``,
            ``seed``, ``storage``, ``study_name``, ``routes``, ``parallel``,
            ``fit_config``, ``compile_options``); saved and loaded with the runs.
        parallel_report: with ``parallel`` set, one text per group of runs taken at once.
        study_runs: returns runs recorded elsewhere (an Optuna study's trials from other
            processes); a run added here wins over the study's copy of it.

    Example:
        >>> results = xb.Experiment.load("runs/digits")  # doctest: +SKIP
        >>> results.summary.sort_values("best_val_loss").head(); results.best  # doctest: +SKIP
        >>> results.histories[results.best_run].val_loss.plot()  # doctest: +SKIP
    """

    def __init__(self, params: dict, metric: str, direction: str = "minimize",
                 runs: Iterable[Run] = (), *, models: dict[int, Model] | None = None,
                 settings: dict | None = None, parallel_report: list[str] | None = None,
                 study_runs: Callable[[], Iterable[Run]] | None = None):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'minimize' or 'maximize'; got {direction!r}")
        self.params = {name: check_candidates(name, c) for name, c in params.items()}
        self.metric, self.direction = metric, direction
        self.settings = dict(settings or {})
        self.parallel_report: list[str] = list(parallel_report or [])
        self._runs = {r.run: r for r in runs}
        self._models = dict(models or {})
        self._study_runs = study_runs
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- recording
    def add(self, run: Run) -> None:
        """Record ``run`` (replacing an earlier run of the same number)."""
        with self._lock:
            self._runs[run.run] = run

    def local_runs(self) -> dict[int, Run]:
        """The runs recorded here (not the study's others), by run number."""
        with self._lock:
            return dict(self._runs)

    def keep_if_best(self, run: Run, model: Model | None) -> None:
        """Keep ``model`` (``run``'s trained model) as :attr:`best_model` when ``run`` is
        now the best finished run."""
        best = self._best()
        if model is not None and best is not None and best.run == run.run:
            self._models = {run.run: model}

    # ---------------------------------------------------------------- reading
    def records(self) -> list[Run]:
        """Every run as a :class:`Run`, by run number (a study's other runs included)."""
        runs = self.local_runs()
        if self._study_runs is not None:
            for run in self._study_runs():
                runs.setdefault(run.run, run)
        return [runs[k] for k in sorted(runs)]

    def get(self, run: int | None = None) -> Run:
        """Run number ``run``, or the best finished run when ``run`` is None.

        Example:
            >>> results.get().params == results.best  # doctest: +SKIP
            True
        """
        if run is None:
            best = self._best()
            if best is None:
                raise ValueError("no finished run yet: pass run=")
            return best
        runs = {r.run: r for r in self.records()}
        if run not in runs:
            raise ValueError(f"run must be one of {sorted(runs)}; got {run!r}")
        return runs[run]

    def _best(self) -> Run | None:
        """The best finished run: the best value of the metric, ties to the lower number."""
        scored = [(s[0], r.run, r) for r in self.records() if r.state == RunState.FINISHED
                  and (s := best_value(r.history_rows(), self.metric, self.direction))]
        if not scored:
            return None
        sign = 1 if self.direction == "minimize" else -1
        return min(scored, key=lambda t: (sign * t[0], t[1]))[2]

    @property
    def search(self) -> str | None:
        """``"grid"``, ``"random"`` or ``"optuna"``: how the runs' params were chosen."""
        return self.settings.get("search")

    @property
    def parallel(self) -> str | None:
        """The experiment's ``parallel`` setting (None, ``"vmap"`` or ``"auto"``)."""
        return self.settings.get("parallel")

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run and epoch: run, the params, epoch, every history column, state
        (running / finished / pruned / failed / stopped). A run with no epoch has one row."""
        return runs_frame(self.records(), list(self.params))

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run: params, state, best metric and its epoch, final metrics,
        epochs, seconds, seed and message."""
        return summary_frame(self.records(), list(self.params), self.metric, self.direction)

    @property
    def histories(self) -> dict[int, pd.DataFrame]:
        """Run number -> its epoch history (one row per epoch, as ``model.history``)."""
        return {r.run: pd.DataFrame.from_records(r.history_rows()) for r in self.records()}

    @property
    def best(self) -> dict | None:
        """The params of the best finished run (None before one finishes)."""
        run = self._best()
        return dict(run.params) if run is not None else None

    @property
    def best_run(self) -> int | None:
        """The number of the best finished run."""
        run = self._best()
        return run.run if run is not None else None

    @property
    def best_model(self) -> Model | None:
        """The trained model of the best run, when it was kept (trained in this process,
        or saved with the results)."""
        run = self._best()
        return self._models.get(run.run) if run is not None else None

    # ---------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write ``runs.csv`` (``runs.parquet`` with pyarrow), ``experiment.json`` and
        ``best_model.exburn``; never pickle. Atomic: a save that fails (a full disk) raises
        and leaves the directory's previous save loadable as it was.

        Example:
            >>> results.save("runs/digits")  # doctest: +SKIP
        """
        runs = [dataclasses.replace(r, rows=list(r.history_rows()), model=None, trial=None)
                for r in self.records()]  # one snapshot: the files agree even mid-run
        snapshot = ExperimentResults(self.params, self.metric, self.direction, runs,
                                     models=self._models, settings=self.settings,
                                     parallel_report=self.parallel_report)
        return files.write(snapshot, Path(directory))

    @classmethod
    def load(cls, directory: str | Path) -> ExperimentResults:
        """The results read back from :meth:`save` (or ``Experiment.save``), whole. Only
        the files ``experiment.json`` names are read, inside ``directory``, and every value
        is checked: an edited or mixed directory is a ``ValueError`` naming it and the field.

        Example:
            >>> ExperimentResults.load("runs/digits").summary  # doctest: +SKIP
        """
        saved = files.read(Path(directory))
        best_run = saved.pop("best_run")
        results = cls(**saved)
        if results.best_run != best_run:  # the runs, edited, rank another run first
            raise ValueError(f"{directory}: {files.SETTINGS} field 'best_run' is {best_run!r}, "
                             f"but its runs rank run {results.best_run!r} first")
        return results

    def __repr__(self) -> str:
        states = pd.Series([r.state.value for r in self.records()]).value_counts().to_dict()
        return (f"ExperimentResults({len(self.params)} params, metric={self.metric!r}, "
                f"runs={states}, best_run={self.best_run})")
