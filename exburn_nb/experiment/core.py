"""``Experiment``: search a hyperparameter space, train the runs, gather the results.

The parts: :class:`~exburn_nb.experiment.params.ParamSpace` (routing, checks, grid and
random draws, one run's model and config), the Optuna adapter
(:class:`~exburn_nb.experiment.study.Tuner`), :class:`~exburn_nb.experiment.execution.Execution`
(the one way groups of runs train) and
:class:`~exburn_nb.experiment.results.ExperimentResults` (runs, summary, best; what
:meth:`Experiment.load` returns).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..base.checks import check_int, check_seed
from ..base.vocabulary import METRICS, Event, RunState, run_metrics
from ..core.config import FitConfig
from ..core.data import is_loader
from ..core.model import Model
from ..sweep import SweepPlan, plan
from ..sweep.planning import memory_budget_bytes
from .execution import Execution
from .files import PARALLEL, SEARCHES, jsonable
from .params import ParamSpace
from .results import ExperimentResults
from .runs import Run, best_value, check_metric, run_seed
from .study import warn_parallel_sqlite

TOTAL_POLL_S = 1.0  # with total_trials, how often a waiting process reads the study again
GROUP_SIZE = 64  # runs taken (or Optuna trials asked) at once when ``parallel`` is set
Listener = Callable[[str, "Experiment"], None]


class Experiment:
    """Runs ``fit`` once per point of a hyperparameter space and gathers the results.

    Args:
        build: a spec, a compiled :class:`Model` (rebuilt per run with fresh weights from
            the run's seed), or a function ``params -> spec | Model`` for architecture
            parameters (it receives the whole params dict and reads its own names).
        data: training data, as for ``xb.fit``.
        validation_data: evaluated after every epoch (needed for ``val_*`` metrics).
        params: name -> a list of candidates or an ``xb.space`` range. ``compile`` options
            (learning_rate, optimizer, weight_decay, loss) go to compile, ``fit`` options
            (batch_size, epochs, lr_schedule, clip_norm, ...) go to fit, other names go to
            ``build`` (a function); a name that fits none is a ``ValueError``.
        search: ``"grid"`` (every combination; more than
            :data:`~exburn_nb.experiment.params.MAX_GRID_RUNS` (100,000) is refused, naming
            the grid's size), ``"random"`` (``n_trials`` seeded draws),
            ``"optuna"`` (TPE), or an ``optuna.samplers`` object.
        n_trials: runs this process adds (random and Optuna; all combinations for a grid);
            with ``total_trials`` it may be None (no limit of its own).
        epochs: epochs per run (unless ``epochs`` is a searched param).
        metric: the history column that ranks runs, one the runs compute: ``"loss"``,
            ``"lr"``, ``"val_loss"`` (with validation_data), ``"accuracy"``,
            ``"val_accuracy"`` (with ``accuracy=True``).
        direction: ``"minimize"`` or ``"maximize"``.
        seed: the experiment's seed; run ``k`` uses :func:`run_seed` ``(seed, k)``. It
            also seeds random draws and, without shared storage, Optuna's sampler (processes
            sharing a study must not all draw the same trials, so there it is left unseeded).
        storage: an Optuna storage shared by processes, as Optuna advises: the journal
            file ``journal:///path/study.log`` for processes on one machine, a database
            server such as ``postgresql://user@host/dbname`` for several machines;
            ``sqlite:///study.db`` keeps a study for one process (it warns with
            ``total_trials``: SQLite locks the whole file per writer and races on a new
            schema); or an Optuna storage object.
        study_name: the study's name in ``storage``; experiments naming the same study
            join it.
        pruner: ``"median"``, ``"hyperband"``, ``None`` or an ``optuna.pruners`` object.
        parallel: ``None`` (one run after another), ``"vmap"`` (up to 64 runs at a time
            are planned with :func:`exburn_nb.sweep`; runs sharing the architecture,
            loss, optimizer, epochs and batch size train together as one stacked
            ensemble, the same computation as their own ``fit``; the others train alone;
            needs ``(x, y)`` data in memory) or ``"auto"`` (as ``"vmap"``, but one run
            after another when the data is a DataLoader). ``parallel_report`` says which
            ran how. Runs of one stacked group share its wall time as their ``seconds``.
        memory_budget: with ``parallel``, the bytes one stacked group may use (each run's
            parameters, gradients, optimizer state and one batch's activations):
            ``"auto"`` (256 MiB, ``xb.sweep.planning.MEMORY_BUDGET``), a number of bytes,
            or None (no limit). Larger groups are split; a run that does not fit twice
            trains alone.
        heartbeat: with shared ``storage`` (RDB or journal), seconds between the
            heartbeats of this process's open trials (Optuna's ``heartbeat_interval``;
            None: off). A trial whose process died (killed, out of memory) is failed
            once it has had no heartbeat for ``grace_period`` seconds (default twice
            ``heartbeat``) by any process of the study, and retried once.
        total_trials: with ``search="optuna"``, stop once the study holds this many
            completed or pruned trials, counted over every process that shares it
            (Optuna's ``MaxTrialsCallback``). While the trials still running could reach
            the total, this process waits (polling the study each second) rather than ask
            more; a dead process's trial is failed by the heartbeat and retried here.
            Workers asking at the same moment may each add one trial past the total.
        **fit_options: fixed ``fit`` options (batch_size, accuracy...) and fixed compile
            options (loss, optimizer, learning_rate...); ``verbose=False``, as for ``fit``,
            quiets :meth:`run`'s progress bar over the runs.

    Attributes:
        results: the :class:`ExperimentResults` this experiment fills (``runs``,
            ``summary``, ``best``... are its own).
        current: the run in progress (or the last one): ``current.model.history`` is its
            live history while it trains, readable from any thread; ``exp.runs`` includes
            it with state ``"running"``.
        parallel_report: with ``parallel`` set, one text per group of runs taken at once:
            which runs trained stacked together, and why each other one trained alone.

    Example:
        >>> exp = Experiment(spec, (x, y), params={"learning_rate": [1e-3, 1e-2]},
        ...                  epochs=3, metric="loss")  # doctest: +SKIP
        >>> exp.run(); exp.best  # doctest: +SKIP
        {'learning_rate': 0.01}
        >>> fast = Experiment(spec, (x, y), params={"learning_rate": [1e-3, 3e-3, 1e-2]},
        ...                   epochs=3, metric="loss", parallel="vmap")  # doctest: +SKIP
        >>> print(fast.run().parallel_report[0])  # doctest: +SKIP
        3 runs (members are run numbers):
        stacked group 1: members [0, 1, 2] (3 at once; shared loss=cross_entropy, ...)
    """

    def __init__(self, build: Any, data: Any, validation_data: Any = None, params:
                 dict | None = None, search: Any = "grid", n_trials: int | None = None,
                 epochs: int = 10, metric: str = "val_loss", direction: str = "minimize",
                 seed: int = 0, storage: Any = None, study_name: str | None = None,
                 pruner: Any = "median", parallel: str | None = None,
                 memory_budget: Any = "auto", heartbeat: float | None = 60.0,
                 grace_period: float | None = None, total_trials: int | None = None,
                 **fit_options: Any):
        self._arguments = dict(build=build, data=data, validation_data=validation_data,
                               params=params, search=search, n_trials=n_trials, epochs=epochs,
                               metric=metric, direction=direction, seed=seed, storage=storage,
                               study_name=study_name, pruner=pruner, parallel=parallel,
                               memory_budget=memory_budget, heartbeat=heartbeat,
                               grace_period=grace_period, total_trials=total_trials,
                               **fit_options)
        self.verbose = fit_options.pop("verbose", True)  # as fit's: the progress display
        if not isinstance(self.verbose, bool):
            raise ValueError(f"verbose must be True or False; got {self.verbose!r}")
        self.parallel, self._stacks = _check_parallel(parallel, data, validation_data)
        self.memory_budget = memory_budget_bytes(memory_budget)
        self.space = ParamSpace(build, params, epochs, **fit_options)
        self.data, self.validation_data = data, validation_data
        self.seed = check_seed(seed)
        if self.seed is None:
            raise ValueError("seed must be an integer >= 0; got None")
        self.direction, self.metric, self.storage, self.study_name = (direction, metric,
                                                                      storage, study_name)
        self._check_metric()
        self.search, self.n_trials = self._check_search(search, n_trials, total_trials)
        self.total_trials = None if total_trials is None else check_int("total_trials",
                                                                        total_trials, 1)
        if self.total_trials is not None:
            warn_parallel_sqlite(storage)
        self._plan = self.space.grid() if self.search == "grid" else None
        self.results = ExperimentResults(  # checks the direction
            self.params, metric, direction, settings=self._settings(),
            study_runs=self._study_runs if self.search == "optuna" else None)
        self._tuner: Any = None
        if self.search == "optuna":
            from .study import Tuner

            self._tuner = Tuner(sampler=None if search == "optuna" else search, pruner=pruner,
                                direction=direction, seed=self.seed, epochs=epochs,
                                storage=storage, study_name=study_name, heartbeat=heartbeat,
                                grace_period=grace_period)
        self.parallel_report = self.results.parallel_report  # per group of runs: which ran how
        self._execution = Execution(data, validation_data, on_run_start=self._run_started,
                                    on_epoch_end=self._epoch_ended, on_run_end=self._run_ended)
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._active = False
        self.current: Run | None = None

    # ---------------------------------------------------------------- checks
    def _check_metric(self) -> None:
        """``metric`` is one of the metrics every run computes (a "did you mean" else)."""
        available = run_metrics(self.validation_data is not None, self.config.accuracy)
        if self.metric in METRICS and self.metric not in available:
            raise ValueError(f"metric {self.metric!r} needs " + (
                "validation_data" if self.validation_data is None and self.metric.startswith(
                    "val_") else "accuracy=True"))
        check_metric(self.metric, available)

    def _check_search(self, search: Any, n_trials: Any,
                      total_trials: Any) -> tuple[str, int | None]:
        if isinstance(search, str) and search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)} or an "
                             f"optuna.samplers object; got {search!r}")
        kind = search if isinstance(search, str) else "optuna"
        if kind != "optuna" and self.storage is not None:
            raise ValueError("storage is for search='optuna'")
        if total_trials is not None:
            if kind != "optuna":
                raise ValueError(f"total_trials is for search='optuna' (a study that "
                                 f"processes share); got search={search!r}")
            if n_trials is None:
                return kind, None
        if kind == "grid":
            if n_trials is not None:
                raise ValueError(f"n_trials is for search='random' or 'optuna' (a grid runs "
                                 f"every combination); got {n_trials!r}")
            return kind, None
        return kind, check_int("n_trials", n_trials, 1)

    def _settings(self) -> dict:
        """How this experiment is set up, as JSON values (saved with its results)."""
        return {"search": self.search, "n_trials": self.n_trials,
                "total_trials": self.total_trials, "seed": self.seed,
                "storage": self.storage if isinstance(self.storage, str) else None,
                "study_name": self.study_name, "routes": self.routes,
                "parallel": self.parallel, "fit_config": self.config.to_dict(),
                "compile_options": jsonable(self.compile_options)}

    # ---------------------------------------------------------------- the space
    @property
    def params(self) -> dict:
        """name -> candidates (lists or ``xb.space`` ranges)."""
        return self.space.params

    @property
    def routes(self) -> dict[str, str]:
        """Where each param goes: ``"compile"``, ``"fit"`` or ``"build"``."""
        return self.space.routes

    @property
    def config(self) -> FitConfig:
        """The fit config every run starts from (the fixed fit options applied)."""
        return self.space.config

    @property
    def compile_options(self) -> dict:
        """The fixed compile options."""
        return self.space.compile_options

    @property
    def total(self) -> int | None:
        """Runs this process adds at most: all grid points, or ``n_trials`` (None: no limit
        of its own, only the study's ``total_trials``)."""
        return len(self._plan) if self._plan is not None else self.n_trials

    @property
    def _more_of_its_own(self) -> bool:
        """Whether this process has runs of its own left to add (see :attr:`total`)."""
        return self.total is None or self.added < self.total

    @property
    def added(self) -> int:
        """Runs this process has added so far (a stopped run is trained again later)."""
        return len(self.added_runs)

    @property
    def added_runs(self) -> list[int]:
        """The numbers of the runs this process has added so far (in a shared study, the
        other processes' runs are not among them)."""
        return sorted(n for n, r in self.results.local_runs().items()
                      if r.state != RunState.STOPPED)

    def _next_runs(self, room: int | None = None) -> list[Run]:
        """The next runs to train: one, or up to ``GROUP_SIZE`` when stacking (Optuna then
        holds that many trials open at once), and at most ``room``."""
        size = min(GROUP_SIZE if self._stacks else 1,
                   GROUP_SIZE if self.total is None else self.total - self.added,
                   GROUP_SIZE if room is None else room)
        if self._tuner is not None:
            runs = []
            try:
                for _ in range(size):
                    trial, values = self._tuner.ask(self.params)
                    run = Run(trial.number, values, run_seed(self.seed, trial.number),
                              trial=trial)
                    runs.append(run)
                    trial.set_user_attr("seed", run.seed)
            except KeyboardInterrupt:  # the trials asked so far end, none stays running
                self._execution.interrupt(runs)
                return []
            return runs
        done = self.results.local_runs()
        numbers = [i for i in range(self.total)
                   if i not in done or done[i].state == RunState.STOPPED][:size]
        return [Run(n, dict(self._plan[n]) if self._plan is not None
                    else self.space.draw(self.seed, n), run_seed(self.seed, n))
                for n in numbers]

    def prepare_run(self, run: int | None = None, params: dict | None = None,
                    seed: int | None = None) -> tuple[Model, FitConfig]:
        """The freshly built model and the config of a run (the best one by default), so
        it can be trained again alone: ``xb.fit(model, data, config, validation_data=...)``.

        Example:
            >>> model, config = exp.prepare_run(3)  # doctest: +SKIP
            >>> xb.fit(model, (x, y), config, verbose=False).history  # doctest: +SKIP
        """
        if params is None:
            found = self.results.get(run)
            params, seed = found.params, found.seed
        seed = run_seed(self.seed, run or 0) if seed is None else seed
        return self.space.prepare(params, seed)

    # ---------------------------------------------------------------- running
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(event, experiment)`` on ``"start"``, ``"run_start"``, ``"epoch"``,
        ``"run_end"`` and ``"end"`` (in the thread that trains)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``."""
        self._listeners.remove(fn)

    def _emit(self, event: str) -> None:
        for fn in list(self._listeners):
            fn(event, self)

    @property
    def running(self) -> bool:
        """Whether :meth:`start`'s thread is training (False from its ``"end"`` event on)."""
        return self._active

    def run(self) -> Experiment:
        """Train the remaining runs here, with one progress bar over runs."""
        if self.running:
            raise RuntimeError("the experiment is already running in the background")
        from tqdm.auto import tqdm

        self._execution.clear()
        with tqdm(total=self.total, initial=self.added, desc="runs", unit="run",
                  disable=not self.verbose) as bar:
            def advance(event: str, exp: Experiment) -> None:
                if event == Event.RUN_END:
                    bar.update(1)
            self.add_listener(advance)
            try:
                self._loop()
            finally:
                self.remove_listener(advance)
        return self

    def start(self) -> bool:
        """Train the remaining runs in a background thread; False if already running."""
        with self._lock:
            if self.running:
                return False
            self._execution.clear()
            self._active = True
            self._thread = threading.Thread(target=self._loop, name="exburn-experiment",
                                            daemon=True)
            self._thread.start()
        return True

    def stop(self) -> None:
        """Stop after the batch in progress; the run (every run of a stacked group) is
        recorded as ``"stopped"`` and a later :meth:`run`/:meth:`start` trains it again."""
        self._execution.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`start`'s thread; True when nothing trains afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _loop(self) -> None:
        self._emit(Event.START)
        try:
            while not self._execution.stopping and self._more_of_its_own:
                room = None
                if self.total_trials is not None:
                    room = self._tuner.room(self.total_trials)
                    if room is None:  # the study holds its total
                        break
                    if room == 0:  # the trials running elsewhere may reach it
                        self._execution.pause(TOTAL_POLL_S)
                        continue
                self._execute(self._next_runs(room))
        finally:
            self._active = False
            self._emit(Event.END)

    def _execute(self, runs: list[Run]) -> None:
        """Prepare ``runs``, group them (stacked groups with ``parallel``, else one by
        one) and train each group; a run that cannot be built fails alone."""
        prepared: dict[int, tuple[Model, FitConfig]] = {}
        errors: dict[int, Exception] = {}
        try:
            for i, run in enumerate(runs):
                try:
                    prepared[i] = self.space.prepare(run.params, run.seed)
                except Exception as exc:  # recorded as the run's failure
                    errors[i] = exc
            groups = self._group(runs, prepared, errors) if self._stacks else \
                [[i] for i in range(len(runs))]
            for group in groups:
                if group[0] in errors:
                    self._execution.fail(runs[group[0]], errors[group[0]])
                else:  # a trained group's models are let go (the best one is kept)
                    self._execution.train([runs[i] for i in group],
                                          [prepared.pop(i) for i in group])
        except KeyboardInterrupt:  # Ctrl-C while building: no run stays "running"
            self._execution.interrupt(runs)

    def _group(self, runs: list[Run], prepared: dict[int, tuple[Model, FitConfig]],
               errors: dict[int, Exception]) -> list[list[int]]:
        """Plan stacked groups (indices into ``runs``), then one group per run left alone;
        reports which ran how in :attr:`parallel_report`."""
        built = sorted(prepared)
        result = (plan([prepared[i][0] for i in built], [prepared[i][1] for i in built],
                       self.memory_budget) if built else SweepPlan())
        groups = [[built[k] for k in group] for group in result.groups]
        alone = {i: f"it cannot be built ({type(exc).__name__}: {exc})"
                 for i, exc in errors.items()}
        alone.update({built[k]: why for k, why in result.sequential.items()})
        by_run = SweepPlan([[runs[i].run for i in g] for g in groups],
                           {runs[i].run: why for i, why in sorted(alone.items())}, result.keys)
        self.parallel_report.append(f"{len(runs)} runs (members are run numbers):\n"
                                    + by_run.describe())
        return groups + [[i] for i in sorted(alone)]

    # ---------------------------------------------------------------- execution hooks
    def _run_started(self, run: Run) -> None:
        self.results.add(run)
        self.current = run
        self._emit(Event.RUN_START)

    def _epoch_ended(self, run: Run, metrics: dict) -> bool:
        """Report an epoch to the run's Optuna trial and emit ``"epoch"``; True when the
        pruner says stop."""
        prune = False
        if run.trial is not None:
            rows = run.history_rows()
            prune = self._tuner.report(run.trial, len(rows), metrics.get(self.metric), rows)
        self._emit(Event.EPOCH)
        return prune

    def _run_ended(self, run: Run) -> None:
        """Tell the run's trial how it ended, keep its model if it is the best, emit."""
        if run.trial is not None:
            best = best_value(run.rows, self.metric, self.direction)
            self._tuner.tell(run.trial, run.state, best and best[0],
                             {"state": run.state.value, "message": run.message,
                              "seconds": run.seconds, "history": run.rows})
        model, run.model = run.model, None
        self.results.keep_if_best(run, model)
        self._emit(Event.RUN_END)

    def _study_runs(self) -> list[Run]:
        return [Run(**trial) for trial in self._tuner.trials()]

    # ---------------------------------------------------------------- results
    @property
    def runs(self) -> pd.DataFrame:
        """One row per run and epoch (see :attr:`ExperimentResults.runs`)."""
        return self.results.runs

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run (see :attr:`ExperimentResults.summary`)."""
        return self.results.summary

    @property
    def best(self) -> dict | None:
        """The params of the best finished run (None before one finishes)."""
        return self.results.best

    @property
    def best_run(self) -> int | None:
        """The number of the best finished run."""
        return self.results.best_run

    @property
    def best_model(self) -> Model | None:
        """The trained model of the best run, when this process trained it."""
        return self.results.best_model

    @property
    def study(self) -> Any:
        """The Optuna study (``search="optuna"``), else None."""
        return self._tuner.study if self._tuner is not None else None

    def importances(self) -> dict[str, float]:
        """Optuna's parameter importances (empty before two trials complete, or without
        Optuna)."""
        return self._tuner.importances() if self._tuner is not None else {}

    def replace(self, **changes: Any) -> Experiment:
        """A new experiment with the same arguments except ``changes`` (e.g. a worker's
        ``storage``, ``study_name`` and ``n_trials``)."""
        return Experiment(**{**self._arguments, **changes})

    # ---------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write the results (``runs.csv`` or ``runs.parquet``, ``experiment.json``,
        ``best_model.exburn``); never pickle.

        Example:
            >>> exp.save("runs/digits"); again = xb.Experiment.load("runs/digits")  # doctest: +SKIP
        """
        return self.results.save(directory)

    @staticmethod
    def load(directory: str | Path) -> ExperimentResults:
        """The :class:`ExperimentResults` saved by :meth:`save`: runs, summary, best,
        best model, histories, settings (it trains nothing; build an ``Experiment`` for that).

        Example:
            >>> results = xb.Experiment.load("runs/digits"); results.summary  # doctest: +SKIP
        """
        return ExperimentResults.load(directory)


def _check_parallel(parallel: Any, data: Any, validation_data: Any) -> tuple[Any, bool]:
    """``parallel`` checked, and whether runs are planned into stacked groups."""
    if parallel is not None and not (isinstance(parallel, str) and parallel in PARALLEL):
        raise ValueError(f"parallel must be None, 'vmap' or 'auto'; got {parallel!r}")
    loader = is_loader(data) or is_loader(validation_data)
    if parallel == "vmap" and loader:
        raise ValueError("parallel='vmap' trains runs stacked on (x, y) tensors in memory; "
                         "data or validation_data is a DataLoader or Dataset (pass "
                         "parallel='auto' to train such runs one after another, or None)")
    return parallel, parallel is not None and not loader
