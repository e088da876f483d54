"""Data-parallel training: ``xb.fit(..., processes=1)`` against ``processes=2`` (gloo, CPU).

One fresh Python process runs the rounds (so no other table's threads or imports are in
the way): per round, one ``xb.fit`` call of each on the guide's MLP (synthetic
MNIST-shaped data, batch 256 global), alternating. Reported per contender: samples/s of
the whole call (the launch included: forking the ranks, joining the group, sending rank
0's model back) and of the training epochs alone (the history's ``samples_per_s``).
The per-batch reduction's cost is timed apart, in a 2-rank group: the one ``all_reduce``
of 6 numbers each batch makes, against the time of one batch of the 2-process run.
Each rank uses ``cores // 2`` threads (``--threads`` sets the 1-process run's).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .. import workloads
from ..harness import Config, Pool, paired, summary
from .common import cell, ratio_cell, table

NAME = "distributed"
TITLE = "Data-parallel training: processes=1 vs processes=2 (gloo, CPU)"
BATCH = 256

SCRIPT = """
import json, os, sys, tempfile, time
import torch, torch.distributed as dist, torch.multiprocessing as mp
import exburn_nb as xb
from bench.contenders.exburn import build_spec
from bench.workloads import make_data
workload, epochs, repeats, threads, calls = json.loads(sys.argv[1])
torch.set_num_threads(threads)
x, y = make_data(workload)
def fit(processes):
    model = xb.compile(build_spec(workload), learning_rate=1e-3, seed=0)
    t = time.perf_counter()
    xb.fit(model, (x, y), epochs=epochs, batch_size={batch}, seed=0, verbose=False,
           processes=processes)
    seconds = time.perf_counter() - t
    return seconds, float(model.history["samples_per_s"].median())
def reduce_rank(rank, store, out):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2)
    buf = torch.zeros(6, dtype=torch.float64)
    for _ in range(50):
        dist.all_reduce(buf)
    times = []
    for _ in range(repeats):
        dist.barrier(); t = time.perf_counter()
        for _ in range(calls):
            dist.all_reduce(buf)
        times.append((time.perf_counter() - t) / calls)
    if rank == 0:
        out.put(times)
    dist.destroy_process_group()
times = {{"1": [], "2": []}}
fit(1); fit(2)  # warm-up
for _ in range(repeats):
    for p in (1, 2):
        times[str(p)].append(fit(p))
ctx = mp.get_context("fork")
out = ctx.SimpleQueue()
with tempfile.TemporaryDirectory() as tmp:
    ranks = [ctx.Process(target=reduce_rank, args=(r, tmp + "/store", out)) for r in range(2)]
    for p in ranks: p.start()
    reduction = out.get()
    for p in ranks: p.join()
print(json.dumps({{"fit": times, "reduction": reduction}}))
"""


def run(pool: Pool, config: Config, context: dict) -> dict:
    n, epochs = (2_048, 1) if config.quick else (20_480, 2)
    workload = workloads.guide_mlp(n=n)
    config.echo(f"  distributed: guide MLP, {n:,} samples x {epochs} epochs, batch {BATCH}")
    argument = json.dumps([workload, epochs, config.repeats, config.threads,
                           200 if config.quick else 2_000])
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(batch=BATCH), argument],
                          capture_output=True, text=True, check=True, timeout=3_600)
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    calls = {p: [s for s, _ in raw["fit"][p]] for p in ("1", "2")}
    epoch_rates = {p: [r for _, r in raw["fit"][p]] for p in ("1", "2")}
    samples = n * epochs
    call_rates = {p: [samples / s for s in calls[p]] for p in calls}
    batches = epochs * -(-n // BATCH)
    batch_seconds = [s / batches for s in calls["2"]]
    return {"workload": workload, "epochs": epochs, "batch_size": BATCH,
            "threads": config.threads,
            "stats": {p: {"call_samples_per_s": summary(call_rates[p]),
                          "epoch_samples_per_s": summary(epoch_rates[p]),
                          "speedup": paired(call_rates[p], call_rates["1"])}
                      for p in ("1", "2")},
            "reduction_seconds": summary(raw["reduction"]),
            "reduction_share": summary([r / b for r, b in zip(raw["reduction"], batch_seconds,
                                                              strict=False)])}


def markdown(result: dict) -> str:
    w = result["workload"]
    lines = [[f"processes={p}", cell(s["call_samples_per_s"]), cell(s["epoch_samples_per_s"]),
              ratio_cell(s["speedup"]) if p != "1" else "1 (reference)"]
             for p, s in result["stats"].items()]
    red = result["reduction_seconds"]
    return (f"**{w['name']} ({w['n']:,} x 784, {result['epochs']} epochs), global batch "
            f"{result['batch_size']}**\n\n"
            + table(["run", "samples/s, whole call", "samples/s, epochs only",
                     "x processes=1"], lines)
            + f"\n\nThe per-batch all_reduce (6 float64, 2 gloo ranks): {cell(red, scale=1e6)} µs"
            f" per batch, {cell(result['reduction_share'], scale=100)} % of a 2-process batch.")
