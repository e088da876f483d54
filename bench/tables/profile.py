"""Where a small training step's time goes: ``python -m bench profile``.

The digits MLP (64-32-10) and the guide's MLP (784-256-128-10, dropout) at batch 32, one
thread, trained by the fused hand loop (:class:`bench.contenders.hand.HandLoopFused`, the
reference) and by ``xb.fit`` (:class:`bench.contenders.exburn.ExburnFit`), the two in one
child process (``python -m bench.tables.profile``, its JSON on stdout) with the bench's
thread and malloc settings.

Two measurements per contender, alternating A B A B over the rounds:

- **unprofiled**: CPU time per step of a whole ``train`` call (median of the rounds);
- **profiled** (``torch.profiler``, CPU): every op the step dispatches, by the top-level
  event it falls under: the model's forward and loss ops, the backward pass (autograd's
  ``evaluate_function`` nodes), the optimizer step and ``zero_grad``, the batch's
  shuffling and indexing, the loss reads and the non-finite guard, and other ops. What the
  profiled call spent outside every op is the loop's own Python. Across all ops, the time
  is split again into the matmul kernels (``addmm``/``mm`` self time), the other leaf ops'
  self time (elementwise kernels, the optimizer's fused kernel) and the rest: dispatch
  and autograd bookkeeping (time inside an op but not in the leaf op it leads to).

The profiler adds a few µs per op, so the profiled total is above the unprofiled one;
the shares, not the sum, are the point. The unprofiled time is the median of the
rounds' CPU times; the breakdown is the profiled round with the smallest total (its
clock is elapsed time, which other processes on a busy machine only ever lengthen).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from ..harness import MALLOC_SETTINGS, Config, Pool
from .common import num, table

NAME = "profile"
TITLE = "Where a batch-32 step goes (torch.profiler, one thread)"
BATCH = 32
CONTENDERS = {"hand_fused": "best hand loop (reference)", "xb": "xb.fit"}
# (top-level event name prefix, category), first match wins; anything else: "other ops"
CATEGORIES = [
    ("Optimizer.step", "optimizer step"), ("Optimizer.zero_grad", "zero_grad"),
    ("aten::_fused_adam", "optimizer step"), ("aten::_foreach_add", "optimizer step"),
    ("autograd::", "backward"), ("aten::ones_like", "backward"),
    ("aten::linear", "forward + loss"), ("aten::relu", "forward + loss"),
    ("aten::dropout", "forward + loss"), ("aten::cross_entropy", "forward + loss"),
    ("aten::rand_like", "forward + loss"), ("aten::lt", "forward + loss"),  # xb's dropout
    ("aten::mul", "forward + loss"),
    ("aten::randperm", "shuffle + index"), ("aten::index", "shuffle + index"),
    ("aten::slice", "shuffle + index"), ("aten::to", "shuffle + index"),
    ("aten::item", "loss reads + guard"), ("aten::_local_scalar_dense", "loss reads + guard"),
    ("aten::is_nonzero", "loss reads + guard"), ("aten::stack", "loss reads + guard"),
    ("aten::_amp_foreach_non_finite", "loss reads + guard"),
    ("aten::zero_", "loss reads + guard"),
]  # "ops" in the tables: profiler events per step
COLUMNS = ["forward + loss", "backward", "optimizer step", "zero_grad", "shuffle + index",
           "loss reads + guard", "other ops", "loop's own Python"]
SPLIT = ["matmul kernels", "other kernels", "dispatch + autograd bookkeeping",
         "loop's own Python"]
MATMULS = ("aten::addmm", "aten::mm", "aten::bmm")
# ops that compute nothing (views, allocation, wrappers that dispatch to other ops): their
# self time is dispatch; every other aten op's self time is a kernel
BOOKKEEPING = {"empty", "empty_strided", "empty_like", "as_strided", "view", "t", "transpose",
               "expand", "resolve_conj", "resolve_neg", "detach", "detach_", "reshape",
               "_unsafe_view", "_reshape_alias", "slice", "select", "alias", "unsqueeze",
               "squeeze", "permute", "contiguous", "to", "linear", "matmul", "dropout",
               "cross_entropy_loss", "log_softmax", "nll_loss", "nll_loss_nd", "ones_like",
               "zeros_like", "zeros", "ones", "item", "is_nonzero", "lift_fresh"}


def workloads_for(quick: bool) -> list[tuple[dict, int]]:
    """``(workload, epochs)`` per row: about 200 steps (20 with ``quick``) per call."""
    from .. import workloads

    return [(workloads.digits_mlp(), 1 if quick else 4),
            (workloads.guide_mlp(n=BATCH * (20 if quick else 200)), 1)]


def categorize(name: str) -> str:
    """The column of a top-level profiler event.

    Example:
        >>> categorize("Optimizer.step#Adam.step"), categorize("aten::mul")
        ('optimizer step', 'other ops')
    """
    return next((cat for prefix, cat in CATEGORIES if name.startswith(prefix)), "other ops")


def kind_of_work(name: str) -> str:
    """Where an op's self time goes in :data:`SPLIT`.

    Example:
        >>> kind_of_work("aten::addmm"), kind_of_work("aten::view"), kind_of_work("aten::mul")
        ('matmul kernels', 'dispatch + autograd bookkeeping', 'other kernels')
    """
    if name in MATMULS:
        return "matmul kernels"
    if name.startswith("aten::") and name[6:] not in BOOKKEEPING:
        return "other kernels"
    return "dispatch + autograd bookkeeping"


def breakdown(events: list, seconds: float, steps: int) -> dict[str, float]:
    """µs per step per column of :data:`COLUMNS` and :data:`SPLIT`, from one profiled
    call's events (the main thread's) that took ``seconds``."""
    out = dict.fromkeys(COLUMNS + SPLIT[:-1], 0.0)
    out["ops"] = float(len(events))
    inside = 0.0
    for e in events:
        if e.cpu_parent is None:
            out[categorize(e.name)] += e.cpu_time_total
            inside += e.cpu_time_total
        out[kind_of_work(e.name)] += e.self_cpu_time_total
    out["loop's own Python"] = seconds * 1e6 - inside
    out["total"] = seconds * 1e6
    return {k: v / steps for k, v in out.items()}


def measure(quick: bool, rounds: int) -> dict:
    """Run in the child process: the rows, each contender timed and profiled per round."""
    import gc
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    from .. import workloads
    from ..contenders.exburn import ExburnFit
    from ..contenders.hand import HandLoopFused

    torch.set_num_threads(1)
    device = torch.device("cpu")
    rows = []
    for workload, epochs in workloads_for(quick):
        x, y = workloads.make_data(workload)
        n = workload["n"]
        steps = epochs * -(-n // BATCH)
        contenders = {"hand_fused": HandLoopFused(device), "xb": ExburnFit(device)}
        for c in contenders.values():
            c.setup(workload, x, y)
            c.train(n, 1, BATCH)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in contenders}
        profiles: dict[str, list[dict]] = {k: [] for k in contenders}
        for _ in range(rounds):
            for name, c in contenders.items():
                gc.collect()
                t = time.process_time()
                c.train(n, epochs, BATCH)
                times[name].append((time.process_time() - t) / steps * 1e6)
                gc.collect()
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    t = time.perf_counter()
                    c.train(n, epochs, BATCH)
                    seconds = time.perf_counter() - t
                events = prof.events()
                main = [e for e in events if e.thread == events[0].thread]
                profiles[name].append(breakdown(main, seconds, steps))
        ratios = [a / b for a, b in zip(times["xb"], times["hand_fused"], strict=True)]
        rows.append({"workload": workload["name"], "steps": steps, "epochs": epochs,
                     "unprofiled_us": {k: statistics.median(v) for k, v in times.items()},
                     "unprofiled_rounds_us": times,
                     "xb_over_reference": {"median": statistics.median(ratios),
                                           "min": min(ratios), "max": max(ratios)},
                     # the least disturbed round: a busy machine only ever adds time
                     "profiled_us": {k: min(v, key=lambda p: p["total"])
                                     for k, v in profiles.items()},
                     "profiled_totals_us": {k: [p["total"] for p in v]
                                            for k, v in profiles.items()}})
    return {"rows": rows, "rounds": rounds, "torch": torch.__version__}


def run(pool: Pool, config: Config, context: dict) -> dict:
    """The measurement, in a fresh child process with the bench's worker settings."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           **({} if config.default_malloc else MALLOC_SETTINGS)}
    rounds = config.repeats
    done = subprocess.run([sys.executable, "-m", "bench.tables.profile", str(rounds),
                           *(["--quick"] if config.quick else [])], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the profile's process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    out = []
    for row in result["rows"]:
        names = list(row["profiled_us"])
        head = ["µs per step", *(CONTENDERS[n] for n in names)]
        body = [[col, *(num(row["profiled_us"][n][col]) for n in names)]
                for col in COLUMNS]
        body.append(["**total, profiled**", *(f"**{num(row['profiled_us'][n]['total'])}**"
                                             for n in names)])
        body.append(["**total, unprofiled**", *(f"**{num(row['unprofiled_us'][n])}**"
                                               for n in names)])
        split = [[col, *(num(row["profiled_us"][n][col]) for n in names)]
                 for col in [*SPLIT, "ops"]]
        r = row["xb_over_reference"]
        out.append(f"**{row['workload']}, batch {BATCH}** ({row['steps']} steps per call; "
                   f"xb.fit's unprofiled time {r['median']:.2f}x the reference's, "
                   f"{r['min']:.2f}–{r['max']:.2f} over {result['rounds']} rounds)\n\n"
                   + table(head, body) + "\n\nThe same profiled time by kind of work:\n\n"
                   + table(head, split))
    return "\n\n".join(out)


if __name__ == "__main__":
    print(json.dumps(measure("--quick" in sys.argv, int(sys.argv[1]))))
