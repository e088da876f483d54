"""Training throughput: samples/s, ratio to the hand-written loop, peak RSS.

Rows: the guide's MLP on synthetic MNIST-shaped data (60,000 x 784, one epoch) at
batch 256 and 32; the digits MLP (10 epochs over the 1,797 digits, batch 32); a small CNN
(batch 64). Contenders: all of :data:`bench.contenders.TRAINING`.
"""

from __future__ import annotations

from .. import workloads
from ..contenders import TRAINING
from ..harness import Config, Pool, Step, label, measure_row
from .common import cell, errors_note, ratio_cell, row_stats, table

NAME = "training"
TITLE = "Training throughput"


def rows(config: Config) -> list[tuple[dict, int, int]]:
    """``(workload, batch_size, epochs)`` for each row."""
    if config.quick:
        return [(workloads.guide_mlp(n=1_024), 256, 1), (workloads.guide_mlp(n=256), 32, 1),
                (workloads.digits_mlp(), 32, 1), (workloads.small_cnn(n=128), 64, 1)]
    return [(workloads.guide_mlp(), 256, 1), (workloads.guide_mlp(), 32, 1),
            (workloads.digits_mlp(), 32, 10), (workloads.small_cnn(n=6_400), 64, 1)]


def run(pool: Pool, config: Config, context: dict) -> dict:
    return measure(pool, config, rows(config), TRAINING)


def measure(pool: Pool, config: Config, row_list: list[tuple[dict, int, int]],
            names: list[str]) -> dict:
    """Time ``names`` on each ``(workload, batch_size, epochs)`` row (also the gpu table's)."""
    results = []
    for workload, batch, epochs in row_list:
        n = workload["n"]
        step = Step("train", "train", {"n": n, "epochs": epochs, "batch_size": batch},
                    samples=n * epochs)
        warm_n = min(n, (4 if config.quick else 40) * batch)
        warm = Step("warm", "train", {"n": warm_n, "epochs": 1, "batch_size": batch}, warm_n)
        raw = measure_row(pool, names, workload, [step], config.repeats, warmup=[warm])
        results.append({"workload": workload, "batch_size": batch, "epochs": epochs,
                        "samples": n * epochs, "steps": epochs * -(-n // batch),
                        "stats": row_stats(raw["contenders"], "train", n * epochs),
                        "vs_best": {k: v["ratio"] for k, v in row_stats(
                            raw["contenders"], "train", n * epochs, "hand_fused").items()},
                        "raw": raw["contenders"], "errors": raw["errors"]})
    return {"rows": results}


def describe(row: dict) -> str:
    w = row["workload"]
    shape = "x".join(map(str, w["input_shape"]))
    epochs = f", {row['epochs']} epochs" if row["epochs"] > 1 else ""
    return f"{w['name']} ({w['n']:,} x {shape}{epochs}), batch {row['batch_size']}"


def markdown(result: dict) -> str:
    out = []
    for row in result["rows"]:
        lines = []
        for name, s in row["stats"].items():
            rss = s["peak_rss_mib"]
            compiled = row["raw"][name].get("extras", {}).get("compile_seconds")
            lines.append([label(name), cell(s["samples_per_s"]), ratio_cell(s["ratio"]),
                          ratio_cell(row.get("vs_best", {}).get(name)),
                          f"{rss:,.0f}" if rss else "–",
                          f"{compiled:.1f}" if compiled is not None else "–"])
        out.append(f"**{describe(row)}** — {row['steps']:,} steps per measurement\n\n"
                   + table(["contender", "samples/s median (min–max)", "x hand loop",
                            "x best hand loop", "peak RSS MiB", "compile s (not timed)"], lines)
                   + errors_note(row["errors"]))
    return "\n\n".join(out)
