"""``python -m exburn_nb.experiment worker SCRIPT --storage URL --study NAME --trials N``.

Runs trials for a study defined in a script: the script builds one ``xb.Experiment``
(code under ``if __name__ == "__main__":`` does not run here); this worker joins the study
in ``--storage`` under ``--study`` and adds ``--trials`` trials to it. ``--heartbeat`` and
``--grace-period`` (seconds) override the experiment's: a trial whose worker died is failed
after the grace period and retried once by the workers still running.
"""

from __future__ import annotations

import argparse
import json
import runpy

from .core import Experiment


def main(argv: list[str] | None = None) -> int:
    """``python -m exburn_nb.experiment worker SCRIPT --storage URL --study NAME --trials N``."""
    parser = argparse.ArgumentParser(prog="python -m exburn_nb.experiment")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run trials for a study defined in a script")
    worker.add_argument("script", help="a Python file that builds an xb.Experiment")
    worker.add_argument("--storage", required=True, help="sqlite:///study.db, journal:///f.log...")
    worker.add_argument("--study", required=True, help="the study's name")
    worker.add_argument("--trials", type=int, required=True, help="trials this worker adds")
    worker.add_argument("--heartbeat", type=float, default=None,
                        help="seconds between heartbeats of open trials (default: the "
                             "experiment's, 60)")
    worker.add_argument("--grace-period", type=float, default=None,
                        help="seconds without a heartbeat before a trial is failed "
                             "(default: the experiment's, twice the heartbeat)")
    args = parser.parse_args(argv)
    namespace = runpy.run_path(args.script, run_name="__exburn_worker__")
    # one experiment bound to two names (``b = a``) is one experiment
    found = list({id(v): v for v in namespace.values() if isinstance(v, Experiment)}.values())
    if len(found) != 1:
        parser.error(f"{args.script} must define exactly one xb.Experiment; found {len(found)}")
    changes = {name: value for name, value in (("heartbeat", args.heartbeat),
                                               ("grace_period", args.grace_period))
               if value is not None}
    exp = found[0].replace(storage=args.storage, study_name=args.study, n_trials=args.trials,
                           **changes)
    exp.run()
    print(json.dumps({"study": args.study, "runs_added": exp.added,
                      "runs_in_study": len(exp.summary)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
