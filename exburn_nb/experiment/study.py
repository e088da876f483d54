"""The Optuna side of an :class:`~exburn_nb.experiment.Experiment` (``search="optuna"``).

Each run is a trial asked from one study (in memory, or in shared storage that several
processes or machines fill together). Every epoch reports the metric to the trial (its
intermediate values) and stores the epoch rows as the trial's user attribute ``history``,
so a process that did not run a trial can still draw its curves. Optuna is optional:
``pip install 'exburn_nb[tune]'``.

Which storage, as Optuna's own FAQ and ``RDBStorage`` docs advise:

- one process: nothing (in memory), or ``sqlite:///study.db`` to keep the study;
- several processes on **one machine**: the journal file, ``journal:///path/study.log``
  (``JournalFileBackend``: appends under a file lock, no server);
- several **machines**: a database server, e.g.
  ``postgresql://user:password@host/dbname`` (PostgreSQL; ``pip install psycopg2-binary``).

SQLite is not for parallel workers (:func:`warn_parallel_sqlite`): every writer locks the
whole file ("database is locked", optuna #820), it has no ``SELECT ... FOR UPDATE``
(#4002), and workers creating a fresh file together race on its schema (#1092, #4621).

With shared storage, a :class:`Heartbeat` keeps this process's open trials alive and fails
(and retries once) the trials of processes that died (Optuna's ``heartbeat_interval``,
``grace_period``, ``fail_stale_trials`` and ``RetryFailedTrialCallback``, done for asked
trials and for every storage), :meth:`Tuner.room` counts a study's trials toward a total
across workers (Optuna's ``MaxTrialsCallback``), and the study is created under a file lock
(:func:`creation_lock`) so workers started together do not race on a new SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from ..base.checks import check_number
from ..base.vocabulary import RunState
from .space import Range

PRIMITIVES = (type(None), bool, int, float, str)
TRIAL_STATES = {"COMPLETE": RunState.FINISHED, "PRUNED": RunState.PRUNED,
                "FAIL": RunState.FAILED, "RUNNING": RunState.RUNNING}  # Optuna's -> ours
HEARTBEAT = 60.0  # seconds between heartbeats of an open trial in shared storage
DIED = "its process ended without reporting how the trial ended (no heartbeat)"


def require_optuna() -> Any:
    """The ``optuna`` module, or an ImportError that says what to install."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("search='optuna' needs Optuna, an optional extra: "
                          "pip install 'exburn_nb[tune]' (or pip install optuna)") from exc
    return optuna


def make_storage(storage: Any) -> Any:
    """An Optuna storage: ``None`` (in memory), an RDB URL such as ``sqlite:///study.db``,
    ``journal:///path/to/study.log`` (a ``JournalFileBackend``), or a storage object."""
    if isinstance(storage, str) and storage.startswith("journal://"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(storage[len("journal://"):]))
    return storage


def storage_file(storage: Any) -> str | None:
    """The file behind a ``journal://`` or ``sqlite:///`` URL (None for anything else).

    Example:
        >>> storage_file("sqlite:///runs/study.db?timeout=30"), storage_file(None)
        ('runs/study.db', None)
    """
    if not isinstance(storage, str):
        return None
    for scheme in ("journal://", "sqlite:///"):
        if storage.startswith(scheme):
            path = storage[len(scheme):].split("?")[0]
            return path if path and path != ":memory:" else None
    return None


PARALLEL_SQLITE = (
    "SQLite storage ({storage}) is not made for parallel workers: every writer locks the "
    "whole file ('database is locked'), it has no SELECT ... FOR UPDATE, and workers "
    "creating a fresh file together race on its schema (Optuna's FAQ). Use "
    "journal:///path/study.log for processes on one machine, or a database server such as "
    "postgresql://user@host/dbname for several machines.")


