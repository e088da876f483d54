"""Saving and loading an :class:`~exburn_nb.experiment.Experiment`: no pickle anywhere.

A directory holds ``experiment.json`` (settings, params space, one entry per run),
``runs.csv`` (or ``runs.parquet`` when pyarrow is installed: the tidy runs frame) and
``best_model.exburn`` (the kit's own safetensors + JSON format).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.config import FitConfig
from ..core.model import load as load_model
from .runs import Run
from .space import from_dict

FORMAT_VERSION = 1
SETTINGS, MODEL = "experiment.json", "best_model.exburn"


def _runs_file(directory: Path, parquet: bool) -> Path:
    return directory / ("runs.parquet" if parquet else "runs.csv")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def save(exp: Any, directory: Path) -> Path:
    """Write ``exp``'s results to ``directory`` (created if needed); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = exp._all_runs()
    parquet = importlib.util.find_spec("pyarrow") is not None
    frame = exp.runs
    for name in exp.params:  # tuples, schedules...: JSON text in the file
        if name in frame and not all(isinstance(v, (int, float, str, bool, type(None)))
                                     for v in frame[name]):
            frame[name] = [json.dumps(_jsonable(v)) for v in frame[name]]
    if parquet:
        frame.to_parquet(_runs_file(directory, True), index=False)
    else:
        frame.to_csv(_runs_file(directory, False), index=False)
    settings = {
        "format_version": FORMAT_VERSION, "search": exp.search, "n_trials": exp.n_trials,
        "metric": exp.metric, "direction": exp.direction, "seed": exp.seed,
        "storage": exp.storage if isinstance(exp.storage, str) else None,
        "study_name": exp.study_name, "routes": exp.routes, "parallel": exp.parallel,
        "parallel_report": exp.parallel_report,
        "params": {n: c.to_dict() if hasattr(c, "to_dict") else _jsonable(c)
                   for n, c in exp.params.items()},
        "fit_config": exp.config.to_dict(), "compile_options": _jsonable(exp.compile_options),
        "runs_file": _runs_file(directory, parquet).name,
        "runs": [{"run": r.run, "params": _jsonable(r.params), "seed": r.seed,
                  "state": r.state, "message": r.message, "seconds": r.seconds} for r in runs],
        "best_run": exp.best_run,
    }
    (directory / SETTINGS).write_text(json.dumps(settings, indent=1))
    model = exp.best_model
    if model is not None:
        model.save(directory / MODEL)
    return directory


def load(cls: type, directory: Path) -> Any:
    """An experiment of class ``cls`` read back from :func:`save` (results only)."""
    path = directory / SETTINGS
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no saved experiment ({SETTINGS} is missing)")
    settings = json.loads(path.read_text())
    exp = cls.__new__(cls)
    exp._init_state()
    exp.build = exp.data = exp.validation_data = None
    exp._is_function = False
    exp._arguments, exp._plan = {}, None
    for key in ("search", "n_trials", "metric", "direction", "seed", "storage", "study_name",
                "routes", "compile_options"):
        setattr(exp, key, settings[key])
    exp.params = {n: from_dict(c) for n, c in settings["params"].items()}
    exp.parallel = settings.get("parallel")  # absent from files of before it existed
    exp.parallel_report = settings.get("parallel_report", [])
    fit = settings["fit_config"]
    if isinstance(fit.get("lr_schedule"), dict):  # a callable schedule is not in files
        fit = {**fit, "lr_schedule": None}
    exp.config = FitConfig.from_dict(fit)
    runs_path = directory / settings["runs_file"]
    frame = (pd.read_parquet(runs_path) if runs_path.suffix == ".parquet"
             else pd.read_csv(runs_path))
    history = [c for c in frame.columns if c not in ("run", "state", *exp.params)]
    rows_by_run: dict[int, list[dict]] = {}
    for record in frame[["run", *history]].to_dict("records"):
        if pd.isna(record["epoch"]):
            continue
        row = {k: v for k, v in record.items() if k != "run" and not
               (isinstance(v, float) and math.isnan(v))}
        row["epoch"] = int(row["epoch"])
        rows_by_run.setdefault(int(record["run"]), []).append(row)
    for meta in settings["runs"]:
        exp._runs[meta["run"]] = Run(meta["run"], meta["params"], meta["seed"],
                                     state=meta["state"], message=meta["message"],
                                     seconds=meta["seconds"],
                                     rows=rows_by_run.get(meta["run"], []))
    if (directory / MODEL).is_file():
        exp._best_model = load_model(directory / MODEL)
    return exp
