"""Worker processes, alternating measurement and summary statistics.

Method (also in ``bench/README.md``): every contender lives in its own worker process
for the whole run. For a row, all workers set up the row's network and data, then run one
warm-up measurement (discarded; these may overlap, as nothing is timed). Then ``repeats``
rounds follow; in each round the contenders are measured one after the other
(A B C ... A B C ...), one process computing at a time. A row reports the median with
the min-max of its rounds, and ratios are paired: contender / reference within the same
round, median (min-max) over the rounds, so slow drifts of the machine cancel.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contenders import label as contender_label


@dataclass
class Config:
    """One bench run's settings."""

    quick: bool = False
    threads: int = 1
    repeats: int = 5
    device: str = "cpu"  # resolved: "cpu" or "cuda"
    log_dir: Path = Path("bench/results/logs")
    only: list[str] | None = None  # contenders to run (None: all)
    clock: str = "wall"  # "wall": perf_counter; "cpu": the worker's process CPU time
    default_malloc: bool = False  # True: leave glibc's adaptive mmap threshold alone
    echo: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr,
                                                                   flush=True))


# glibc's malloc adapts its mmap threshold to each process's history of frees, so the same
# code in two processes gets a different share of its tensors from fresh, page-faulting
# mmap()s: +-10-20% on allocation-heavy rows (an A/A control, two processes running the
# hand loop, showed it). Fixed at the adaptive maximum (32 MiB), with no automatic trimming,
# every worker behaves alike, as a long-lived kernel does once the threshold has grown.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                   "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30)}


class WorkerError(RuntimeError):
    """A command failed inside a worker; the message holds the worker's traceback."""


class WorkerHandle:
    """The parent's end of one worker process."""

    def __init__(self, name: str, config: Config):
        from . import worker

        self.name = name
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = config.log_dir / f"{name}.log"
        self.process = ctx.Process(target=worker.main, name=f"bench-{name}", daemon=True,
                                   args=(child, name, config.threads, config.device,
                                         str(self.log_path)))
        self.process.start()
        child.close()
        self.info: dict | None = None
        self.error: str | None = None
        self._pending = False

    def send(self, command: str, **kwargs: Any) -> None:
        self.conn.send((command, kwargs))
        self._pending = True

    def receive(self) -> Any:
        self._pending = False
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise WorkerError(f"worker {self.name!r} died (see {self.log_path})") from None
        if status != "ok":
            raise WorkerError(f"{self.name}: {value}")
        return value

    def call(self, command: str, **kwargs: Any) -> Any:
        self.send(command, **kwargs)
        return self.receive()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send(("exit", {}))
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


class Pool:
    """The worker processes of a run, started on first use and kept to the end."""

    def __init__(self, config: Config):
        self.config = config
        self.workers: dict[str, WorkerHandle] = {}
        self.unavailable: dict[str, str] = {}
        os.environ["KERAS_BACKEND"] = "torch"  # inherited by the workers, set before any import
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(config.threads)
        if config.device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # Keras would pick a GPU by itself
        if not config.default_malloc:
            os.environ.update(MALLOC_SETTINGS)

    def available(self, names: Iterable[str]) -> list[str]:
        """Start the named workers (in parallel) and return those that came up."""
        names = [n for n in names if self.config.only is None or n in self.config.only]
        new = [n for n in names if n not in self.workers and n not in self.unavailable]
        if new:
            self.config.echo(f"  starting workers: {', '.join(new)}")
            started = {n: WorkerHandle(n, self.config) for n in new}
            for name, handle in started.items():
                try:
                    handle.info = handle.receive()
                    self.workers[name] = handle
                except WorkerError as exc:
                    self.unavailable[name] = _last_line(str(exc))
                    self.config.echo(f"  {name} unavailable: {self.unavailable[name]}")
                    handle.close()
        return [n for n in names if n in self.workers]

    def broadcast(self, names: Sequence[str], command: str, **kwargs: Any) -> dict[str, Any]:
        """Send a command to several workers at once; gather {name: result or WorkerError}."""
        for name in names:
            self.workers[name].send(command, **kwargs)
        out: dict[str, Any] = {}
        for name in names:
            try:
                out[name] = self.workers[name].receive()
            except WorkerError as exc:
                out[name] = exc
        return out

    def infos(self) -> dict[str, dict]:
        return {n: w.info for n, w in self.workers.items()}

    def close(self) -> None:
        for handle in self.workers.values():
            handle.close()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


