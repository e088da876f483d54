"""The physical limit: this machine's float32 matmul speed for the shapes a training step runs.

For a dense layer ``in -> out`` at batch ``B`` one training step runs three matmuls, each
``2 * B * in * out`` FLOPs: the forward ``x @ W.T`` (+ bias), the weight gradient
``gy.T @ x`` and the input gradient ``gy @ W`` (not for the first layer: nothing needs the
gradient of the data). Each is timed alone, in a loop long enough to be measured, median
of ``repeats`` runs. The sum of their times is the least time a step can take; ``B`` divided
by it is the bound in samples/s that no framework can beat without changing the math.
"""

from __future__ import annotations

import statistics
import time

import torch


def _time_op(fn, device: torch.device, min_seconds: float, repeats: int,  # noqa: ANN001
             clock=time.perf_counter) -> dict:  # noqa: ANN001
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):  # warm-up: oneDNN/BLAS plans, caches
        fn()
    sync()
    calls, start = 0, clock()
    while clock() - start < min_seconds / 4 or calls < 3:
        fn()
        calls += 1
    sync()
    per_call = (clock() - start) / calls
    calls = max(3, int(min_seconds / max(per_call, 1e-9)))
    runs = []
    for _ in range(repeats):
        sync()
        start = clock()
        for _ in range(calls):
            fn()
        sync()
        runs.append((clock() - start) / calls)
    return {"seconds": statistics.median(runs), "min": min(runs), "max": max(runs),
            "calls": calls}


def profile(device: torch.device, dims: list[int], batch_sizes: list[int],
            min_seconds: float = 0.05, repeats: int = 5, square: int = 2048,
            clock: str = "wall") -> dict:
    """Time every training-step matmul of a dense stack ``dims`` at each batch size
    (``clock="cpu"``: the process's CPU time, for one thread on a busy machine)."""
    timer = time.process_time if clock == "cpu" else time.perf_counter
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device)

    out: dict = {"dims": dims, "batches": {}}
    for batch in batch_sizes:
        ops, total_s, total_flops = [], 0.0, 0
        for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            x, w, b, gy = rand(batch, fan_in), rand(fan_out, fan_in), rand(fan_out), rand(batch, fan_out)
            flops = 2 * batch * fan_in * fan_out
            shapes = [("forward", f"[{batch}x{fan_in}] @ [{fan_in}x{fan_out}]",
                       lambda x=x, w=w, b=b: torch.addmm(b, x, w.t())),
                      ("weight grad", f"[{fan_out}x{batch}] @ [{batch}x{fan_in}]",
                       lambda x=x, gy=gy: gy.t().mm(x))]
            if layer > 0:
                shapes.append(("input grad", f"[{batch}x{fan_out}] @ [{fan_out}x{fan_in}]",
                               lambda w=w, gy=gy: gy.mm(w)))
            for role, shape, fn in shapes:
                t = _time_op(fn, device, min_seconds, repeats, timer)
                ops.append({"layer": f"{fan_in}->{fan_out}", "role": role, "shape": shape,
                            "flops": flops, "seconds": t["seconds"],
                            "gflops": flops / t["seconds"] / 1e9,
                            "gflops_min": flops / t["max"] / 1e9,
                            "gflops_max": flops / t["min"] / 1e9})
                total_s += t["seconds"]
                total_flops += flops
        out["batches"][str(batch)] = {
            "ops": ops, "step_seconds": total_s, "step_flops": total_flops,
            "gflops": total_flops / total_s / 1e9, "bound_samples_per_s": batch / total_s}
    a, b = rand(square, square), rand(square, square)
    t = _time_op(lambda: a.mm(b), device, min_seconds * 4, repeats, timer)
    out["square"] = {"n": square, "gflops": 2 * square ** 3 / t["seconds"] / 1e9,
                     "gflops_min": 2 * square ** 3 / t["max"] / 1e9,
                     "gflops_max": 2 * square ** 3 / t["min"] / 1e9}
    return out
