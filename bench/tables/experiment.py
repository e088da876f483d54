"""Experiments: ``xb.Experiment`` against the same runs as separate ``xb.fit`` calls.

Measured in a real kernel (nbclient), like the live table, so the watching
``RunComparison``'s figure updates are really serialised and sent. Three contenders
alternate round by round on the same grid of digits runs: a plain loop of ``xb.compile`` +
``xb.fit`` per configuration (the reference), ``Experiment.run()``, and ``Experiment``
started in the background with a displayed ``RunComparison`` watching it live. The first
round is a warm-up and is discarded. With ``--clock cpu`` (the default on one thread) the
grid is timed in the kernel's process CPU time, every thread included (the experiment's,
the widget's drawing thread), so other processes on a busy machine do not inflate it.

A second row trains a 100-run random search once and times what a user waits for with
100 runs on screen: building ``exp.runs`` and ``exp.summary``, and one full redraw of the
comparison widget (curves of 100 runs, table, parallel coordinates).
"""

from __future__ import annotations

from ..harness import Config, Pool, paired, summary
from .common import cell, kernel_rounds, ratio_cell, table

NAME = "experiment"
TITLE = "Experiments: overhead over separate xb.fit runs, and 100 runs on screen (real kernel)"
CONTENDERS = ("separate", "experiment", "watched")
LABELS = {"separate": "separate xb.fit calls (reference)", "experiment": "Experiment.run()",
          "watched": "Experiment.start() + RunComparison live"}

SETUP = """
import itertools, json, time, torch, exburn_nb as xb
from exburn_nb.experiment import run_seed
torch.set_num_threads({threads})
(x, y), (tx, ty) = xb.datasets.digits()
GRID = {{"units": [16, 32], "learning_rate": [1e-3, 3e-3], "batch_size": [32, 64]}}
FIT = dict(epochs={epochs}, validation_data=(tx, ty), accuracy=True)
def build(p):
    return (xb.input("input", shape=(None, 64)).dense(p["units"], activation="relu",
            name="hidden").dense(10, name="output"))
def experiment_():
    return xb.Experiment(build, (x, y), params=GRID, **FIT)
def clocks():
    return time.perf_counter(), time.process_time()  # process time: every thread's CPU
def since(t):
    return [a - b for a, b in zip(clocks(), t)]
def separate():
    t = clocks()  # the same runs (same order, same seeds) by plain calls
    for run, combo in enumerate(itertools.product(*GRID.values())):
        p, seed = dict(zip(GRID, combo)), run_seed(0, run)
        m = xb.compile(build(p), learning_rate=p["learning_rate"], seed=seed)
        xb.fit(m, (x, y), batch_size=p["batch_size"], seed=seed, verbose=False, **FIT)
    return since(t)
def experiment():
    exp = experiment_()
    t = clocks()
    exp.run()
    return since(t)
def watched():
    exp = experiment_()
    view = xb.widgets.RunComparison(exp)
    display(view)
    t = clocks()
    exp.start(); exp.wait(); view.wait_drawn()
    seconds = since(t)
    view.close()
    return seconds
times = {{name: [] for name in {contenders}}}
"""
ROUND = """
for name in {contenders}:
    times[name].append(globals()[name]())
"""
MANY = """
many = xb.Experiment(build, (x[:300], y[:300]), validation_data=(tx[:150], ty[:150]),
                     params={{"units": xb.space.integers(8, 64, log=True),
                              "learning_rate": xb.space.loguniform(1e-4, 1e-1),
                              "batch_size": [32, 64]}},
                     search="random", n_trials={runs}, epochs={many_epochs}, accuracy=True)
many.run()
view = xb.widgets.RunComparison(many)
display(view)
many_times = {{"runs": [], "summary": [], "redraw": []}}
for _ in range({repeats}):
    for key, fn in (("runs", lambda: many.runs), ("summary", lambda: many.summary),
                    ("redraw", lambda: view.refresh())):
        t = time.perf_counter(); fn(); many_times[key].append(time.perf_counter() - t)
points = sum(sum(v is not None for v in tr.x) for tr in view.curves.data)
many_times["rows"] = len(many.runs); many_times["points"] = points
"""


def workload(quick: bool) -> dict:
    """The grid (8 runs of the digits MLP) and the many-runs row's size."""
    if quick:
        return {"epochs": 2, "runs": 20, "many_epochs": 5}
    return {"epochs": 5, "runs": 100, "many_epochs": 10}


def measure(sizes: dict, repeats: int, threads: int, clock: str) -> tuple[dict, dict]:
    """Seconds per contender per measured round on ``clock`` (``"wall"``, or ``"cpu"``: the
    kernel's process time, all its threads), and the many-runs timings (wall)."""
    names = list(CONTENDERS)
    times, many = kernel_rounds(
        SETUP.format(threads=threads, contenders=names, epochs=sizes["epochs"]),
        ROUND.format(contenders=names), repeats, timeout=3600,
        extra=[MANY.format(repeats=repeats, **sizes), "print(json.dumps([times, many_times]))"])
    index = 1 if clock == "cpu" else 0
    return {name: [v[index] for v in values[1:]] for name, values in times.items()}, many


def run(pool: Pool, config: Config, context: dict) -> dict:
    sizes = workload(config.quick)
    config.echo("  experiment: grid of 8 digits runs, then many runs on screen")
    seconds, many = measure(sizes, config.repeats, config.threads, config.clock)
    base = seconds["separate"]
    return {"sizes": sizes, "threads": config.threads, "clock": config.clock,
            "stats": {name: {"seconds": summary(v), "cost": paired(v, base)}
                      for name, v in seconds.items()},
            "many": {"rows": many["rows"], "points": many["points"],
                     **{k: summary(many[k]) for k in ("runs", "summary", "redraw")}}}


def markdown(result: dict) -> str:
    sizes, many = result["sizes"], result["many"]
    clock = "CPU seconds" if result.get("clock") == "cpu" else "seconds"
    grid = table(["contender", f"{clock} median (min–max)", "time x separate fits"],
                 [[LABELS[name], cell(s["seconds"]),
                   ratio_cell(s["cost"]) if name != "separate" else "1.00x (reference)"]
                  for name, s in result["stats"].items()])
    screen = table(["operation", "seconds median (min–max)"],
                   [[f"exp.runs ({many['rows']:,} rows)", cell(many["runs"], digits=2)],
                    ["exp.summary", cell(many["summary"], digits=2)],
                    [f"RunComparison full redraw ({many['points']:,} points)",
                     cell(many["redraw"], digits=2)]])
    return (f"**Grid of 8 digits runs ({sizes['epochs']} epochs each)**\n\n{grid}\n\n"
            f"**{sizes['runs']} runs of {sizes['many_epochs']} epochs on screen**\n\n{screen}")
