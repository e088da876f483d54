"""Classroom cost: a live decision boundary and the open inside-the-network panels
against headless ``xb.fit``, same model, data and run.

Measured in a real kernel, as the ``live`` table: a notebook executed with nbclient, so
every figure update is serialised and sent over IOPub. The contenders alternate inside
that kernel (headless, dashboard, playground, panels off, panels open, headless, ...),
each timed around the training call alone; the first round is a warm-up and is
discarded. Each cost is the round's ratio to that round's headless time. The boundary's
own share is the playground against the plain dashboard (the playground is a dashboard
plus the boundary).
"""

from __future__ import annotations

from ..harness import Config, Pool, paired, summary
from .common import cell, measure_contenders, ratio_cell, table

NAME = "classroom"
TITLE = "Classroom cost: live decision boundary and inside-the-network panels vs headless"
CONTENDERS = ("headless", "dashboard", "playground", "panels_off", "panels_open")
LABELS = {"headless": "xb.fit (headless)",
          "dashboard": "TrainingDashboard (no boundary)",
          "playground": "Playground (dashboard + live boundary)",
          "panels_off": "xb.fit + NetworkPanels (closed)",
          "panels_open": "xb.fit + NetworkPanels (open: hooks, norms, histograms)"}

SETUP = """
import json, time, torch, exburn_nb as xb
torch.set_num_threads({threads})
options = dict(dataset="spirals", classes=3, n={n}, hidden={hidden}, activation="relu",
               epochs={epochs}, batch_size={batch_size}, learning_rate=0.01, seed=0, grid={grid})
pg = xb.widgets.Playground(**options)
x, y, tx, ty = pg.inputs, pg.points[1], pg.test_inputs, pg.test_points[1]
fit_options = dict(epochs={epochs}, batch_size={batch_size}, validation_data=(tx, ty),
                   accuracy=True, seed=0, verbose=False)
def model():
    return pg.make_model()
def headless():
    m = model()
    t = time.perf_counter()
    xb.fit(m, (x, y), **fit_options)
    return time.perf_counter() - t
def dashboard():
    d = xb.widgets.TrainingDashboard(model(), (x, y), **fit_options)
    display(d)
    t = time.perf_counter()
    d.start(); d.wait()
    return time.perf_counter() - t
def playground():
    p = xb.widgets.Playground(**options)
    display(p)
    t = time.perf_counter()
    p.dashboard.start(); p.dashboard.wait()
    return time.perf_counter() - t
def panels(enabled):
    m = model()
    cb = xb.widgets.NetworkPanels(m, enabled=enabled)
    display(cb)
    t = time.perf_counter()
    xb.fit(m, (x, y), callbacks=[cb.inspector], **fit_options)
    return time.perf_counter() - t
def panels_off():
    return panels(False)
def panels_open():
    return panels(True)
times = {{name: [] for name in {contenders}}}
"""
ROUND = """
for name in {contenders}:
    times[name].append(globals()[name]())
"""


def workloads(quick: bool) -> list[dict]:
    """The playground's deep-spirals lesson: small steps, where a redraw weighs most."""
    if quick:
        return [{"name": "spirals, 3 x 32 relu, batch 16", "n": 300, "hidden": [32, 32, 32],
                 "epochs": 3, "batch_size": 16, "grid": 60}]
    return [{"name": "spirals (600 points), 3 x 32 relu, batch 16, 30 epochs, 60 x 60 grid",
             "n": 600, "hidden": [32, 32, 32], "epochs": 30, "batch_size": 16, "grid": 60}]


def run(pool: Pool, config: Config, context: dict) -> dict:
    rows = []
    for workload in workloads(config.quick):
        config.echo(f"  classroom: {workload['name']}")
        seconds = measure_contenders(SETUP, ROUND, CONTENDERS, workload, config.repeats,
                                     config.threads)
        base = seconds["headless"]
        rows.append({"workload": workload,
                     "boundary_share": paired(seconds["playground"], seconds["dashboard"]),
                     "stats": {name: {"seconds": summary(values), "cost": paired(values, base)}
                               for name, values in seconds.items()}})
    return {"rows": rows, "threads": config.threads}


def markdown(result: dict) -> str:
    parts = []
    for row in result["rows"]:
        lines = [[LABELS[name], cell(s["seconds"], digits=3),
                  ratio_cell(s["cost"]) if name != "headless" else "1.00x (reference)"]
                 for name, s in row["stats"].items()]
        parts.append(f"**{row['workload']['name']}**\n\n"
                     + table(["contender", "seconds median (min–max)", "time x headless"], lines)
                     + f"\n\nThe live boundary alone (playground / dashboard): "
                       f"{ratio_cell(row['boundary_share'])}.")
    return "\n\n".join(parts)
