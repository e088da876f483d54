"""Playground redraw cost: the live decision boundary and the network picture, per redraw.

Measured in a real kernel (nbclient), where the figures' messages really go out: one
displayed :class:`~exburn_nb.widgets.Playground` per network. Each round changes every
weight a little (as a training step does), then redraws as the training loop does: the
values computed (:meth:`boundary` and the picture's :meth:`compute`, on the training
thread) and drawn (``show_boundary`` and the picture's ``show``, on the drawing thread),
each timed; the bytes each figure sends are counted at its comm (message JSON + binary
buffers). Per round the mean over a few redraws; the first round is a warm-up. The page's
frame time while the figures update is measured by tests/browser/test_lab_network.py.
"""

from __future__ import annotations

from ..harness import Config, Pool, summary
from .common import cell, kernel_rounds, table

NAME = "playground_redraw"
TITLE = "Playground redraw cost: live boundary and network picture (real kernel)"
PARTS = ("boundary_compute", "picture_compute", "boundary_draw", "picture_draw")

SETUP = """
import json, time, torch, exburn_nb as xb
torch.set_num_threads({threads})
torch.manual_seed(0)
sent = {{}}
def count(widget, key):
    send = widget.comm.send
    def counted(data=None, metadata=None, buffers=None):
        sent[key] = sent.get(key, 0) + len(json.dumps(data, default=str)) + sum(
            memoryview(b).nbytes for b in buffers or ())
        return send(data=data, metadata=metadata, buffers=buffers)
    widget.comm.send = counted
playgrounds = {{}}
for i, hidden in enumerate({networks}):
    pg = xb.widgets.Playground(dataset="spirals", n=400, hidden=hidden, activation="tanh",
                               grid={grid})
    display(pg)
    count(pg.figure, (i, "boundary")); count(pg.network.figure, (i, "picture"))
    playgrounds[i] = pg
results = {{i: {{k: [] for k in ("boundary_compute", "picture_compute", "boundary_draw",
                                 "picture_draw", "boundary_bytes", "picture_bytes")}}
           for i in playgrounds}}
def timed(f, *a):
    t = time.perf_counter(); out = f(*a); return out, time.perf_counter() - t
"""
ROUND = """
for i, pg in playgrounds.items():
    r, u = results[i], {updates}
    totals = dict.fromkeys(r, 0.0)
    for _ in range(u):
        with torch.no_grad():
            for p in pg.model.module.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        before = dict(sent)
        z, s = timed(pg.boundary); totals["boundary_compute"] += s
        frame, s = timed(pg.network.compute); totals["picture_compute"] += s
        _, s = timed(pg.show_boundary, z); totals["boundary_draw"] += s
        _, s = timed(pg.network.show, frame); totals["picture_draw"] += s
        for part in ("boundary", "picture"):
            totals[part + "_bytes"] += sent.get((i, part), 0) - before.get((i, part), 0)
    for k, v in totals.items():
        r[k].append(v / u)
"""


def workloads(quick: bool) -> dict:
    """The networks drawn: the default lesson, the browser test's, a deep and a wide one."""
    if quick:
        return {"networks": [[8], [64, 64, 64]], "grid": 60, "updates": 2}
    return {"networks": [[8], [16, 16], [32, 32, 32], [64, 64, 64]], "grid": 60,
            "updates": 5}


def run(pool: Pool, config: Config, context: dict) -> dict:
    work = workloads(config.quick)
    config.echo(f"  playground: networks {work['networks']}")
    setup = SETUP.format(threads=config.threads, networks=work["networks"], grid=work["grid"])
    raw = kernel_rounds(setup, ROUND.format(updates=work["updates"]), config.repeats,
                        extra=["print(json.dumps(results))"])
    rows = []
    for i, hidden in enumerate(work["networks"]):
        values = raw[str(i)]
        rows.append({"hidden": hidden, **{k: summary(v[1:]) for k, v in values.items()}})
    return {"rows": rows, "grid": work["grid"], "updates": work["updates"],
            "threads": config.threads}


def markdown(result: dict) -> str:
    lines = [[" x ".join(map(str, row["hidden"])) + " tanh"]
             + [cell(row[part], digits=3, scale=1000) for part in PARTS]
             + [cell(row["boundary_bytes"], digits=3, scale=1 / 1000),
                cell(row["picture_bytes"], digits=3, scale=1 / 1000)]
             for row in result["rows"]]
    return (table(["hidden layers", "boundary compute ms", "picture compute ms",
                   "boundary draw ms", "picture draw ms", "boundary KB", "picture KB"], lines)
            + f"\n\nPer redraw, median (min–max) over the rounds of the mean of "
              f"{result['updates']} redraws; boundary {result['grid']} x {result['grid']}, "
              "picture 24 x 24 per neuron, 8 neurons drawn per layer. Compute runs on the "
              "training thread at a batch boundary, draw on the drawing thread (at most 2 "
              "redraws a second).")
