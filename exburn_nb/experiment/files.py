"""The file format of an experiment's results: no pickle anywhere.

A directory holds ``experiment.json`` (settings, params space, one entry per run),
``runs.csv`` (or ``runs.parquet`` when pyarrow is installed: the tidy runs frame) and
``best_model.exburn`` (the kit's own safetensors + JSON format). :func:`write` takes an
:class:`~exburn_nb.experiment.ExperimentResults`; :func:`read` returns the arguments
that build one again (``ExperimentResults.load`` does both steps).

Example:
    >>> write(results, Path("runs/digits"))  # doctest: +SKIP
    >>> ExperimentResults(**read(Path("runs/digits"))).best  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.model import load as load_model
from .runs import Run
from .space import from_dict

FORMAT_VERSION = 1
SETTINGS, MODEL = "experiment.json", "best_model.exburn"
SETTING_KEYS = ("search", "n_trials", "seed", "storage", "study_name", "routes", "parallel",
                "fit_config", "compile_options")
PRIMITIVES = (int, float, str, bool, type(None))


def _runs_file(directory: Path, parquet: bool) -> Path:
    return directory / ("runs.parquet" if parquet else "runs.csv")


def jsonable(value: Any) -> Any:
    """``value`` as JSON values (tuples become lists, anything else its text).

    Example:
        >>> jsonable({"lr_schedule": ("step", 1e-2, 1, 0.5)})
        {'lr_schedule': ['step', 0.01, 1, 0.5]}
    """
    return json.loads(json.dumps(value, default=str))


def write(results: Any, directory: Path) -> Path:
    """Write ``results`` (an ``ExperimentResults``) to ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = results.records()
    parquet = importlib.util.find_spec("pyarrow") is not None
    frame = results.runs
    for name in results.params:  # tuples, schedules...: JSON text in the file
        if name in frame and not all(isinstance(v, PRIMITIVES) for v in frame[name]):
            frame[name] = [json.dumps(jsonable(v)) for v in frame[name]]
    if parquet:
        frame.to_parquet(_runs_file(directory, True), index=False)
    else:
        frame.to_csv(_runs_file(directory, False), index=False)
    settings = {key: results.settings.get(key) for key in SETTING_KEYS}
    saved = {
        "format_version": FORMAT_VERSION, **settings, "metric": results.metric,
        "direction": results.direction, "parallel_report": results.parallel_report,
        "params": {n: c.to_dict() if hasattr(c, "to_dict") else jsonable(c)
                   for n, c in results.params.items()},
        "runs_file": _runs_file(directory, parquet).name,
        "runs": [{"run": r.run, "params": jsonable(r.params), "seed": r.seed,
                  "state": r.state.value, "message": r.message, "seconds": r.seconds}
                 for r in runs],
        "best_run": results.best_run,
    }
    (directory / SETTINGS).write_text(json.dumps(saved, indent=1))
    model = results.best_model
    if model is not None:
        model.save(directory / MODEL)
    return directory


def read(directory: Path) -> dict[str, Any]:
    """The keyword arguments of ``ExperimentResults`` saved in ``directory``."""
    path = directory / SETTINGS
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no saved experiment ({SETTINGS} is missing)")
    saved = json.loads(path.read_text())
    params = {n: from_dict(c) for n, c in saved["params"].items()}
    runs_path = directory / saved["runs_file"]
    frame = (pd.read_parquet(runs_path) if runs_path.suffix == ".parquet"
             else pd.read_csv(runs_path))
    history = [c for c in frame.columns if c not in ("run", "state", *params)]
    rows_by_run: dict[int, list[dict]] = {}
    for record in frame[["run", *history]].to_dict("records"):
        if pd.isna(record["epoch"]):
            continue
        row = {k: v for k, v in record.items() if k != "run" and not
               (isinstance(v, float) and math.isnan(v))}
        row["epoch"] = int(row["epoch"])
        rows_by_run.setdefault(int(record["run"]), []).append(row)
    runs = [Run(meta["run"], meta["params"], meta["seed"], state=meta["state"],
                message=meta["message"], seconds=meta["seconds"],
                rows=rows_by_run.get(meta["run"], [])) for meta in saved["runs"]]
    models = ({saved["best_run"]: load_model(directory / MODEL)}
              if (directory / MODEL).is_file() and saved["best_run"] is not None else {})
    return dict(params=params, metric=saved["metric"], direction=saved["direction"],
                runs=runs, models=models,
                settings={key: saved.get(key) for key in SETTING_KEYS},  # "parallel": newer
                parallel_report=saved.get("parallel_report", []))