def warn_parallel_sqlite(storage: Any) -> bool:
    """Warn (``UserWarning``) when ``storage`` is a SQLite URL that parallel workers are
    about to share; True when it warned.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_parallel_sqlite("sqlite:///study.db"), warn_parallel_sqlite("journal:///s.log")
        (True, False)
        >>> "journal:///" in str(caught[0].message)
        True
    """
    if isinstance(storage, str) and storage.startswith("sqlite"):
        warnings.warn(PARALLEL_SQLITE.format(storage=storage), UserWarning, stacklevel=2)
        return True
    return False


@contextlib.contextmanager
def creation_lock(storage: Any) -> Iterator[None]:
    """Hold a lock file next to a SQLite file or journal (``<file>.exburn-create.lock``)
    while the storage and the study are created: Optuna creating a new SQLite schema from
    several processes at once fails (``table ... already exists``), so workers started
    together take turns. Nothing is locked for other storages.

    Example:
        >>> with creation_lock("sqlite:///study.db"):  # doctest: +SKIP
        ...     study = optuna.create_study(storage="sqlite:///study.db", load_if_exists=True)
    """
    path = storage_file(storage)
    if path is None:
        yield
        return
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(path + ".exburn-create")  # a dead holder's lock ends in 30 s
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def check_heartbeat(heartbeat: Any, grace_period: Any) -> tuple[float | None, float | None]:
    """``heartbeat`` (seconds, or None: off) and ``grace_period`` (seconds, None: twice the
    heartbeat), checked.

    Example:
        >>> check_heartbeat(60, None), check_heartbeat(None, None)
        ((60.0, 120.0), (None, None))
    """
    if heartbeat is None:
        if grace_period is not None:
            raise ValueError(f"grace_period needs a heartbeat; got heartbeat=None and "
                             f"grace_period={grace_period!r}")
        return None, None
    try:
        beat = check_number("heartbeat", heartbeat, positive=True)
    except ValueError:
        raise ValueError(f"heartbeat must be None or a finite number of seconds > 0; "
                         f"got {heartbeat!r}") from None
    grace = 2 * beat if grace_period is None else check_number("grace_period", grace_period,
                                                                positive=True)
    if grace <= beat:
        raise ValueError(f"grace_period must be longer than heartbeat ({beat:g} s), or a live "
                         f"trial is failed between two beats; got {grace_period!r}")
    return beat, grace


class Heartbeat:
    """Keeps the trials this process has open in a shared study alive, and fails the trials
    of processes that died.

    Every ``interval`` seconds a daemon thread (running while trials are open) writes
    ``time.time()`` to each open trial's user attribute ``heartbeat`` and fails the study's
    running trials whose last beat (or start) is older than ``grace_period`` seconds;
    :meth:`fail_stale` also runs before each trial is asked. A failed trial is retried once
    (``optuna.storages.RetryFailedTrialCallback``: the next trial asked takes its params).
    Works with every storage (RDB and journal alike); machines sharing a study need clocks
    that agree to well within the grace period. Trials without a ``heartbeat`` (written by
    other code) are never failed.

    Example:
        >>> beat = Heartbeat(study, interval=60, grace_period=120)  # doctest: +SKIP
        >>> beat.open(trial); ...; beat.close(trial); study.tell(trial, 0.5)  # doctest: +SKIP
    """

    def __init__(self, study: Any, interval: float, grace_period: float, retries: int = 1):
        import optuna

        self.study, self.interval, self.grace_period = study, interval, grace_period
        self._running, self._fail = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
        with warnings.catch_warnings():  # Optuna marks the callback experimental
            warnings.simplefilter("ignore")
            self._retry = optuna.storages.RetryFailedTrialCallback(max_retry=retries)
        self._open: dict[int, Any] = {}  # trial number -> trial
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self, trial: Any) -> None:
        """Beat for ``trial`` now and every ``interval`` seconds until :meth:`close`."""
        self._beat(trial)
        with self._lock:
            self._open[trial.number] = trial
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="exburn-heartbeat",
                                                daemon=True)
                self._thread.start()

    def close(self, trial: Any) -> None:
        """Stop beating for ``trial`` (before it is told)."""
        with self._lock:
            self._open.pop(trial.number, None)

    def fail_stale(self) -> list[int]:
        """Fail (and retry once) the running trials of other processes whose heartbeat
        stopped; the numbers of the trials this call failed."""
        now, failed = time.time(), []
        with self._lock:
            mine = set(self._open)
        for t in self.study.get_trials(deepcopy=False, states=(self._running,)):
            beat = t.user_attrs.get("heartbeat")
            if beat is None or t.number in mine:
                continue
            started = t.datetime_start.timestamp() if t.datetime_start else beat
            if now - max(beat, started) <= self.grace_period:
                continue
            try:
                frozen = self.study.tell(t.number, state=self._fail)
            except (ValueError, RuntimeError):  # another process ended it first
                continue
            failed.append(t.number)
            self._retry(self.study, frozen)
        return failed

    @staticmethod
    def _beat(trial: Any) -> None:
        trial.set_user_attr("heartbeat", time.time())

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                trials = list(self._open.values())
                if not trials:
                    self._thread = None
                    return
            try:
                for trial in trials:
                    with contextlib.suppress(RuntimeError):  # told meanwhile
                        self._beat(trial)
                self.fail_stale()
            except Exception:  # noqa: BLE001, S112 - a busy storage: the next beat tries again
                continue



