"""``Experiment``: many ``fit`` runs over a hyperparameter space, one tidy table.

A run is one full ``fit`` with its own :class:`~exburn_nb.core.config.FitConfig` and seed
(derived from the experiment's seed and the run number, so any run can be reproduced
alone: :meth:`Experiment.prepare_run`). Each run trains through the loop of ``xb.fit``
(:class:`~exburn_nb.train.loop.Trainer`), or, with ``parallel="vmap"``, many at once
through the same loop with the stacked engine (:mod:`exburn_nb.sweep`, the same
computation). UI-free: the ``RunComparison`` widget is one listener among any others.
:meth:`Experiment.load` returns an :class:`ExperimentResults`: the runs, summary, best
run and its model, read back whole.

Example:
    >>> exp = xb.Experiment(spec, (x, y), validation_data=(vx, vy),
    ...                     params={"learning_rate": [1e-3, 1e-2], "units": [32, 64]},
    ...                     epochs=5, batch_size=64)  # doctest: +SKIP
    >>> exp.run()  # doctest: +SKIP
    >>> exp.summary.sort_values("best_val_loss").head()  # doctest: +SKIP
    >>> exp.save("runs/grid"); xb.Experiment.load("runs/grid").best  # doctest: +SKIP

Workers for a study in shared storage (the script defines the experiment; code under
``if __name__ == "__main__":`` does not run in a worker): a journal file for workers on one
machine, a database server for several machines (Optuna's advice; SQLite warns)::

    python -m exburn_nb.experiment worker search.py --storage journal:///runs/study.log \
        --study digits --trials 20
    python -m exburn_nb.experiment worker search.py --storage postgresql://user@db/optuna \
        --study digits --total-trials 100   # until the study holds 100, from all workers

Modules: ``core`` (the ``Experiment`` facade), ``params`` (routing, checks, grid and
random draws, one run's model and config), ``execution`` (the one way groups of runs
train), ``results`` (runs, summary, best: what ``load`` returns), ``runs`` (runs as data,
seeds, frames), ``study`` (Optuna), ``files`` (the file format), ``space`` (ranges),
``__main__`` (the worker command).
"""

from ..core.config import COMPILE_OPTIONS, FIT_OPTIONS
from .core import Experiment
from .params import COMPILE_PARAMS, FIT_PARAMS
from .results import ExperimentResults
from .runs import Run, run_seed

__all__ = ["COMPILE_OPTIONS", "COMPILE_PARAMS", "FIT_OPTIONS", "FIT_PARAMS", "Experiment",
           "ExperimentResults", "Run", "run_seed"]
