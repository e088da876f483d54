"""The worker process: one per contender, for the whole run.

The parent (:mod:`bench.harness`) sends commands over a pipe; only one worker computes
at a time, the others wait on their pipe, so measurements never share the CPU. A worker
imports only its own library, pins ``torch.set_num_threads`` (again after that import,
in case the library changed it), and sends its stdout/stderr to a log file.

Garbage collection: the imported libraries' objects are frozen (``gc.freeze``) once
imported, and a collection runs before every measurement, outside the timed region, so
no measurement pays for its predecessor's garbage.

Peak memory per row: before each ``setup`` the worker drops the previous row's model and
data (``gc.collect`` + ``malloc_trim``) and resets the kernel's high-water mark
(``/proc/self/clear_refs`` <- ``5``), so the ``VmHWM`` read after the row's measurements
is that row's peak resident set, imports included. Where the reset is not possible the
peak is the process's lifetime peak (``ru_maxrss``), flagged ``cumulative``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import resource
import sys
import time
import traceback
from typing import Any


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_mib() -> float:
    """Resident set now (MiB)."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else float("nan")


def peak_rss_mib() -> float:
    """Peak resident set since the last reset (MiB)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = kib / 1024 if sys.platform == "darwin" else kib
    return kib / 1024


def reset_peak_rss() -> bool:
    """Reset the peak to the current resident set; False where the kernel won't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Worker:
    def __init__(self, name: str, threads: int, device: str):
        import torch

        from .contenders import CONTENDERS

        self.torch = torch
        self.threads = threads
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        module, cls, _ = CONTENDERS[name]
        contender_cls = getattr(importlib.import_module(f"bench.contenders.{module}"), cls)
        self.contender = contender_cls(self.device)
        self.contender._init_attrs = frozenset(vars(self.contender))
        torch.set_num_threads(threads)  # the library may have changed it on import
        self.workload: dict | None = None
        self.cumulative_rss = False
        gc.collect()
        gc.freeze()  # the imports' objects: later collections skip them (fast and steady)

    # ------------------------------------------------------------------ commands
    def info(self) -> dict:
        torch = self.torch
        info = {"library": self.contender.library, "version": self.contender.version(),
                "torch": torch.__version__, "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(),
                "device": str(self.device), "rss_mib": current_rss_mib()}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info

    def setup(self, workload: dict) -> dict:
        from .workloads import make_data

        self.contender.teardown()
        _release_memory()
        self.cumulative_rss = not reset_peak_rss()
        base = current_rss_mib()
        self.torch.manual_seed(workload["seed"])
        x, y = make_data(workload)
        self.contender.setup(workload, x, y)
        del x, y
        self.workload = workload
        return {"base_rss_mib": base}

    def _timed(self, fn: Any) -> dict:
        torch = self.torch
        gc.collect()
        self._sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        self._sync()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        threads = torch.get_num_threads()
        if threads != self.threads:  # report, and restore for the next measurement
            torch.set_num_threads(self.threads)
        return {"wall": wall, "cpu": cpu, "threads": threads}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def train(self, n: int, epochs: int, batch_size: int) -> dict:
        return self._timed(lambda: self.contender.train(n, epochs, batch_size))

    def predict(self, n: int, batch_size: int, calls: int = 1) -> dict:
        def run() -> None:
            for _ in range(calls):
                self.contender.predict(n, batch_size)

        return self._timed(run)

    def extras(self) -> dict:
        return self.contender.extras()

    def peak_rss(self) -> dict:
        return {"peak_rss_mib": peak_rss_mib(), "cumulative": self.cumulative_rss}

    def gemm(self, **kwargs: Any) -> dict:
        from .gemm import profile

        return profile(self.device, **kwargs)


def main(conn: Any, name: str, threads: int, device: str, log_path: str) -> None:
    """Entry point of a worker process (``multiprocessing`` spawn target)."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        worker = Worker(name, threads, device)
        conn.send(("ok", worker.info()))
    except BaseException:  # the library is missing or broken: say why, then stop
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            command, kwargs = conn.recv()
        except EOFError:
            return
        if command == "exit":
            return
        try:
            conn.send(("ok", getattr(worker, command)(**kwargs)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
        sys.stdout.flush()
        sys.stderr.flush()