def make_pruner(optuna: Any, pruner: Any, epochs: int) -> Any:
    """``"median"``, ``"hyperband"``, ``None`` or an ``optuna.pruners`` object."""
    if pruner is None:
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    raise ValueError(f"pruner must be 'median', 'hyperband', None or an optuna.pruners "
                     f"object; got {pruner!r}")


def dashboard_attrs(number: int, info: dict[str, Any]) -> dict[str, Any]:
    """A trial's user attributes at its end, as optuna-dashboard lists them: ``info``
    (``state``, ``message``, ``seconds``, ``history``...) with the ``run`` number and the
    ``epochs`` it trained, every value JSON (others as their text).

    Example:
        >>> dashboard_attrs(3, {"state": "finished", "seconds": 1.5,
        ...                     "history": [{"epoch": 1, "loss": 0.5}]})["epochs"]
        1
    """
    attrs = {**info, "run": number, "epochs": len(info.get("history") or [])}
    return json.loads(json.dumps(attrs, default=str))


class Tuner:
    """One Optuna study seen by one experiment: ask trials, report epochs, tell ends."""

    def __init__(self, *, sampler: Any, pruner: Any, direction: str, seed: int,
                 epochs: int, storage: Any = None, study_name: str | None = None,
                 heartbeat: float | None = HEARTBEAT, grace_period: float | None = None):
        optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-trial lines from threads
        self.optuna = optuna
        if sampler is None:
            # processes sharing a study must not all draw the same startup trials
            sampler = optuna.samplers.TPESampler(seed=None if storage is not None else seed)
        elif not isinstance(sampler, optuna.samplers.BaseSampler):
            raise ValueError(f"search must be 'grid', 'random', 'optuna' or an optuna.samplers "
                             f"object; got {sampler!r}")
        heartbeat, grace_period = check_heartbeat(heartbeat, grace_period)
        pruner = make_pruner(optuna, pruner, epochs)
        with creation_lock(storage):
            self.study = optuna.create_study(
                storage=make_storage(storage), study_name=study_name, direction=direction,
                sampler=sampler, pruner=pruner, load_if_exists=True)
        self.heartbeat = (Heartbeat(self.study, heartbeat, grace_period)
                          if storage is not None and heartbeat is not None else None)
        if self.heartbeat is not None:
            self.heartbeat.fail_stale()  # a study joined late shows its dead trials failed

    # ---------------------------------------------------------------- one trial
    def ask(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A new trial and its suggested values."""
        if self.heartbeat is not None:
            self.heartbeat.fail_stale()  # a dead process's trial is retried first
        trial = self.study.ask()
        if self.heartbeat is not None:
            self.heartbeat.open(trial)
        try:
            values = self._suggest(trial, params)
        except BaseException as exc:  # Ctrl-C (or an error) here: the trial does not stay running
            state = RunState.STOPPED if isinstance(exc, KeyboardInterrupt) else RunState.FAILED
            self.tell(trial, state, None, {"state": state.value, "message":
                                           f"{type(exc).__name__} while its params were drawn"})
            raise
        trial.set_user_attr("params", json.loads(json.dumps(values, default=str)))
        return trial, values

    @staticmethod
    def _suggest(trial: Any, params: dict[str, Any]) -> dict[str, Any]:
        values = {}
        for name, candidates in params.items():
            if isinstance(candidates, Range):
                if candidates.kind == "integers":
                    values[name] = trial.suggest_int(name, int(candidates.low),
                                                     int(candidates.high), log=candidates.log)
                else:
                    values[name] = trial.suggest_float(name, candidates.low, candidates.high,
                                                       log=candidates.log)
            elif all(isinstance(c, PRIMITIVES) for c in candidates):
                values[name] = trial.suggest_categorical(name, candidates)
            else:  # tuples, schedules...: Optuna stores the index's text
                labels = [repr(c) for c in candidates]
                values[name] = candidates[labels.index(trial.suggest_categorical(name, labels))]
        return values

    @staticmethod
    def report(trial: Any, step: int, value: float | None, rows: list[dict]) -> bool:
        """Report one epoch; True when the pruner says stop."""
        trial.set_user_attr("history", rows)
        if value is None or not math.isfinite(value):
            return False
        trial.report(float(value), step)
        return trial.should_prune()

    def tell(self, trial: Any, state: RunState, value: float | None, info: dict) -> None:
        """End the trial: complete with ``value``, pruned, or failed (``info["state"]``)."""
        if self.heartbeat is not None:
            self.heartbeat.close(trial)
        try:
            for key, item in dashboard_attrs(trial.number, info).items():
                trial.set_user_attr(key, item)
        except RuntimeError:  # another process failed it (its heartbeat was late): it stays so
            return
        states = self.optuna.trial.TrialState
        if state == RunState.FINISHED and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        elif state == RunState.PRUNED:
            self.study.tell(trial, state=states.PRUNED)
        else:
            self.study.tell(trial, state=states.FAIL)

    # ---------------------------------------------------------------- the study
    def room(self, total: int) -> int | None:
        """How many trials may be asked now so the study ends with ``total`` completed or
        pruned trials, counted over every process (Optuna's ``MaxTrialsCallback``, for
        asked trials): None once it has them; 0 while running trials may still get it
        there (one whose process died is failed by the heartbeat and retried). Trials
        waiting to be retried are asked first, so they do not take room.

        Example:
            >>> tuner.room(20)  # doctest: +SKIP
            3
        """
        if self.heartbeat is not None:
            self.heartbeat.fail_stale()
        states = self.optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False, states=(
            states.COMPLETE, states.PRUNED, states.RUNNING))
        ended = sum(t.state != states.RUNNING for t in trials)
        return None if ended >= total else max(0, total - len(trials))

    def trials(self) -> list[dict]:
        """Every trial of the study as plain data (run, params, seed, state, rows...)."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state.name not in TRIAL_STATES:
                continue
            attrs = t.user_attrs
            rows = attrs.get("history")
            if rows is None:  # a trial reported by code that kept no rows
                rows = [{"epoch": step, "value": v} for step, v in
                        sorted(t.intermediate_values.items())]
            out.append({"run": t.number, "params": attrs.get("params", dict(t.params)),
                        "seed": attrs.get("seed"), "rows": rows,
                        "state": attrs.get("state") if t.state.name == "FAIL" and
                        attrs.get("state") else TRIAL_STATES[t.state.name],
                        "message": attrs.get("message", DIED if t.state.name == "FAIL"
                                             and "state" not in attrs else ""),
                        "seconds": attrs.get("seconds", 0.0)})
        return out

    def importances(self) -> dict[str, float]:
        """``optuna.importance.get_param_importances`` (empty with under two completed
        trials)."""
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if len(done) < 2:
            return {}
        return dict(self.optuna.importance.get_param_importances(self.study))
