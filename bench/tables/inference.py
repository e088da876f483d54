"""Inference: ``predict`` over 10,000 samples, samples/s and ratio to raw inference batches.

Rows: the guide's MLP at batch 1,024 and at batch 32, the small CNN at batch 1,024. One
measurement is ``calls`` predict calls in a row (fixed per row, so the reference's
measurement lasts a few tenths of a second), so timer noise stays well below the 5% target.
"""

from __future__ import annotations

from .. import workloads
from ..contenders import INFERENCE
from ..harness import Config, Pool, Step, label, measure_row
from .common import cell, errors_note, ratio_cell, row_stats, table

NAME = "inference"
TITLE = "Inference (predict)"


def rows(config: Config) -> list[tuple[dict, int, int]]:
    """``(workload, batch_size, calls)``."""
    if config.quick:
        return [(workloads.guide_mlp(n=2_048), 1024, 1), (workloads.small_cnn(n=256), 256, 1)]
    return [(workloads.guide_mlp(n=10_000), 1024, 5), (workloads.guide_mlp(n=10_000), 32, 2),
            (workloads.small_cnn(n=10_000), 1024, 1)]


def run(pool: Pool, config: Config, context: dict) -> dict:
    results = []
    for workload, batch, calls in rows(config):
        n = workload["n"]
        step = Step("predict", "predict", {"n": n, "batch_size": batch, "calls": calls},
                    samples=n * calls)
        warm = Step("warm", "predict", {"n": n, "batch_size": batch, "calls": 1}, n)
        repeats = config.repeats if config.quick or calls == 1 else max(config.repeats, 7)
        raw = measure_row(pool, INFERENCE, workload, [step], repeats, warmup=[warm])
        results.append({"workload": workload, "batch_size": batch, "calls": calls,
                        "samples": n * calls,
                        "stats": row_stats(raw["contenders"], "predict", n * calls),
                        "raw": raw["contenders"], "errors": raw["errors"]})
    return {"rows": results}


def markdown(result: dict) -> str:
    out = []
    for row in result["rows"]:
        w = row["workload"]
        lines = [[label(name, predict=True), cell(s["samples_per_s"]), ratio_cell(s["ratio"]),
                  f"{s['peak_rss_mib']:,.0f}" if s["peak_rss_mib"] else "–"]
                 for name, s in row["stats"].items()]
        calls = f", {row['calls']} calls per measurement" if row["calls"] > 1 else ""
        out.append(f"**{w['name']}, {w['n']:,} samples, batch {row['batch_size']:,}{calls}**\n\n"
                   + table(["contender", "samples/s median (min–max)", "x raw batches",
                            "peak RSS MiB"], lines) + errors_note(row["errors"]))
    return "\n\n".join(out)
