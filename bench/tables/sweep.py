"""Stacked sweeps: M configurations trained at once (``xb.sweep``) vs M sequential fits.

Each row trains M configurations of one network (a learning-rate x weight-decay grid,
Adam, each member its own seed) two ways, alternating in every round inside one worker
process: one stacked group (``xb.sweep.fit_stacked``) and M sequential ``xb.fit`` calls.
Only the training calls are timed (compiling the models is not). Peak memory: the RSS
growth of one stacked run (high-water mark reset first) and the engine's stacked tensors
(parameters, gradients, optimizer state) against M x one model's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..harness import MALLOC_SETTINGS, Config, Pool, paired, summary
from .common import cell, num, ratio_cell, table

NAME = "sweep"
TITLE = "Stacked sweeps: M configurations at once vs M sequential xb.fit"
TARGET = 0.25  # the issue: 16 digits-MLP configurations in <= 1/4 of the sequential time


def rows(quick: bool) -> list[dict]:
    """The digits MLP (16, 4 and 64 members) and the guide's MLP at batch 32 and 256."""
    digits = {"name": "digits MLP 64-32-10", "data": "digits", "widths": [32], "dropout": 0.0,
              "epochs": 1 if quick else 10, "batch_size": 32}
    guide = {"name": "guide MLP 784-256-128-10, dropout 0.2", "data": "synthetic",
             "n": 512 if quick else 6_000, "widths": [256, 128], "dropout": 0.2, "epochs": 1}
    return [{**digits, "members": 16}, {**digits, "members": 4},
            {**digits, "members": 64 if not quick else 16},
            {**guide, "batch_size": 32, "members": 16},
            {**guide, "batch_size": 256, "members": 16}]


