"""``Experiment``: the runs over a hyperparameter space, trained through the runner."""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ..core.config import FitConfig, check_int, check_seed
from ..core.data import is_loader
from ..core.model import Model, compile
from ..core.optim import check_optimizer
from ..core.spec import Spec
from ..sweep import StackedTrainer, SweepPlan, plan
from ..train.callbacks import Callback
from ..train.runner import Runner
from . import files
from .runs import Run, UsedNames, best_value, run_seed, runs_frame, summary_frame
from .space import Range, check_candidates

COMPILE_OPTIONS = ("loss", "optimizer", "learning_rate", "weight_decay", "device")
FIT_OPTIONS = tuple(f.name for f in fields(FitConfig) if f.name not in ("weight_decay", "seed"))
SEARCHES = ("grid", "random", "optuna")
PARALLEL = ("vmap", "auto")
GROUP_SIZE = 64  # runs taken (or Optuna trials asked) at once when ``parallel`` is set
Listener = Callable[[str, "Experiment"], None]


class _Watcher(Callback):
    """Per-epoch hook of a run: reports to the Optuna trial (pruning) and emits "epoch"."""

    def __init__(self, exp: Experiment, run: Run):
        self.exp, self.run, self.pruned = exp, run, False

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        if self.exp._epoch_end(self.run, metrics):
            self.pruned = True
            self.trainer.stop()


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
        search: ``"grid"`` (every combination), ``"random"`` (``n_trials`` seeded draws),
            ``"optuna"`` (TPE), or an ``optuna.samplers`` object.
        n_trials: runs this process adds (random and Optuna; all combinations for a grid).
        epochs: epochs per run (unless ``epochs`` is a searched param).
        metric: the history column that ranks runs, e.g. ``"val_loss"``.
        direction: ``"minimize"`` or ``"maximize"``.
        seed: the experiment's seed; run ``k`` uses :func:`run_seed` ``(seed, k)``. It
            also seeds random draws and, without shared storage, Optuna's sampler (processes
            sharing a study must not all draw the same trials, so there it is left unseeded).
        storage: an Optuna storage (``sqlite:///study.db``, a PostgreSQL/MySQL URL,
            ``journal:///path.log``, or a storage object) shared by processes.
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
        **fit_options: fixed ``fit`` options (batch_size, accuracy...) and fixed compile
            options (loss, optimizer, learning_rate...).

    Attributes:
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
                 pruner: Any = "median", parallel: str | None = None, **fit_options: Any):
        self._init_state()
        self._arguments = dict(build=build, data=data, validation_data=validation_data,
                               params=params, search=search, n_trials=n_trials, epochs=epochs,
                               metric=metric, direction=direction, seed=seed, storage=storage,
                               study_name=study_name, pruner=pruner, parallel=parallel,
                               **fit_options)
        self.parallel, self._stacks = self._check_parallel(parallel, data, validation_data)
        if not (callable(build) or isinstance(build, (Model, nn.Module, Spec))):
            raise ValueError(f"build must be a spec, a compiled Model or a function params -> "
                             f"spec; got {type(build).__name__}")
        self.build, self.data, self.validation_data = build, data, validation_data
        self._is_function = callable(build) and not isinstance(build, (Model, nn.Module, Spec))
        self.seed = check_seed(seed)
        if self.seed is None:
            raise ValueError("seed must be an integer >= 0; got None")
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize'; got {direction!r}")
        self.direction, self.metric, self.storage, self.study_name = (direction, metric,
                                                                      storage, study_name)
        if not isinstance(params, dict) or not params:
            raise ValueError(f"params must be a non-empty dict name -> candidates; got {params!r}")
        self.params = {name: check_candidates(name, c) for name, c in params.items()}
        self.compile_options, fixed_fit = self._split(fit_options, "fit_options")
        self.config = FitConfig.from_options(epochs=check_int("epochs", epochs, 0), **fixed_fit)
        self.routes = self._route()
        self._check_metric()
        self.search, self.n_trials = self._check_search(search, n_trials)
        self._plan = self._grid() if self.search == "grid" else None
        if self.search == "optuna":
            from .study import Tuner

            self._tuner = Tuner(sampler=None if search == "optuna" else search, pruner=pruner,
                                direction=direction, seed=self.seed, epochs=epochs,
                                storage=storage, study_name=study_name)

    def _init_state(self) -> None:
        self._runs: dict[int, Run] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: Runner | StackedTrainer | None = None
        self._tuner: Any = None
        self._best_model: Model | None = None
        self.current: Run | None = None
        self._active = False
        self.parallel: str | None = None
        self._stacks = False  # whether runs are planned into stacked groups
        self.parallel_report: list[str] = []  # per group of runs: which ran how

    # ---------------------------------------------------------------- checks
    @staticmethod
    def _check_parallel(parallel: Any, data: Any, validation_data: Any) -> tuple[Any, bool]:
        if parallel is not None and not (isinstance(parallel, str) and parallel in PARALLEL):
            raise ValueError(f"parallel must be None, 'vmap' or 'auto'; got {parallel!r}")
        loader = is_loader(data) or is_loader(validation_data)
        if parallel == "vmap" and loader:
            raise ValueError("parallel='vmap' trains runs stacked on (x, y) tensors in memory; "
                             "data or validation_data is a DataLoader or Dataset (pass "
                             "parallel='auto' to train such runs one after another, or None)")
        return parallel, parallel is not None and not loader

    def _split(self, options: dict, argname: str) -> tuple[dict, dict]:
        compile_options, fit = {}, {}
        for name, value in options.items():
            if name in COMPILE_OPTIONS:
                compile_options[name] = value
            elif name in FIT_OPTIONS:
                fit[name] = value
            else:
                raise ValueError(f"{argname}: {name!r} is neither a compile option "
                                 f"({', '.join(COMPILE_OPTIONS)}) nor a fit option "
                                 f"({', '.join(FIT_OPTIONS)})")
        return compile_options, fit

    def _route(self) -> dict[str, str]:
        """Where each param goes: ``"compile"``, ``"fit"`` or ``"build"``; checks values."""
        routes = {}
        for name, candidates in self.params.items():
            values = candidates if isinstance(candidates, list) else [candidates.low]
            if name in COMPILE_OPTIONS:
                routes[name] = "compile"
                if name == "optimizer":
                    for value in values:
                        check_optimizer(value)
            elif name in FIT_OPTIONS:
                routes[name] = "fit"
                for value in values:
                    self.config.replace(**{name: value})
            else:
                routes[name] = "build"
        build_names = [n for n, r in routes.items() if r == "build"]
        if build_names and not self._is_function:
            raise ValueError(f"params: {build_names[0]!r} is neither a compile option "
                             f"({', '.join(COMPILE_OPTIONS)}) nor a fit option "
                             f"({', '.join(FIT_OPTIONS)}), and build is not a function "
                             "params -> spec that could take it")
        if self._is_function:
            probe = UsedNames({n: (c[0] if isinstance(c, list) else c.low)
                                for n, c in self.params.items()})
            self.build(probe)
            unused = [n for n in build_names if n not in probe.used]
            if unused:
                raise ValueError(f"params: {unused[0]!r} is neither a compile option, a fit "
                                 "option, nor a name that build(params) reads")
        return routes

    def _check_metric(self) -> None:
        if self.metric.startswith("val_") and self.validation_data is None:
            raise ValueError(f"metric {self.metric!r} needs validation_data")
        accuracy = self.config.accuracy or self.params.get("accuracy") == [True]
        if self.metric.endswith("accuracy") and not accuracy:
            raise ValueError(f"metric {self.metric!r} needs accuracy=True")

    def _check_search(self, search: Any, n_trials: Any) -> tuple[str, int | None]:
        if isinstance(search, str) and search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)} or an "
                             f"optuna.samplers object; got {search!r}")
        kind = search if isinstance(search, str) else "optuna"
        if kind == "grid":
            if n_trials is not None:
                raise ValueError(f"n_trials is for search='random' or 'optuna' (a grid runs "
                                 f"every combination); got {n_trials!r}")
            if self.storage is not None:
                raise ValueError("storage is for search='optuna'")
            return kind, None
        if kind == "random" and self.storage is not None:
            raise ValueError("storage is for search='optuna'")
        return kind, check_int("n_trials", n_trials, 1)

    def _grid(self) -> list[dict]:
        names = list(self.params)
        values = [c.values() if isinstance(c, Range) else c for c in self.params.values()]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    # ---------------------------------------------------------------- planning
    @property
    def total(self) -> int:
        """Runs this process adds (all grid points, or ``n_trials``)."""
        return len(self._plan) if self._plan is not None else self.n_trials

    def _added(self) -> int:
        return sum(1 for r in self._runs.values() if r.state != "stopped")

    def _next_runs(self) -> list[Run]:
        """The next group of runs to train: one, or up to ``GROUP_SIZE`` when stacking
        (Optuna then holds that many trials open at once)."""
        size = min(GROUP_SIZE if self._stacks else 1, self.total - self._added())
        if self.search == "optuna":
            runs = []
            for _ in range(size):
                trial, values = self._tuner.ask(self.params)
                run = Run(trial.number, values, run_seed(self.seed, trial.number), trial=trial)
                trial.set_user_attr("seed", run.seed)
                runs.append(run)
            return runs
        numbers = [i for i in range(self.total)
                   if i not in self._runs or self._runs[i].state == "stopped"][:size]
        return [Run(number, self._values(number), run_seed(self.seed, number))
                for number in numbers]

    def _values(self, number: int) -> dict:
        """The params of grid or random run ``number``."""
        if self._plan is not None:
            return dict(self._plan[number])
        rng = np.random.default_rng([self.seed, number])
        return {n: c.draw(rng) if isinstance(c, Range) else c[int(rng.integers(len(c)))]
                for n, c in self.params.items()}

    def prepare_run(self, run: int | None = None, params: dict | None = None,
                    seed: int | None = None) -> tuple[Model, FitConfig]:
        """The freshly built model and the config of a run (the best one by default), so
        it can be trained again alone: ``xb.fit(model, data, config, validation_data=...)``.

        Example:
            >>> model, config = exp.prepare_run(3)  # doctest: +SKIP
            >>> xb.fit(model, (x, y), config, verbose=False).history  # doctest: +SKIP
        """
        if self.build is None:
            raise ValueError("a loaded experiment cannot build models; create the Experiment "
                             "again with its build function and data")
        if params is None:
            found = self._find(run)
            params, seed = found.params, found.seed
        seed = run_seed(self.seed, run or 0) if seed is None else seed
        compile_kw = {**self.compile_options}
        fit_kw = {}
        for name, value in params.items():
            route = self.routes.get(name, "build")
            if route == "compile":
                compile_kw[name] = value
            elif route == "fit":
                fit_kw[name] = value.tolist() if hasattr(value, "tolist") else value
        built = self.build(dict(params)) if self._is_function else self.build
        return self._model(built, compile_kw, seed), self.config.replace(seed=seed, **fit_kw)

    @staticmethod
    def _model(built: Any, compile_kw: dict, seed: int) -> Model:
        if isinstance(built, Model):
            base = {"loss": built.loss_function, "optimizer": built.optimizer,
                    "learning_rate": built.learning_rate, "weight_decay": built.weight_decay,
                    "device": built.device}
            if built.spec is not None:
                return compile(built.spec, seed=seed, **{**base, **compile_kw})
            # a torch module: the same layers (a deep copy), fresh weights from the run's seed
            model = compile(copy.deepcopy(built.module), input_shape=built.input_shape,
                            **{**base, **compile_kw})
            return model.reset_weights(seed)
        if isinstance(built, nn.Module):  # never train the caller's module itself
            return compile(copy.deepcopy(built), **compile_kw).reset_weights(seed)
        return compile(built, seed=seed, **compile_kw)

    def _find(self, run: int | None) -> Run:
        runs = {r.run: r for r in self._all_runs()}
        if run is None:
            best = self._best()
            if best is None:
                raise ValueError("no finished run yet: pass run=")
            return best
        if run not in runs:
            raise ValueError(f"run must be one of {sorted(runs)}; got {run!r}")
        return runs[run]

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

        self._stop.clear()
        with tqdm(total=self.total, initial=self._added(), desc="runs", unit="run") as bar:
            def advance(event: str, exp: Experiment) -> None:
                if event == "run_end":
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
            if self.build is None:
                raise ValueError("a loaded experiment cannot train; build it again")
            self._stop.clear()
            self._active = True
            self._thread = threading.Thread(target=self._loop, name="exburn-experiment",
                                            daemon=True)
            self._thread.start()
        return True

    def stop(self) -> None:
        """Stop after the batch in progress; the run (every run of a stacked group) is
        recorded as ``"stopped"`` and a later :meth:`run`/:meth:`start` trains it again."""
        with self._lock:
            self._stop.set()
            if self._runner is not None:
                self._runner.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`start`'s thread; True when nothing trains afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _loop(self) -> None:
        self._emit("start")
        try:
            while not self._stop.is_set() and self._added() < self.total:
                self._execute(self._next_runs())
        finally:
            self._active = False
            self._emit("end")

    def _execute(self, runs: list[Run]) -> None:
        """Train one group of runs: stacked groups (``parallel``), the rest one by one."""
        if not self._stacks:
            for run in runs:
                self._train(run)
            return
        prepared: dict[int, tuple[Model, FitConfig]] = {}
        alone: dict[int, str] = {}
        for i, run in enumerate(runs):
            try:
                prepared[i] = self.prepare_run(params=run.params, seed=run.seed)
            except Exception as exc:  # _train records the failure
                alone[i] = f"it cannot be built ({type(exc).__name__}: {exc})"
        built = sorted(prepared)
        result = (plan([prepared[i][0] for i in built], [prepared[i][1] for i in built])
                  if built else SweepPlan())
        groups = [[built[k] for k in group] for group in result.groups]
        alone.update({built[k]: why for k, why in result.sequential.items()})
        by_run = SweepPlan([[runs[i].run for i in g] for g in groups],
                           {runs[i].run: why for i, why in sorted(alone.items())}, result.keys)
        self.parallel_report.append(f"{len(runs)} runs (members are run numbers):\n"
                                    + by_run.describe())
        for group in groups:
            self._train_stacked([runs[i] for i in group], [prepared[i] for i in group])
        for i in sorted(alone):
            self._train(runs[i], prepared.get(i))

    def _train(self, run: Run, prepared: tuple[Model, FitConfig] | None = None) -> None:
        """Train one run through a :class:`Runner` (``prepared``: its model and config)."""
        t0 = time.perf_counter()
        with self._lock:
            self._runs[run.run] = self.current = run
        watcher = _Watcher(self, run)
        try:
            model, config = prepared or self.prepare_run(params=run.params, seed=run.seed)
            run.model = model
            runner = Runner(model, self.data, config, validation_data=self.validation_data,
                            callbacks=[watcher])
            with self._lock:
                if self._stop.is_set():
                    raise _Stopped
                self._runner = runner
            self._emit("run_start")  # before the run's own "epoch" events
            runner.start()
            if self._stop.is_set():  # stop() came between the two: it found no run to stop
                runner.stop()
            try:
                runner.wait()
            except KeyboardInterrupt:  # Ctrl-C in a blocking run(): stop, keep the results
                self.stop()
                runner.wait()
            self._end(run, runner, watcher)
        except _Stopped:
            run.state = "stopped"
        except Exception as exc:  # a run that cannot start is recorded, the rest go on
            run.state, run.message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._runner = None
            self._finalise(run, time.perf_counter() - t0)
        self._emit("run_end")

    def _train_stacked(self, runs: list[Run], prepared: list[tuple[Model, FitConfig]]) -> None:
        """Train one :func:`~exburn_nb.sweep` group as one stacked ensemble, in this
        thread; each run reports its epochs (Optuna, listeners) and ends as it would alone."""
        t0 = time.perf_counter()
        with self._lock:
            for run, (model, _) in zip(runs, prepared, strict=True):
                run.model = model
                self._runs[run.run] = run
            self.current = runs[0]
        pruned: set[int] = set()
        error = None
        interrupted = False
        try:
            trainer = StackedTrainer([m for m, _ in prepared], [c for _, c in prepared],
                                     self.data, self.validation_data)

            def epoch_end(member: int, metrics: dict) -> None:
                if self._epoch_end(runs[member], metrics):
                    pruned.add(member)
                    trainer.stop_member(member)

            trainer.on_epoch_end(epoch_end)
            with self._lock:
                self._runner = trainer
                if self._stop.is_set():  # it then ends before its first batch
                    trainer.stop()
            for _ in runs:
                self._emit("run_start")
            try:
                trainer.run()
            except KeyboardInterrupt:  # Ctrl-C in a blocking run(): stop, keep the results
                self.stop()
                interrupted = True
        except Exception as exc:  # the whole group fails, as each run alone would
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._runner = None
        seconds = time.perf_counter() - t0
        for m, run in enumerate(runs):
            reason = trainer.stop_reasons[m] if error is None else None
            own = [text.split(": ", 1)[1] for text in ([] if error else trainer.messages)
                   if text.startswith(f"member {m}: ")]
            if error is not None:
                run.state, run.message = "failed", error
            elif m in pruned or reason == "pruned":
                run.state = "pruned"
            elif reason == "non-finite":
                run.state = "failed"
            elif reason == "stopped" or interrupted:
                run.state = "stopped"
            else:
                run.state = "finished"
            if own and not run.message:
                run.message = own[-1]
        for run in runs:
            self._finalise(run, seconds)
            self._emit("run_end")

    def _epoch_end(self, run: Run, metrics: dict) -> bool:
        """Report an epoch of ``run`` to its Optuna trial and emit ``"epoch"``; True when
        the pruner says stop."""
        prune = False
        if run.trial is not None:
            rows = run.history_rows()
            prune = self._tuner.report(run.trial, len(rows), metrics.get(self.metric), rows)
        self._emit("epoch")
        return prune

    def _finalise(self, run: Run, seconds: float) -> None:
        """Record an ended run: its seconds and rows, its trial's end, the best model."""
        run.seconds = seconds
        run.rows = run.history_rows()
        if self._tuner is not None and run.trial is not None:
            best = best_value(run.rows, self.metric, self.direction)
            self._tuner.tell(run.trial, run.state, best and best[0],
                             {"state": run.state, "message": run.message,
                              "seconds": run.seconds, "history": run.rows})
        self._keep_if_best(run)

    def _end(self, run: Run, runner: Runner, watcher: _Watcher) -> None:
        trainer = runner.trainer
        if runner.state == "error":
            run.state = "failed"
            run.message = f"{type(runner.error).__name__}: {runner.error}"
        elif watcher.pruned:
            run.state = "pruned"
        elif trainer.stop_reason == "non-finite":
            run.state = "failed"
            run.message = trainer.messages[-1] if trainer.messages else "non-finite loss"
        elif trainer.stop_reason in ("stopped", "interrupted"):
            run.state = "stopped"
        else:
            run.state = "finished"
        if trainer.messages and not run.message:
            run.message = trainer.messages[-1]

    def _keep_if_best(self, run: Run) -> None:
        model, run.model = run.model, None
        if run.state == "finished" and self._best() is run:
            self._best_model = model

    # ---------------------------------------------------------------- results
    def _all_runs(self) -> list[Run]:
        runs = dict(self._runs)
        if self._tuner is not None:
            for t in self._tuner.trials():
                if t["run"] not in runs:
                    runs[t["run"]] = Run(**t)
        return [runs[k] for k in sorted(runs)]

    def _best(self) -> Run | None:
        scored = [(s[0], r.run, r) for r in self._all_runs() if r.state == "finished"
                  and (s := best_value(r.history_rows(), self.metric, self.direction))]
        if not scored:
            return None
        sign = 1 if self.direction == "minimize" else -1
        return min(scored, key=lambda t: (sign * t[0], t[1]))[2]

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run and epoch: run, the params, epoch, every history column, state
        (running / finished / pruned / failed / stopped). A run with no epoch has one row."""
        return runs_frame(self._all_runs(), list(self.params))

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run: params, state, best metric and its epoch, final metrics,
        epochs, seconds, seed and message."""
        return summary_frame(self._all_runs(), list(self.params), self.metric, self.direction)

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
        """The trained model of the best run, when this process trained (or loaded) it."""
        run = self._best()
        return self._best_model if run is not None and run.run in self._runs else None

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
        if self.build is None:
            raise ValueError("a loaded experiment cannot be rebuilt")
        return Experiment(**{**self._arguments, **changes})

    # ---------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write ``runs.csv`` (``runs.parquet`` with pyarrow), ``experiment.json`` and
        ``best_model.exburn``; never pickle.

        Example:
            >>> exp.save("runs/digits"); again = xb.Experiment.load("runs/digits")  # doctest: +SKIP
        """
        return files.save(self, Path(directory))

    @classmethod
    def load(cls, directory: str | Path) -> Experiment:
        """An experiment read back from :meth:`save` (results only: it cannot train).

        Example:
            >>> exp = xb.Experiment.load("runs/digits"); exp.summary  # doctest: +SKIP
        """
        return files.load(cls, Path(directory))


class _Stopped(Exception):
    """The experiment was stopped before this run began."""