# ---------------------------------------------------------------------- statistics
def summary(values: Sequence[float]) -> dict:
    """``{"median", "min", "max", "n", "values"}`` of a list of numbers."""
    values = [float(v) for v in values]
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0,
                "values": []}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def paired(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """Round-by-round ratios numerator/denominator, summarised."""
    return summary([a / b for a, b in zip(numerators, denominators, strict=False) if b])


# ---------------------------------------------------------------------- measuring a row
@dataclass
class Step:
    """One timed command for each contender in each round (e.g. train on n samples)."""

    key: str
    command: str
    kwargs: dict
    samples: int  # samples processed, for samples/s


def measure_row(pool: Pool, names: Sequence[str], workload: dict, steps: Sequence[Step],
                repeats: int, warmup: Sequence[Step] | None = None,
                rss: bool = True) -> dict:
    """Set up ``workload`` in every worker, warm up, then run ``repeats`` alternating rounds.

    Returns ``{"contenders": {name: {"seconds": {key: [...]}, "wall": {...}, "cpu": {...},
    "threads": [...], "peak_rss_mib": ..., "base_rss_mib": ...}}, "errors": {name: message}}``;
    ``seconds`` are those of the configured clock, ``wall`` and ``cpu`` both clocks.
    """
    echo = pool.config.echo
    names = pool.available(names)
    errors: dict[str, str] = {}
    out: dict[str, dict] = {}
    started = time.perf_counter()
    for name, result in pool.broadcast(names, "setup", workload=workload).items():
        if isinstance(result, WorkerError):
            errors[name] = _last_line(str(result))
        else:
            out[name] = {"seconds": {s.key: [] for s in steps},
                         "wall": {s.key: [] for s in steps}, "cpu": {s.key: [] for s in steps},
                         "threads": [], **result}
    live = [n for n in names if n in out]
    t_setup = time.perf_counter()
    for step in (warmup if warmup is not None else steps[:1]):
        for name, result in pool.broadcast(live, step.command, **step.kwargs).items():
            if isinstance(result, WorkerError):
                errors[name] = _last_line(str(result))
    live = [n for n in live if n not in errors]
    t_warm = time.perf_counter()
    spent = dict.fromkeys(live, 0.0)
    for _ in range(repeats):
        for name in list(live):
            for step in steps:
                try:
                    result = pool.workers[name].call(step.command, **step.kwargs)
                except WorkerError as exc:
                    errors[name] = _last_line(str(exc))
                    live.remove(name)
                    break
                out[name]["seconds"][step.key].append(result[pool.config.clock])
                out[name]["wall"][step.key].append(result["wall"])
                out[name]["cpu"][step.key].append(result["cpu"])
                spent[name] += result["wall"]
                out[name]["threads"].append(result["threads"])
    if rss:
        for name, result in pool.broadcast(live, "peak_rss").items():
            if not isinstance(result, WorkerError):
                out[name].update(result)
    for name, result in pool.broadcast(live, "extras").items():
        if not isinstance(result, WorkerError):
            out[name]["extras"] = result
    for name in errors:
        out.pop(name, None)
    echo(f"  {workload['name']}: {len(live)} contenders x {repeats} rounds "
         f"in {time.perf_counter() - started:.1f} s (set-up {t_setup - started:.1f}, warm-up "
         f"{t_warm - t_setup:.1f}, timed: "
         + ", ".join(f"{n} {s:.1f}" for n, s in spent.items()) + ")"
         + (f"; failed: {', '.join(errors)}" if errors else ""))
    return {"contenders": out, "errors": errors}


def label(name: str, predict: bool = False) -> str:
    """The table label of a contender."""
    return contender_label(name, predict)