def worker(row: dict, repeats: int, clock: str, mode: str) -> dict:
    """Run in a fresh process: the timed rounds (``mode="time"``), or the peak memory of
    one stacked run (``"stacked"``) or of one ``xb.fit`` (``"single"``) from a clean start."""
    import gc
    import time

    import torch

    import exburn_nb as xb
    from bench import workloads

    device = row.get("device", "cpu")  # "gpu": models, data and the stacked run on CUDA
    x, y = workloads.make_data(workloads.digits_mlp() if row["data"] == "digits"
                               else workloads.guide_mlp(n=row["n"]))
    where = "cuda" if device == "gpu" else "cpu"
    x, y = x.to(where), y.to(where)  # resident: moved once

    def sync() -> None:
        if device == "gpu":
            torch.cuda.synchronize()
    spec = xb.input("input", shape=(None, x.shape[1]))
    for i, w in enumerate(row["widths"]):
        spec = spec.dense(w, activation="relu", name=f"hidden{i + 1}")
        if row["dropout"]:
            spec = spec.dropout(row["dropout"], name=f"drop{i + 1}")
    spec = spec.dense(10, name="output")
    m = row["members"]
    side = int(m ** 0.5) if int(m ** 0.5) ** 2 == m else m
    grid = [(10 ** (-4 + 2 * (i % side) / max(side - 1, 1)),
             [0.0, 1e-4, 1e-3, 1e-2][(i // side) % 4]) for i in range(m)]
    cfgs = [xb.FitConfig(epochs=row["epochs"], batch_size=row["batch_size"], seed=i)
            for i in range(m)]

    def models() -> list:
        return [xb.compile(spec, learning_rate=lr, weight_decay=wd, seed=i, device=device)
                for i, (lr, wd) in enumerate(grid)]

    now = time.process_time if clock == "cpu" else time.perf_counter

    def stacked(compile_: bool = False) -> float:
        ms = models()
        gc.collect()
        t = now()
        xb.sweep.fit_stacked(ms, [c.replace(compile=compile_) for c in cfgs], (x, y))
        sync()
        return now() - t

    def sequential() -> float:
        total = 0.0
        for model, cfg in zip(models(), cfgs, strict=True):
            gc.collect()
            t = now()
            xb.fit(model, (x, y), cfg, verbose=False)
            sync()
            total += now() - t
        return total

    if mode != "time":
        return memory(mode, models(), cfgs, (x, y))
    stacked()  # warm-up, discarded
    t = time.perf_counter()
    stacked(True)  # warm-up with the compile, discarded (its time is reported)
    compile_seconds = time.perf_counter() - t
    times = {"stacked": [], "sequential": [], "compiled": []}
    for _ in range(repeats):
        times["stacked"].append(stacked())
        times["compiled"].append(stacked(True))
        times["sequential"].append(sequential())
    return {"times": times, "compile_seconds": compile_seconds}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory(mode: str, models: list, cfgs: list, data: tuple) -> dict:
    """Peak RSS growth of one stacked run, or of one ``xb.fit``, in a process that has
    run nothing else (high-water mark reset first); for the stacked run also the bytes of
    its stacked tensors (parameters, gradients, optimizer state) against M x one model's."""
    import gc

    import exburn_nb as xb

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return {"rss_mib": float("nan")}
    base = _rss_kib("VmRSS")
    x, y = data
    one = models[0]
    params = sum(p.numel() * p.element_size() for p in one.module.parameters())
    if mode == "single":
        xb.fit(one, data, cfgs[0], verbose=False)
        return {"rss_mib": (_rss_kib("VmHWM") - base) / 2**10,
                "one_model_mib": (2 * params + sum(
                    v.numel() * v.element_size() for s in one.torch_optimizer.state.values()
                    for v in s.values() if v.dim())) / 2**20,
                "data_mib": (x.numel() * x.element_size() + y.numel() * y.element_size()) / 2**20}
    trainer = xb.sweep.StackedTrainer(models, cfgs, data)
    trainer.run()
    return {"rss_mib": (_rss_kib("VmHWM") - base) / 2**10,
            "engine_mib": (sum(p.numel() * p.element_size() for p in trainer.engine.net.params) * 2
                           + trainer.engine.opt.nbytes()) / 2**20}


def run(pool: Pool, config: Config, context: dict) -> dict:
    return measure(config, rows(config.quick))


def measure(config: Config, row_list: list[dict]) -> dict:
    """Time each row in fresh processes (on the GPU where a row says ``device="gpu"``:
    the gpu table's; this table's rows run on the CPU)."""
    results = []
    root = Path(__file__).resolve().parents[2]
    gpu = any(row.get("device") == "gpu" for row in row_list)
    env = {**os.environ, "OMP_NUM_THREADS": str(config.threads),
           "MKL_NUM_THREADS": str(config.threads),
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           **({} if gpu else {"CUDA_VISIBLE_DEVICES": ""}),
           **({} if config.default_malloc else MALLOC_SETTINGS)}
    clock = config.clock if config.device == "cpu" and not gpu else "wall"
    for row in row_list:
        config.echo(f"  sweep: {row['name']}, batch {row['batch_size']}, M={row['members']}")
        data = {}
        for mode in ("time", "stacked", "single"):
            code = (f"import json, sys, torch; torch.set_num_threads({config.threads}); "
                    "from bench.tables.sweep import worker; print(json.dumps(worker("
                    f"json.loads(sys.argv[1]), {config.repeats}, {clock!r}, {mode!r})))")
            out = subprocess.run([sys.executable, "-c", code, json.dumps(row)], env=env,
                                 cwd=root, capture_output=True, text=True, check=False)
            if out.returncode:
                data["error"] = out.stderr.strip().splitlines()[-1]
                break
            data[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        if "error" in data:
            results.append({"row": row, "error": data["error"]})
            continue
        t = data["time"]["times"]
        results.append({"row": row, "memory": {**data["single"], **data["stacked"],
                                               "stacked_rss_mib": data["stacked"]["rss_mib"],
                                               "single_rss_mib": data["single"]["rss_mib"]},
                        "stacked": summary(t["stacked"]), "sequential": summary(t["sequential"]),
                        "ratio": paired(t["stacked"], t["sequential"]),
                        "speedup": paired(t["sequential"], t["stacked"]),
                        "compiled": summary(t["compiled"]),
                        "compiled_speedup": paired(t["sequential"], t["compiled"]),
                        "compile_seconds": data["time"]["compile_seconds"]})
    return {"rows": results, "clock": clock, "threads": config.threads}


def markdown(result: dict) -> str:
    lines, mem = [], []
    for r in result["rows"]:
        row = r["row"]
        label = f"{row['name']}, batch {row['batch_size']}, {row['epochs']} epoch(s)"
        if "error" in r:
            lines.append([label, str(row["members"]), "–", "–", f"failed: {r['error']}", "–",
                          "–", "–", "–"])
            continue
        compiled = r.get("compiled")  # results saved before the captured step have none
        lines.append([label, str(row["members"]), cell(r["stacked"]), cell(r["sequential"]),
                      ratio_cell(r["ratio"]), ratio_cell(r["speedup"]),
                      cell(compiled) if compiled else "–",
                      ratio_cell(r["compiled_speedup"]) if compiled else "–",
                      f"{r['compile_seconds']:.1f}" if compiled else "–"])
        m = r["memory"]
        mem.append([label, str(row["members"]), num(m["engine_mib"]),
                    num(row["members"] * m["one_model_mib"]), num(m["stacked_rss_mib"]),
                    num(m["single_rss_mib"]), num(m["data_mib"])])
    first = next((r for r in result["rows"] if "ratio" in r), None)
    verdict = ""
    if first is not None:
        met = first["ratio"]["median"] <= TARGET
        verdict = (f"\n\nTarget (16 digits-MLP configurations in <= 1/4 of the sequential time): "
                   f"{first['ratio']['median']:.3f} of it, **{'met' if met else 'missed'}**.")
    return (table(["row", "M", "stacked s", "M x xb.fit s", "stacked / sequential",
                   "speed-up", "stacked compile=True s", "speed-up compile=True",
                   "compile s (warm-up, not timed)"], lines) + verdict + "\n\n"
            + table(["row", "M", "stacked tensors MiB", "M x one model MiB",
                     "peak RSS growth, stacked run MiB", "peak RSS growth, one xb.fit MiB",
                     "data MiB (shared)"], mem)
            + f"\n\nClock: {result['clock']}, {result['threads']} thread(s).")
