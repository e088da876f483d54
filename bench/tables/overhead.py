"""Per-step framework overhead on a tiny model (10 -> 10 linear, batch 32).

Each contender trains one epoch on ``short`` and on ``long`` batches, back to back in
every round. The time per step is the slope ``(t_long - t_short) / (long - short)``, so
fixed per-call costs (argument checks, building a Trainer or a DataLoader) drop out; they
are reported separately as the intercept ``t_short - short * slope``. Overhead is a
contender's slope minus the hand-written loop's slope in the same round; it is also given
against the hand loop with ``Adam(fused=True)``, which isolates a framework's loop from
its optimizer kernels (xb.fit uses fused Adam, so against the default loop its loop costs
are partly hidden by the faster optimizer).
"""

from __future__ import annotations

from .. import workloads
from ..contenders import TRAINING
from ..harness import Config, Pool, Step, label, measure_row, summary
from .common import cell, errors_note, table

NAME = "overhead"
TITLE = "Per-step overhead (tiny model)"
BATCH = 32


def step_counts(config: Config) -> tuple[int, int]:
    return (10, 40) if config.quick else (250, 1_000)


def run(pool: Pool, config: Config, context: dict) -> dict:
    short, long = step_counts(config)
    workload = workloads.tiny_linear(n=long * BATCH)
    steps = [Step(key, "train", {"n": count * BATCH, "epochs": 1, "batch_size": BATCH},
                  count * BATCH) for key, count in (("short", short), ("long", long))]
    raw = measure_row(pool, TRAINING, workload, steps, config.repeats, warmup=steps[:1],
                      rss=False)
    contenders = raw["contenders"]
    slopes = {n: [(b - a) / (long - short) for a, b in zip(d["seconds"]["short"],
                                                            d["seconds"]["long"], strict=True)]
              for n, d in contenders.items()}
    stats = {}
    for name, data in contenders.items():
        intercepts = [a - short * s for a, s in zip(data["seconds"]["short"], slopes[name],
                                                    strict=True)]
        stats[name] = {"step_seconds": summary(slopes[name]),
                       "overhead_seconds": _over(slopes, name, "hand"),
                       "overhead_vs_fused_seconds": _over(slopes, name, "hand_fused"),
                       "per_call_seconds": summary(intercepts)}
    return {"workload": workload, "batch_size": BATCH, "short_steps": short,
            "long_steps": long, "stats": stats, "raw": contenders, "errors": raw["errors"]}


def _over(slopes: dict, name: str, reference: str) -> dict:
    if reference not in slopes:
        return summary([])
    return summary([s - r for s, r in zip(slopes[name], slopes[reference], strict=False)])


def markdown(result: dict) -> str:
    lines = [[label(name), cell(s["step_seconds"], scale=1e6),
              cell(s["overhead_seconds"], scale=1e6) if name != "hand" else "0 (reference)",
              cell(s["overhead_vs_fused_seconds"], scale=1e6) if name != "hand_fused"
              else "0 (reference)",
              cell(s["per_call_seconds"], scale=1e3)]
             for name, s in result["stats"].items()]
    return (f"**{result['workload']['name']}, batch {result['batch_size']}: one epoch of "
            f"{result['short_steps']:,} and of {result['long_steps']:,} steps per round**\n\n"
            + table(["contender", "µs per step", "µs over the hand loop",
                     "µs over the fused hand loop", "fixed ms per call"], lines) + errors_note(result["errors"]))
