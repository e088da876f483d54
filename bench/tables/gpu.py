"""On the device: the captured step (CUDA graphs) and the stacked sweep at batch 32.

``python -m bench --device cuda --quick`` runs this table alone, in about five minutes on
a GPU (compiles included), so it fits a short loan of one. ``python -m bench gpu --device
cpu --quick`` runs the same code on the CPU (a smoke test); ``--dry-run`` prints the plan
and measures nothing. Without a GPU, ``--device cuda`` stops at once and says so.

What it measures: every contender keeps its data resident on the device (moved once).
The captured step (``xb.fit(compile=True)``: one graph per step, CUDA graphs through
``mode="reduce-overhead"``) runs there with ``terminate_on_nan=False``, so no batch waits
on the host: the losses are read in bulk, after the epoch (with the guard on, each step
reads one flag). Rows: the guide MLP and the digits MLP at batch 32 against the
hand-written loops; then the digits sweep (16 and 64 configurations) stacked, stacked and
captured, and as sequential fits, all on the device.
"""

from __future__ import annotations

from .. import workloads
from ..harness import Config, Pool
from . import sweep, training

NAME = "gpu"
TITLE = "On the device: captured step and stacked sweep, batch 32"
CONTENDERS = ["hand", "hand_fused", "xb", "xb_compiled"]


def plan(config: Config) -> dict:
    """The rows: ``training`` as ``(workload, batch, epochs)``, ``sweep`` as sweep rows."""
    steps = 200 if config.quick else 2_000
    digits = sweep.rows(quick=False)[0]
    return {"training": [(workloads.guide_mlp(n=32 * steps), 32, 1),
                         (workloads.digits_mlp(), 32, 2 if config.quick else 10)],
            "sweep": [{**digits, "epochs": 2 if config.quick else 10, "members": m,
                       "device": "gpu" if config.device == "cuda" else "cpu"}
                      for m in (16, 64)]}


def describe(config: Config) -> str:
    """The plan in words (``--dry-run``)."""
    p = plan(config)
    lines = [f"device {config.device}, {config.repeats} rounds, contenders "
             f"{', '.join(CONTENDERS)}"]
    lines += [f"training: {training.describe({'workload': w, 'batch_size': b, 'epochs': e})}"
              for w, b, e in p["training"]]
    lines += [f"sweep: {r['name']}, batch {r['batch_size']}, {r['epochs']} epochs, "
              f"M={r['members']} on {r['device']}" for r in p["sweep"]]
    return "\n".join(lines)


def run(pool: Pool, config: Config, context: dict) -> dict:
    p = plan(config)
    names = [n for n in CONTENDERS if config.only is None or n in config.only]
    return {"training": training.measure(pool, config, p["training"], names),
            "sweep": sweep.measure(config, p["sweep"])}


def markdown(result: dict) -> str:
    return (training.markdown(result["training"]) + "\n\n**Stacked sweep on the device**\n\n"
            + sweep.markdown(result["sweep"]))
