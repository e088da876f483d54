"""The physical limit: measured float32 matmul speed for the guide MLP's training shapes,
and the fraction of that bound each contender reaches in the training table.

Two readings of the bound, both from the same matmul timings (:mod:`bench.gemm`):

- the issue's: a training epoch costs about ``6 x params x samples`` FLOPs; a contender's
  achieved rate is ``6 x params x samples/s``, divided by this machine's measured matmul
  GFLOP/s for the step's shapes (total matmul FLOPs / total matmul time);
- the strict one: ``B / (sum of the step's matmul times)``, the samples/s of a loop doing
  nothing but its matmuls. The guide's MLP runs 1.01 MFLOP of matmuls per sample, not
  the 1.41 of 6 x params (autograd never computes the first layer's input gradient), so
  the strict fraction is the issue's divided by 1.40.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import workloads
from ..harness import Config, Pool, label, summary
from .common import cell, num, table

NAME = "limit"
TITLE = "Physical limit (float32 matmul bound)"
BATCHES = (32, 256)


def _training_rows(context: dict, config: Config) -> tuple[list, str]:
    """The guide-MLP rows of this run's training table, else of results/latest.json."""
    if "training" in context:
        return context["training"]["rows"], "this run"
    latest = Path(__file__).resolve().parent.parent / "results" / "latest.json"
    if latest.exists():
        data = json.loads(latest.read_text())
        training = data.get("tables", {}).get("training")
        if training:
            return training["rows"], f"results/latest.json ({data.get('started', '?')})"
    return [], "none"


def run(pool: Pool, config: Config, context: dict) -> dict:
    workload = workloads.guide_mlp()
    dims = [784] + [la["units"] for la in workload["layers"] if la["kind"] == "dense"]
    ref = pool.available(["hand"])
    if not ref:
        return {"error": "the hand worker (plain torch) did not start"}
    gemm = pool.workers["hand"].call(
        "gemm", dims=dims, batch_sizes=list(BATCHES), min_seconds=0.01 if config.quick else 0.05,
        repeats=3 if config.quick else 5, clock=config.clock)
    flops_sample = workloads.train_matmul_flops(workload)
    params = workloads.param_count(workload)
    rows, source = _training_rows(context, config)
    fractions: dict[str, dict] = {}
    for row in rows:
        w = row["workload"]
        if w["name"] != "guide MLP" or row["batch_size"] not in BATCHES:
            continue
        bound = gemm["batches"][str(row["batch_size"])]["bound_samples_per_s"]
        gflops = gemm["batches"][str(row["batch_size"])]["gflops"]
        fractions[str(row["batch_size"])] = {
            name: {"fraction": summary([v * 6 * params / 1e9 / gflops for v in s["samples_per_s"]["values"]]),
                   "gflops": summary([v * 6 * params / 1e9 for v in s["samples_per_s"]["values"]]),
                   "strict_fraction": summary([v / bound for v in s["samples_per_s"]["values"]])}
            for name, s in row["stats"].items()}
    return {"gemm": gemm, "params": params, "train_matmul_flops_per_sample": flops_sample,
            "six_p_flops_per_sample": 6 * params, "fractions": fractions,
            "training_source": source}


def markdown(result: dict) -> str:
    if "error" in result:
        return f"(not measured: {result['error']})"
    gemm = result["gemm"]
    shape_rows = []
    for batch, b in gemm["batches"].items():
        for op in b["ops"]:
            shape_rows.append([f"batch {batch}: {op['layer']} {op['role']}", op["shape"],
                               f"{num(op['gflops'])} ({num(op['gflops_min'])}–"
                               f"{num(op['gflops_max'])})",
                               f"{op['seconds'] * 1e6:,.1f}"])
        shape_rows.append([f"**batch {batch}: whole step**", "", f"**{num(b['gflops'])}**",
                           f"**{b['step_seconds'] * 1e6:,.1f}** → bound "
                           f"**{b['bound_samples_per_s']:,.0f} samples/s**"])
    sq = gemm["square"]
    out = [f"Float32 matmul speed for the guide MLP's shapes ({result['params']:,} params; "
           f"{result['train_matmul_flops_per_sample'] / 1e6:.2f} MFLOP of matmuls per "
           f"training sample, vs {result['six_p_flops_per_sample'] / 1e6:.2f} by 6 x params). "
           f"Reference: a {sq['n']}x{sq['n']} square matmul runs at {num(sq['gflops'])} "
           f"GFLOP/s.\n",
           table(["matmul", "shape", "GFLOP/s median (min–max)", "µs per call"], shape_rows)]
    for batch, fr in result["fractions"].items():
        bound = gemm["batches"][batch]["bound_samples_per_s"]
        gflops = gemm["batches"][batch]["gflops"]
        lines = [[label(name), cell(f["gflops"]), cell(f["fraction"], scale=100, suffix="%"),
                  cell(f["strict_fraction"], scale=100, suffix="%")]
                 for name, f in fr.items()]
        out.append(f"\n**Fraction of the bound, guide MLP, batch {batch}** (matmuls at "
                   f"{num(gflops)} GFLOP/s; strict bound {bound:,.0f} samples/s; training "
                   f"numbers from {result['training_source']})\n\n"
                   + table(["contender", "GFLOP/s at 6 x params per sample",
                            "% of the bound (6 x params)", "% of the strict bound"], lines))
    return "\n".join(out)
