"""The file format of an experiment's results: no pickle anywhere.

A directory holds ``experiment.json`` (the manifest: settings, params space, one entry per
run, and the name and SHA-256 of every other file of the save), ``runs.csv`` (or
``runs.parquet`` when pyarrow is installed: the tidy runs frame) and ``best_model.exburn``
(the kit's own safetensors + JSON format). :func:`write` takes an
:class:`~exburn_nb.experiment.ExperimentResults`; :func:`read` returns the arguments
that build one again (``ExperimentResults.load`` does both steps).

A save is atomic: every file is written aside first, and the manifest is replaced last, so
a save that fails (a full disk) raises and leaves the previous save loadable as it was.
:func:`read` opens only the files the manifest names, inside the directory (no symlink),
checks their SHA-256, and checks every value: an edited or mixed directory is a
``ValueError`` naming the directory and the field.

Example:
    >>> write(results, Path("runs/digits"))  # doctest: +SKIP
    >>> ExperimentResults(**read(Path("runs/digits"))).best  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..base.checks import check_int, check_number, check_seed
from ..base.vocabulary import METRICS, RunState
from ..core.config import CompileConfig, FitConfig
from ..core.model import load as load_model
from ..io import persist
from .runs import DIRECTIONS, Run, check_metric
from .space import check_candidates, from_dict

FORMAT_VERSION = 2  # 2: the manifest names every other file with its SHA-256
SETTINGS, MODEL = "experiment.json", "best_model.exburn"
RUNS_FILES = ("runs.csv", "runs.parquet")
SETTING_KEYS = ("search", "n_trials", "total_trials", "seed", "storage", "study_name", "routes",
                "parallel", "fit_config", "compile_options")
SEARCHES = ("grid", "random", "optuna")
PARALLEL = ("vmap", "auto")
ROUTES = ("compile", "fit", "build")
RUN_KEYS = ("run", "params", "seed", "state", "message", "seconds")
PRIMITIVES = (int, float, str, bool, type(None))


def jsonable(value: Any) -> Any:
    """``value`` as JSON values (tuples become lists, anything else its text).

    Example:
        >>> jsonable({"lr_schedule": ("step", 1e-2, 1, 0.5)})
        {'lr_schedule': ['step', 0.01, 1, 0.5]}
    """
    return json.loads(json.dumps(value, default=str))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stage(directory: Path, name: str, write: Callable[[Path], Any], staged: dict) -> None:
    """Write file ``name`` aside (a hidden temporary name in ``directory``, whose orphans the
    next save removes), synced to disk; ``staged`` maps ``name`` to it (even when writing
    fails, so it is removed)."""
    staged[name] = path = persist.temp_beside(directory / name)
    write(path)
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:  # text quoted: a "\r" in a param's name or value stays in its cell
        frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)


def write(results: Any, directory: Path) -> Path:
    """Write ``results`` (an ``ExperimentResults``) to ``directory`` (created if needed).

    Atomic: the files are written aside, then put in place with the manifest last; a
    failure raises, and the directory's previous save stays loadable as it was.
    """
    directory.mkdir(parents=True, exist_ok=True)
    runs = results.records()
    runs_name = RUNS_FILES[importlib.util.find_spec("pyarrow") is not None]
    frame = results.runs
    for name in results.params:  # tuples, schedules...: JSON text in the file
        if name in frame and not all(isinstance(v, PRIMITIVES) for v in frame[name]):
            frame[name] = [json.dumps(jsonable(v)) for v in frame[name]]
    settings = {key: results.settings.get(key) for key in SETTING_KEYS}
    model = results.best_model
    staged: dict[str, Path] = {}
    try:
        _stage(directory, runs_name, lambda path: _write_table(frame, path), staged)
        if model is not None:
            _stage(directory, MODEL, model.save, staged)
        saved = {
            "format_version": FORMAT_VERSION, **settings, "metric": results.metric,
            "direction": results.direction, "parallel_report": results.parallel_report,
            "params": {n: c.to_dict() if hasattr(c, "to_dict") else jsonable(c)
                       for n, c in results.params.items()},
            "runs_file": runs_name,
            "files": {name: _sha256(path) for name, path in staged.items()},
            "runs": [{"run": r.run, "params": jsonable(r.params), "seed": r.seed,
                      "state": r.state.value, "message": r.message, "seconds": r.seconds}
                     for r in runs],
            "best_run": results.best_run,
        }
        _stage(directory, SETTINGS, lambda p: p.write_text(json.dumps(saved, indent=1)),
               staged)
        for name in list(staged):  # the manifest last: until then the old save stands
            os.replace(staged[name], directory / name)
            del staged[name]
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)
    for name in (*RUNS_FILES, MODEL):  # an earlier save's files this one does not name
        if name not in saved["files"]:
            (directory / name).unlink(missing_ok=True)
    return directory


# ------------------------------------------------------------------ reading
class _Manifest:
    """Reads the fields of one ``experiment.json``; every error names the directory."""

    def __init__(self, directory: Path, saved: Any):
        self.directory = directory
        if not isinstance(saved, dict):
            raise self.error(None, f"must hold a JSON object; got {type(saved).__name__}")
        self.saved = saved

    def error(self, field: str | None, message: str) -> ValueError:
        where = f"{SETTINGS}" if field is None else f"{SETTINGS} field {field!r}"
        return ValueError(f"{self.directory}: {where} {message}")

    def get(self, field: str, check: Callable[[Any], Any], *default: Any) -> Any:
        """``check(value)`` of ``field`` (``default``, if given, when it is missing); its
        errors name the field."""
        if field not in self.saved:
            if default:
                return default[0]
            raise self.error(field, "is missing")
        try:
            return check(self.saved[field])
        except (ValueError, TypeError, OverflowError) as exc:
            raise self.error(field, f"is invalid: {exc}") from None


def _one_of(allowed: tuple, optional: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if (value is None and optional) or (isinstance(value, str) and value in allowed):
            return value
        raise ValueError(f"must be {'None or ' if optional else ''}one of "
                         f"{', '.join(allowed)}; got {value!r}")
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _typed(kind: type | tuple, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ValueError(f"must be {what}; got {value!r}")
        return value
    return check


def _routes(params: dict) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, dict) or set(value) != set(params) or not all(
                _one_of(ROUTES)(route) for route in value.values()):
            raise ValueError(f"must map each param to one of {', '.join(ROUTES)}; got {value!r}")
        return value
    return check


def _fit_config(value: Any) -> dict:
    data = _typed(dict, "a fit config (a JSON object)")(value)
    schedule = data.get("lr_schedule")  # a callable schedule is saved by its name only
    callable_schedule = isinstance(schedule, dict) and set(schedule) == {"callable"} \
        and isinstance(schedule["callable"], str)
    FitConfig.from_dict({**data, "lr_schedule": None} if callable_schedule else data)
    return value


def _compile_options(value: Any) -> dict:
    CompileConfig.from_options(**_typed(dict, "compile options (a JSON object)")(value))
    return value


def _params(value: Any) -> dict:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"must be a non-empty object name -> candidates; got {value!r}")
    return {name: check_candidates(name, from_dict(c)) for name, c in value.items()}


def _run(meta: Any) -> Run:
    if not isinstance(meta, dict) or set(meta) != set(RUN_KEYS):
        raise ValueError(f"each run must have exactly the keys {', '.join(RUN_KEYS)}; "
                         f"got {meta!r}")
    state = meta["state"]
    if not isinstance(state, str) or state not in set(RunState):
        raise ValueError(f"state must be one of {', '.join(RunState)}; got {state!r}")
    return Run(check_int("run", meta["run"], 0), _typed(dict, "an object")(meta["params"]),
               check_seed(meta["seed"]), state=state,
               message=_typed(str, "a string")(meta["message"]),
               seconds=check_number("seconds", meta["seconds"]))


def _runs(value: Any) -> list[Run]:
    runs = [_run(meta) for meta in _typed(list, "a list of runs")(value)]
    numbers = [r.run for r in runs]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"holds a run number twice: {numbers}")
    return runs


def _member(directory: Path, name: str) -> Path:
    """``directory / name`` if it is a plain file there (not a link, not elsewhere)."""
    path = directory / name
    if path.is_symlink() or not path.is_file() or path.resolve().parent != directory.resolve():
        raise ValueError(f"{directory}: {name} is missing or not a plain file in the directory")
    return path


def _frame(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # any unreadable table: named, never raw
        raise ValueError(f"{path}: not a runs table ({type(exc).__name__}: {exc})") from None


def _histories(path: Path, frame: pd.DataFrame, params: dict,
               runs: list[Run]) -> dict[int, list[dict]]:
    """Each run's epoch rows from the runs table, checked against the manifest's runs."""
    # the columns: run, the params (in order, whatever their names), then epoch, the
    # history and state
    history = [c for c in frame.columns[1 + len(params):] if c != "state"]
    if list(frame.columns[:1]) != ["run"] or "epoch" not in history or "state" not in frame:
        raise ValueError(f"{path}: the header must be run, the params, epoch, the history "
                         f"and state; got {list(frame.columns)}"[:400])
    states = {r.run: r.state.value for r in runs}
    numeric = {}
    for column in ("run", *history):
        try:
            numeric[column] = pd.to_numeric(frame[column]).tolist()
        except (ValueError, TypeError):
            raise ValueError(f"{path}: the column {column!r} holds a value that is not a "
                             "number") from None
    rows_by_run: dict[int, list[dict]] = {}
    for i, state in enumerate(frame["state"].tolist()):
        run, epoch = numeric["run"][i], numeric["epoch"][i]
        if run not in states or state != states[run]:
            raise ValueError(f"{path}: row {i + 1} is of run {run!r} in state {state!r}, which "
                             f"{SETTINGS} does not hold")
        if math.isnan(epoch):
            continue
        if not (epoch >= 1 and epoch == int(epoch)):
            raise ValueError(f"{path}: row {i + 1} has epoch {epoch!r}")
        row = {c: int(epoch) if c == "epoch" else numeric[c][i] for c in history
               if not math.isnan(numeric[c][i])}
        rows_by_run.setdefault(int(run), []).append(row)
    return rows_by_run


def read(directory: Path) -> dict[str, Any]:
    """The keyword arguments of ``ExperimentResults`` saved in ``directory``, and the saved
    ``best_run`` (which the loaded runs must rank first)."""
    if not (directory / SETTINGS).exists():
        raise FileNotFoundError(f"{directory} holds no saved experiment ({SETTINGS} is missing)")
    try:
        saved = json.loads(_member(directory, SETTINGS).read_text())
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{directory}: {SETTINGS} is not JSON ({type(exc).__name__}: "
                         f"{exc})"[:500]) from None
    manifest = _Manifest(directory, saved)
    unknown = sorted(set(saved) - {"format_version", *SETTING_KEYS, "metric", "direction",
                                   "parallel_report", "params", "runs_file", "files", "runs",
                                   "best_run"})
    if unknown:
        raise manifest.error(unknown[0], "is not a field of this format")
    version = manifest.get("format_version", _one_of_ints(1, FORMAT_VERSION))
    params = manifest.get("params", _params)
    settings = {
        "search": manifest.get("search", _one_of(SEARCHES, optional=True)),
        "n_trials": manifest.get("n_trials", _optional(lambda v: check_int("n_trials", v, 1))),
        "total_trials": manifest.get("total_trials", _optional(
            lambda v: check_int("total_trials", v, 1)), None),  # older saves lack it
        "seed": manifest.get("seed", check_seed),
        "storage": manifest.get("storage", _optional(_typed(str, "a string"))),
        "study_name": manifest.get("study_name", _optional(_typed(str, "a string"))),
        "routes": manifest.get("routes", _optional(_routes(params))),
        "parallel": manifest.get("parallel", _one_of(PARALLEL, optional=True),
                                 None),  # older saves lack it
        "fit_config": manifest.get("fit_config", _optional(_fit_config)),
        "compile_options": manifest.get("compile_options", _optional(_compile_options)),
    }
    metric = manifest.get("metric", lambda v: check_metric(v, METRICS))
    direction = manifest.get("direction", _one_of(DIRECTIONS))
    report = manifest.get("parallel_report", lambda v: [
        _typed(str, "a string")(line) for line in _typed(list, "a list")(v)], [])
    runs = manifest.get("runs", _runs)
    numbers = {r.run for r in runs}
    best_run = manifest.get("best_run", _optional(lambda v: _one_of_ints(*numbers)(v)))
    runs_name = manifest.get("runs_file", _one_of(RUNS_FILES))
    if version == 1:  # before the manifest named its files: no checksums to check them by
        model = best_run is not None and (directory / MODEL).exists()
        hashes = {runs_name: None, **({MODEL: None} if model else {})}
    else:
        hashes = manifest.get("files", _hashes(runs_name, best_run is not None))
    for name, digest in hashes.items():
        if digest is not None and _sha256(_member(directory, name)) != digest:
            raise ValueError(f"{directory}: {name} is not the file {SETTINGS} names (its "
                             "SHA-256 differs): the directory mixes two saves, or was edited")
    runs_path = _member(directory, runs_name)
    rows_by_run = _histories(runs_path, _frame(runs_path), params, runs)
    for run in runs:
        run.rows = rows_by_run.get(run.run, [])
    models = {best_run: load_model(_member(directory, MODEL))} if MODEL in hashes else {}
    return dict(params=params, metric=metric, direction=direction, runs=runs, models=models,
                settings=settings, parallel_report=report, best_run=best_run)


def _one_of_ints(*allowed: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}; got {value!r}")
        return value
    return check


def _hashes(runs_name: str, with_model: bool) -> Callable[[Any], dict]:
    """The check of ``files``: the runs file's SHA-256, and the best model's (when the
    best run's model was kept)."""
    def check(value: Any) -> dict:
        if not isinstance(value, dict) or runs_name not in value or not set(value) <= {
                runs_name, *([MODEL] if with_model else [])} or not all(
                isinstance(d, str) and len(d) == 64 for d in value.values()):
            raise ValueError(f"must map {runs_name}{f' (and {MODEL})' if with_model else ''} "
                             f"to its SHA-256; got {value!r}")
        return value
    return check
