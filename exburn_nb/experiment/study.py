"""The Optuna side of an :class:`~exburn_nb.experiment.Experiment` (``search="optuna"``).

Each run is a trial asked from one study (in memory, or in shared storage that several
processes or machines fill together). Every epoch reports the metric to the trial (its
intermediate values) and stores the epoch rows as the trial's user attribute ``history``,
so a process that did not run a trial can still draw its curves. Optuna is optional:
``pip install 'exburn_nb[tune]'``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..base.vocabulary import RunState
from .space import Range

PRIMITIVES = (type(None), bool, int, float, str)
TRIAL_STATES = {"COMPLETE": RunState.FINISHED, "PRUNED": RunState.PRUNED,
                "FAIL": RunState.FAILED, "RUNNING": RunState.RUNNING}  # Optuna's -> ours


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
                 epochs: int, storage: Any = None, study_name: str | None = None):
        optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-trial lines from threads
        self.optuna = optuna
        if sampler is None:
            # processes sharing a study must not all draw the same startup trials
            sampler = optuna.samplers.TPESampler(seed=None if storage is not None else seed)
        elif not isinstance(sampler, optuna.samplers.BaseSampler):
            raise ValueError(f"search must be 'grid', 'random', 'optuna' or an optuna.samplers "
                             f"object; got {sampler!r}")
        self.study = optuna.create_study(
            storage=make_storage(storage), study_name=study_name, direction=direction,
            sampler=sampler, pruner=make_pruner(optuna, pruner, epochs), load_if_exists=True)

    # ---------------------------------------------------------------- one trial
    def ask(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A new trial and its suggested values."""
        trial = self.study.ask()
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
        trial.set_user_attr("params", json.loads(json.dumps(values, default=str)))
        return trial, values

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
        for key, item in dashboard_attrs(trial.number, info).items():
            trial.set_user_attr(key, item)
        states = self.optuna.trial.TrialState
        if state == RunState.FINISHED and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        elif state == RunState.PRUNED:
            self.study.tell(trial, state=states.PRUNED)
        else:
            self.study.tell(trial, state=states.FAIL)

    # ---------------------------------------------------------------- the study
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
                        "message": attrs.get("message", ""),
                        "seconds": attrs.get("seconds", 0.0)})
        return out

    def importances(self) -> dict[str, float]:
        """``optuna.importance.get_param_importances`` (empty with under two completed
        trials)."""
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if len(done) < 2:
            return {}
        return dict(self.optuna.importance.get_param_importances(self.study))
