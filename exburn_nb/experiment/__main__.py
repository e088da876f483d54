"""``python -m exburn_nb.experiment worker SCRIPT --storage URL --study NAME --trials N``.

Runs trials for a study defined in a script: the script builds one ``xb.Experiment``
(code under ``if __name__ == "__main__":`` does not run here); this worker joins the study
in ``--storage`` under ``--study`` and adds ``--trials`` trials to it, or, with
``--total-trials T``, trains until the study holds ``T`` completed or pruned trials from
all its workers (Optuna's ``MaxTrialsCallback``). ``--heartbeat`` and ``--grace-period``
(seconds) override the experiment's: a trial whose worker died is failed after the grace
period and retried once by the workers still running. It prints one JSON line: the study,
the runs it added (and their numbers) and the runs in the study.

Storage, as Optuna advises: ``journal:///path/study.log`` for workers on one machine,
``postgresql://user@host/dbname`` for workers on several machines; a ``sqlite:///`` URL
works but warns (SQLite is not made for parallel writers).
"""

from __future__ import annotations

import argparse
import json
import runpy

from .core import Experiment
from .study import warn_parallel_sqlite


def main(argv: list[str] | None = None) -> int:
    """``python -m exburn_nb.experiment worker SCRIPT --storage URL --study NAME --trials N``."""
    parser = argparse.ArgumentParser(prog="python -m exburn_nb.experiment")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run trials for a study defined in a script")
    worker.add_argument("script", help="a Python file that builds an xb.Experiment")
    worker.add_argument("--storage", required=True, help="sqlite:///study.db, journal:///f.log...")
    worker.add_argument("--study", required=True, help="the study's name")
    worker.add_argument("--trials", type=int, default=None,
                        help="trials this worker adds (at most, with --total-trials)")
    worker.add_argument("--total-trials", type=int, default=None,
                        help="stop once the study holds this many completed or pruned "
                             "trials, from all workers")
    worker.add_argument("--heartbeat", type=float, default=None,
                        help="seconds between heartbeats of open trials (default: the "
                             "experiment's, 60)")
    worker.add_argument("--grace-period", type=float, default=None,
                        help="seconds without a heartbeat before a trial is failed "
                             "(default: the experiment's, twice the heartbeat)")
    args = parser.parse_args(argv)
    if args.trials is None and args.total_trials is None:
        parser.error("give --trials (trials this worker adds), --total-trials (trials the "
                     "study holds in the end, from all workers), or both")
    warn_parallel_sqlite(args.storage)
    namespace = runpy.run_path(args.script, run_name="__exburn_worker__")
    # one experiment bound to two names (``b = a``) is one experiment
    found = list({id(v): v for v in namespace.values() if isinstance(v, Experiment)}.values())
    if len(found) != 1:
        parser.error(f"{args.script} must define exactly one xb.Experiment; found {len(found)}")
    changes = {name: value for name, value in (("heartbeat", args.heartbeat),
                                               ("grace_period", args.grace_period),
                                               ("total_trials", args.total_trials))
               if value is not None}
    exp = found[0].replace(storage=args.storage, study_name=args.study, n_trials=args.trials,
                           **changes)
    exp.run()
    print(json.dumps({"study": args.study, "runs_added": exp.added, "runs": exp.added_runs,
                      "runs_in_study": len(exp.summary)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
