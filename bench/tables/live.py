"""Live cost: the dashboard and ``live_plot()`` against headless ``xb.fit``, same run.

Measured in a real kernel: a notebook is executed with nbclient, so every widget and
figure update is really serialised and sent over IOPub. Inside that kernel the three
contenders alternate (headless, live_plot, dashboard, headless, ...) on the same model,
data and batch size; each is timed around the training call alone. The first round is a
warm-up and is discarded. The cost is each round's ratio to that round's headless time.
"""

from __future__ import annotations

from ..harness import Config, Pool, paired, summary
from .common import cell, measure_contenders, ratio_cell, table

NAME = "live"
TITLE = "Live cost: dashboard and live_plot vs headless xb.fit (real kernel)"
CONTENDERS = ("headless", "live_plot", "dashboard")
LABELS = {"headless": "xb.fit (headless)", "live_plot": "xb.fit + live_plot()",
          "dashboard": "TrainingDashboard (background thread)"}

SETUP = """
import json, time, torch, exburn_nb as xb
torch.set_num_threads({threads})
torch.manual_seed(0)
x = torch.randn({samples}, {features}); y = torch.randint(0, 10, ({samples},))
def spec():
    s = xb.input("input", shape=(None, {features}))
    for i, w in enumerate({widths}):
        s = s.dense(w, activation="relu", name=f"hidden{{i + 1}}")
    return s.dense(10, name="output")
def headless():
    m = xb.compile(spec(), seed=0)
    t = time.perf_counter()
    xb.fit(m, (x, y), epochs={epochs}, batch_size={batch_size}, verbose=False)
    return time.perf_counter() - t
def live_plot():
    m = xb.compile(spec(), seed=0)
    cb = xb.widgets.live_plot()
    t = time.perf_counter()
    xb.fit(m, (x, y), epochs={epochs}, batch_size={batch_size}, verbose=False, callbacks=[cb])
    return time.perf_counter() - t
def dashboard():
    m = xb.compile(spec(), seed=0)
    d = xb.widgets.TrainingDashboard(m, (x, y), epochs={epochs}, batch_size={batch_size})
    display(d)
    t = time.perf_counter()
    d.start(); d.wait()
    return time.perf_counter() - t
times = {{name: [] for name in {contenders}}}
"""
ROUND = """
for name in {contenders}:
    times[name].append(globals()[name]())
"""


def workloads(quick: bool) -> list[dict]:
    """Guide MLP at batch 32 (many small steps: the worst case for per-batch listeners)
    and the digits-sized MLP (tiny steps)."""
    if quick:
        return [{"name": "guide MLP, batch 32", "samples": 2_000, "features": 784,
                 "widths": [256, 128], "batch_size": 32, "epochs": 1}]
    return [{"name": "guide MLP (20,000 x 784), batch 32", "samples": 20_000, "features": 784,
             "widths": [256, 128], "batch_size": 32, "epochs": 1},
            {"name": "digits-sized MLP (1,800 x 64, 10 epochs), batch 32", "samples": 1_800,
             "features": 64, "widths": [64], "batch_size": 32, "epochs": 10}]


def run(pool: Pool, config: Config, context: dict) -> dict:
    rows = []
    for workload in workloads(config.quick):
        config.echo(f"  live: {workload['name']}")
        seconds = measure_contenders(SETUP, ROUND, CONTENDERS, workload, config.repeats,
                                     config.threads)
        base = seconds["headless"]
        samples = workload["samples"] * workload["epochs"]
        rows.append({"workload": workload, "stats": {
            name: {"seconds": summary(values),
                   "samples_per_s": summary([samples / v for v in values]),
                   "cost": paired(values, base)} for name, values in seconds.items()}})
    return {"rows": rows, "threads": config.threads}


def markdown(result: dict) -> str:
    parts = []
    for row in result["rows"]:
        lines = [[LABELS[name], cell(s["samples_per_s"], digits=0),
                  ratio_cell(s["cost"]) if name != "headless" else "1.00x (reference)"]
                 for name, s in row["stats"].items()]
        parts.append(f"**{row['workload']['name']}**\n\n"
                     + table(["contender", "samples/s median (min–max)",
                              "time x headless"], lines))
    return "\n\n".join(parts)
