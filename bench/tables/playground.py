"""Live cost of the playground: training with its live boundary against the same run
headless, in a real kernel, and what one boundary frame costs.

Measured in a real kernel (nbclient), so every frame is really serialised and sent over
IOPub; no page acknowledges frames there, so frames go out at the playground's highest rate
(:data:`~exburn_nb.widgets.playground.MAX_UPDATES_PER_S`), its worst case. Contenders
alternate on the same data, network and batch size; the first round is a warm-up. The
network picture (issue 21 item 4) is not part of this table yet. The page's frame time
while the boundary updates is measured by ``tests/browser/test_lab_playground.py``.
"""

from __future__ import annotations

from ..harness import Config, Pool, paired, summary
from .common import cell, measure_contenders, ratio_cell, table

NAME = "playground"
TITLE = "Live cost: the playground's boundary vs headless xb.fit (real kernel)"
CONTENDERS = ("headless", "playground")
LABELS = {"headless": "xb.fit (headless)", "playground": "Playground (live boundary, curves)"}

SETUP = """
import json, time, torch, exburn_nb as xb
torch.set_num_threads({threads})
pg = xb.widgets.Playground(dataset="spirals", n={n}, hidden={hidden}, activation="relu",
                           batch_size={batch_size}, epochs={epochs}, epoch_s=0.0)
display(pg)
def headless():
    m = pg.make_model()
    t = time.perf_counter()
    xb.fit(m, (pg.inputs, pg.points[1]), epochs={epochs}, batch_size={batch_size},
           seed=0, verbose=False)
    return time.perf_counter() - t
def playground():
    pg.dashboard.reset_weights()
    t = time.perf_counter()
    pg.dashboard.start(); pg.dashboard.wait()
    return time.perf_counter() - t
def frame():
    t = time.perf_counter(); probs = pg.boundary(); t1 = time.perf_counter()
    pg.show_boundary(probs); t2 = time.perf_counter()
    return [t1 - t, t2 - t1, len(pg.figure.layout.images[0].source)]
times = {{name: [] for name in {contenders}}}
frames = []
"""
ROUND = """
for name in {contenders}:
    times[name].append(globals()[name]())
frames.append(frame())
"""


def workloads(quick: bool) -> list[dict]:
    """The browser test's run: spirals, 600 points, two hidden layers of 16, batch 8."""
    return [{"name": "spirals 600 points, 16-16 relu, batch 8, 60 x 60 grid", "n": 600,
             "hidden": [16, 16], "batch_size": 8, "epochs": 5 if quick else 40}]


def run(pool: Pool, config: Config, context: dict) -> dict:
    rows = []
    for workload in workloads(config.quick):
        config.echo(f"  playground: {workload['name']}")
        seconds = measure_contenders(SETUP + "times['frame'] = frames\n", ROUND,
                                     CONTENDERS, workload, config.repeats, config.threads)
        frames = seconds.pop("frame")
        base = seconds["headless"]
        rows.append({"workload": workload, "stats": {
            name: {"seconds": summary(values), "cost": paired(values, base)}
            for name, values in seconds.items()},
            "frame": {"pass_s": summary([f[0] for f in frames]),
                      "send_s": summary([f[1] for f in frames]),
                      "bytes": summary([f[2] for f in frames])}})
    return {"rows": rows, "threads": config.threads}


def markdown(result: dict) -> str:
    parts = []
    for row in result["rows"]:
        lines = [[LABELS[name], cell(s["seconds"]),
                  ratio_cell(s["cost"]) if name != "headless" else "1.00x (reference)"]
                 for name, s in row["stats"].items()]
        f = row["frame"]
        lines.append(["one boundary frame: forward pass + colours/PNG/send (ms), size (KB)",
                      f"{cell(f['pass_s'], scale=1000)} + {cell(f['send_s'], scale=1000)}",
                      cell(f["bytes"], scale=1 / 1000, digits=1)])
        parts.append(f"**{row['workload']['name']}**\n\n"
                     + table(["contender", "seconds median (min–max)", "time x headless"],
                             lines))
    return "\n\n".join(parts)
