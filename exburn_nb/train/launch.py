"""Starting a data-parallel run: forked ranks from a notebook, or joining ``torchrun``.

``xb.fit(model, data, processes=N)`` checks everything in the caller first (the whole run's
options, by building its trainer once; then that forking can work: CUDA not yet initialised
in this process, the start method available, one GPU per rank), then starts N ranks with
the configured start method (``"fork"`` by default, as Lightning's ``ddp_notebook`` and
accelerate's ``notebook_launcher`` do). Each rank:

- survives SIGINT (Jupyter's Interrupt signals the kernel's whole process group): rank 0
  turns it into a stop that every rank makes on the same batch, the others ignore it; the
  caller of ``fit`` asks rank 0 for the same stop on its first Ctrl-C and ends the ranks on
  a second;
- uses ``cores // N`` threads, and meets the others through a ``FileStore`` in a temporary
  directory (no port to race for), with a 30 s timeout on the process group;
- trains the one loop (:func:`~exburn_nb.train.distributed.distribute`), then rank 0
  saves its model (safetensors + JSON, no pickle) for the caller, whose ``Model`` loads
  it: weights, optimizer state, history.

A rank that raises sends its traceback; the caller ends the other ranks and raises a
``RuntimeError`` holding it. Every child is reaped before the call returns or raises.

Under ``torchrun`` (:func:`launched_by_torchrun`) ``fit`` joins the process group the
launcher describes and starts nothing; every rank returns the trained model. A group that
``fit`` made stays up for the rest of the script and is ended at exit.

Example:
    >>> xb.fit(model, (x, y), epochs=5, batch_size=64, processes=2)  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import signal
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..core.config import FitConfig
from ..core.model import Model, load
from .callbacks import Callback, ProgressBar, listens_to_batches
from .distributed import check_rank_options, distribute

GROUP_TIMEOUT = timedelta(seconds=30)
POLL_S = 0.1  # how often the caller looks at the ranks while waiting


def launched_by_torchrun() -> bool:
    """Whether this process is a rank that ``torchrun`` started: its run id AND the rank
    variables it sets (a stale ``TORCHELASTIC_RUN_ID`` alone does not count).

    Example:
        >>> launched_by_torchrun()  # in a notebook
        False
    """
    return (dist.is_torchelastic_launched() and "RANK" in os.environ
            and "WORLD_SIZE" in os.environ)


def wanted(config: Any, options: dict) -> bool:
    """Whether a ``fit`` call with ``config`` and ``options`` runs data-parallel (a bad
    ``processes`` counts: the launch refuses it by name)."""
    if launched_by_torchrun():
        return True
    processes = options.get("processes", config.processes if isinstance(config, FitConfig)
                            else 1)
    return processes != 1


def backend_for(config: FitConfig, model: Model) -> str:
    """The process group's backend: ``config.backend``, or for ``"auto"`` nccl on CUDA
    and gloo otherwise."""
    if config.backend != "auto":
        return config.backend
    return "nccl" if model.torch_device.type == "cuda" else "gloo"


def check_launch(config: FitConfig, model: Model, backend: str) -> None:
    """Refuse, naming the cause, a launch of ``config.processes`` ranks that cannot work
    (before any process starts)."""
    import multiprocessing

    method, n = config.start_method, config.processes
    check_rank_options(config, n)
    if method not in multiprocessing.get_all_start_methods():
        raise ValueError(f"start_method={method!r} is not available on this platform; use "
                         f"one of {multiprocessing.get_all_start_methods()}")
    if config.sync_batchnorm and model.torch_device.type != "cuda":
        raise ValueError("sync_batchnorm=True needs a model on the GPU (torch's SyncBatchNorm "
                         "works on CUDA modules only); on the CPU each rank's BatchNorm uses "
                         "its own shard's statistics: pass sync_batchnorm=False")
    if method == "spawn" and model.spec is None:
        raise ValueError("start_method='spawn' rebuilds the model in each rank from its file, "
                         "and a model compiled from a torch.nn.Module holds no code there; "
                         "use start_method='fork' (or torchrun)")
    if method == "fork" and torch.cuda.is_initialized():
        raise ValueError("processes > 1 with start_method='fork' cannot work: CUDA is already "
                         "initialised in this process (a model moved to the GPU, or a CUDA "
                         "call). Restart the kernel and call fit(..., processes=N) before "
                         "touching the GPU, or pass start_method='spawn', or use torchrun")
    if backend == "nccl" and torch.cuda.device_count() < n:
        raise ValueError(f"processes={n} with backend 'nccl' needs {n} GPUs (one per rank; "
                         f"NCCL refuses two ranks on one GPU); this machine has "
                         f"{torch.cuda.device_count()}")


def fit_in_processes(trainer_class: Callable[..., Any], model: Model, data: Any,
                     arguments: dict) -> Model:
    """Train ``model`` data-parallel: join ``torchrun``'s group, or start
    ``processes`` ranks (:func:`run_ranks`); returns ``model`` holding rank 0's final
    state (rank 0's warnings are issued here).

    Args:
        trainer_class: builds each rank's trainer as ``trainer_class(model, data,
            **arguments)`` (the one loop).
        model: the caller's model; it is changed only when the run has ended.
        data: the training data (in memory, or a ``DataLoader`` of a sized dataset).
        arguments: the trainer's other arguments (config, options, callbacks...).

    Example:
        >>> fit_in_processes(Trainer, model, (x, y), {"processes": 2})  # doctest: +SKIP
    """
    if launched_by_torchrun():
        return _join_torchrun(trainer_class, model, data, arguments)
    verbose = arguments.get("verbose", True)  # the progress bar is drawn here, not in a rank
    outcome = run_ranks(trainer_class, model, data, {**arguments, "verbose": False},
                        callbacks=[ProgressBar()] if verbose else ())
    for message in outcome["messages"]:
        warnings.warn(message, stacklevel=3)
    return model


def run_ranks(trainer_class: Callable[..., Any], model: Model, data: Any, arguments: dict,
              on_started: Callable[[Any], None] | None = None,
              callbacks: Sequence[Callback] = ()) -> dict:
    """Start ``processes`` ranks (see the module docstring), wait for them, load rank 0's
    model into ``model``; rank 0's outcome: ``{"stop_reason", "messages"}``.

    Args:
        trainer_class, model, data, arguments: as for :func:`fit_in_processes`.
        on_started: called, once the ranks run, with the caller's end of a pipe to rank 0
            (to send ``("stop",)``, ``("pause",)``, ``("resume",)``, ``("lr", x)``).
        callbacks: run here, in this thread, on rank 0's rows as they come
            (:class:`RankMirror`): a progress bar, a live plot. Their return values and
            their calls on the trainer change nothing in the ranks.

    Example:
        >>> run_ranks(Trainer, model, (x, y), {"processes": 2})["stop_reason"]  # doctest: +SKIP
    """
    trainer = trainer_class(model, data, **arguments)  # every option checked, by name
    config = trainer.config
    backend = backend_for(config, model)
    check_launch(config, model, backend)
    import multiprocessing

    mirror = RankMirror(model, trainer, callbacks) if callbacks else None
    ctx = multiprocessing.get_context(config.start_method)
    results = ctx.Queue()
    caller_end, rank0_end = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix="exburn-ranks-") as tmp:
        before = str(Path(tmp) / "before.exburn")
        if mirror is not None:
            model.save(before)
        shipped: Model | str = model
        if config.start_method == "spawn":  # a fresh interpreter rebuilds it from its file
            shipped = str(Path(tmp) / "start.exburn")
            model.save(shipped)
        procs = [ctx.Process(target=_rank_main, name=f"exburn-rank-{rank}", daemon=True,
                             args=(rank, config.processes, backend, tmp, trainer_class,
                                   shipped, data, arguments, results,
                                   rank0_end if rank == 0 else None, mirror is not None))
                 for rank in range(config.processes)]
        try:
            with _sigint_blocked():  # a child ignores SIGINT from its first instruction
                for p in procs:
                    _start(p)
            if on_started is not None:
                on_started(caller_end)
            outcome = _collect(procs, results, caller_end,
                               mirror.rows if mirror is not None else None)
        except BaseException:
            _reap(procs, hurry=True)
            if mirror is not None:
                with contextlib.suppress(Exception):  # the run's own error is the one raised
                    mirror.end()
                model.load(before)  # the rows mirrored here described no weights it holds
            raise
        _reap(procs)
        model.load(outcome["path"])  # rank 0's weights, optimizer state and history
    if mirror is not None:
        mirror.end()
    return outcome


def _start(process: Any) -> None:
    """Start one rank; with spawn, what cannot be pickled is refused by name."""
    try:
        process.start()
    except (TypeError, AttributeError, pickle.PicklingError) as exc:
        raise ValueError(f"start_method='spawn' sends the data, the options and the callbacks "
                         f"to each rank by pickling, and one of them cannot be ({exc}); use "
                         "module-level functions as callbacks, or start_method='fork'") from None


def _join_torchrun(trainer_class: Callable[..., Any], model: Model, data: Any,
                   arguments: dict) -> Model:
    trainer = trainer_class(model, data, **arguments)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(trainer.config, model), timeout=GROUP_TIMEOUT)
        atexit.register(_destroy_group)
    distribute(trainer, sync_batchnorm=trainer.config.sync_batchnorm)
    trainer.run()
    dist.barrier()
    if dist.get_rank() == 0:
        for message in trainer.messages:
            warnings.warn(message, stacklevel=3)
    return model


def _destroy_group() -> None:
    """End this process's group, if it has one: as a forked rank ends, and at exit for a
    group ``fit`` made under ``torchrun``, while Python is still whole (the script may use
    it after ``fit``). Left to the interpreter's teardown, gloo's worker threads can die
    holding tensors, and the rank aborts ("terminate called without an active
    exception"; pytorch/pytorch#190489)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back in this thread (a child forked now inherits the mask)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _rank_main(rank: int, world: int, backend: str, tmp: str,
               trainer_class: Callable[..., Any], model: Model | str, data: Any,
               arguments: dict, results: Any, inbox: Any, stream: bool) -> None:
    """One rank: join the group, train, and report (rank 0 saves its model). ``model``
    is the caller's (forked) or the file to rebuild it from (spawned)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        if backend == "nccl":  # one GPU per rank ("gpu" then means this rank's)
            torch.cuda.set_device(rank)
        if isinstance(model, str):
            model = load(model)
        store = dist.FileStore(str(Path(tmp) / "store"), world)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                                timeout=GROUP_TIMEOUT)
        trainer = trainer_class(model, data, **arguments)
        distribute(trainer, inbox, sync_batchnorm=trainer.config.sync_batchnorm,
                   outbox=results if stream else None)
        if rank == 0:  # an Interrupt: a stop, agreed at the next batch's reduction
            signal.signal(signal.SIGINT, lambda signum, frame: trainer.control.request_stop())
        trainer.run()
        dist.barrier()  # every rank has finished (rank 0's checkpoints are written)
        outcome = None
        if rank == 0:
            path = str(Path(tmp) / "rank0.exburn")
            model.save(path)
            outcome = {"path": path, "messages": list(trainer.messages),
                       "stop_reason": None if trainer.stop_reason is None
                       else str(trainer.stop_reason)}
        results.put(("done", rank, outcome))
    except BaseException as exc:  # noqa: BLE001 - sent to the caller, who raises it
        results.put(("error", rank, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        _destroy_group()
        results.close()
        results.join_thread()


def _collect(procs: list, results: Any, caller_end: Any,
             on_rows: Callable[[dict], None] | None) -> dict:
    """Wait for every rank's report; rank 0's outcome. The first Ctrl-C asks rank 0 for
    a clean stop (every rank stops on the same batch); a second one ends the ranks."""
    done: dict[int, Any] = {}
    interrupts = 0
    while len(done) < len(procs):
        try:
            message = _next_report(procs, results, done)
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts > 1:
                raise
            with contextlib.suppress(OSError):
                caller_end.send(("stop",))
            continue
        if message is None:
            continue
        if message[0] == "rows":
            on_rows(message[1])
            continue
        if message[0] == "error":
            _, rank, summary, tb = message
            dead = _dead(procs, done, rank)
            if dead is not None:  # the rank that died is the cause; the others lost a peer
                raise RuntimeError(f"{dead} (then rank {rank} failed: {summary:.300}); the "
                                   "other ranks were stopped and the model is unchanged")
            raise RuntimeError(f"rank {rank} of {len(procs)} raised {summary}; the other "
                               f"ranks were stopped and the model is unchanged.\n"
                               f"Traceback on rank {rank}:\n{tb}")
        done[message[1]] = message[2]
    return done[0]


def _next_report(procs: list, results: Any, done: dict) -> tuple | None:
    """The next rank's report, or None after :data:`POLL_S`; raises when a rank died
    without one."""
    with contextlib.suppress(queue.Empty):
        return results.get(timeout=POLL_S)
    dead = _dead(procs, done)
    if dead is None:
        return None
    with contextlib.suppress(queue.Empty):  # its last report may still be in flight
        return results.get(timeout=1.0)
    raise RuntimeError(f"{dead}; the other ranks were stopped and the model is unchanged")


def _dead(procs: list, done: dict, besides: int | None = None) -> str | None:
    """What a rank that ended without a report (other than ``besides``) did, or None."""
    for rank, p in enumerate(procs):
        if rank not in done and rank != besides and p.exitcode is not None:
            return f"rank {rank} of {len(procs)} exited with code {p.exitcode} without a report"
    return None


def _reap(procs: list, hurry: bool = False) -> None:
    """No rank outlives the run: wait (briefly when ``hurry``), then terminate, then
    kill."""
    for p in procs:
        if p.pid is None:
            continue
        p.join(0.2 if hurry else 10.0)
        if p.is_alive():
            p.terminate()
            p.join(2.0)
        if p.is_alive():
            p.kill()
            p.join()


class RankMirror:
    """Rank 0's rows of a data-parallel run, replayed in the caller's process as they
    come: recorded in ``model``'s history and handed to ``callbacks`` (a live plot, a
    progress bar), whose trainer is ``trainer`` (the run's options, never run itself).

    Example:
        >>> mirror = RankMirror(model, trainer, [plot])  # doctest: +SKIP
        >>> run_ranks(Trainer, model, data, options, on_rows=mirror.rows)  # doctest: +SKIP
    """

    def __init__(self, model: Model, trainer: Any, callbacks: Sequence[Callback]):
        self.model, self.trainer, self.callbacks = model, trainer, list(callbacks)
        self.logs: dict | None = None

    def rows(self, message: dict) -> None:
        """Record and hand on one message of rank 0's
        (:class:`~exburn_nb.train.distributed.ForwardRows`)."""
        recorder, trainer = self.model.recorder, self.trainer
        if "begin" in message:
            begin = message["begin"]
            if not any(r["run"] == begin["run"] for r in recorder.runs):
                recorder.start_run(trainer.config.to_dict())
            trainer.members[0].run_id = begin["run"]
            self.logs = {**begin, "model": self.model, "validation": trainer.val is not None,
                         "accuracy": trainer.config.accuracy, "trainer": trainer}
            for cb in self.callbacks:
                cb.set_trainer(trainer)
                cb.on_train_begin(self.logs)
        elif "epoch_begin" in message:
            for cb in self.callbacks:
                cb.on_epoch_begin(message["epoch_begin"], message["logs"])
        elif "batches" in message:
            rows = message["batches"]
            extras = [k for k in rows if k not in ("run", "epoch", "batch", "step", "loss",
                                                   "lr")]
            for i in range(len(rows["epoch"])):
                recorder.record_batch(rows["run"][i], rows["epoch"][i], rows["batch"][i],
                                      rows["step"][i], rows["loss"][i], rows["lr"][i],
                                      {k: rows[k][i] for k in extras})
            logs = message["logs"]
            for cb in self.callbacks:
                if listens_to_batches(cb):
                    cb.on_batch_end(logs["batch"], logs)
        else:
            for row in message["epochs"]:
                recorder.record_epoch(row)
            for cb in self.callbacks:
                cb.on_epoch_end(message["epochs"][-1]["epoch"] if message["epochs"]
                                else recorder.last_epoch,
                                {**message["extras"], "model": self.model})

    def end(self) -> None:
        """The run ended: the callbacks' ``on_train_end`` (once, if it had begun)."""
        if self.logs is not None:
            logs, self.logs = self.logs, None
            for cb in self.callbacks:
                cb.on_train_end(logs)
